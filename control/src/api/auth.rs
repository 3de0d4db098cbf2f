//! Authorization of API requests: which role each route needs, and the 401/403 answers.

use http::{header, HeaderValue, Request, Response, StatusCode};
use switchyard_config::Role;

use super::response::{error, Body};
use crate::auth::{AuthError, Principal};
use crate::runtime::ControlRuntime;

/// Authenticate the request and check it has at least `needed`.
pub fn authorize<B>(
    rt: &ControlRuntime,
    req: &Request<B>,
    needed: Role,
) -> Result<Principal, Response<Body>> {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    match rt.tokens.authenticate(header) {
        Ok(p) if p.role >= needed => Ok(p),
        Ok(p) => Err(error(
            StatusCode::FORBIDDEN,
            format!(
                "token {:?} has role {}; this needs {}",
                p.name, p.role, needed
            ),
        )),
        Err(e) => {
            let message = match e {
                AuthError::Missing => "missing Authorization: Bearer <token>",
                AuthError::Malformed => "malformed Authorization header: expected Bearer <token>",
                AuthError::Unknown => "invalid token",
            };
            let mut resp = error(StatusCode::UNAUTHORIZED, message);
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"switchyard\""),
            );
            Err(resp)
        }
    }
}
