//! `/ui`: the status page, a few static files compiled into the binary (`include_str!`) and
//! served without a token. The page holds no data: it asks for a viewer token, keeps it in
//! `sessionStorage` and reads everything from the token-protected API (`/v1/status`,
//! `/v1/upstreams/{name}/flip`, `/v1/config/history`, `/v1/config/diff`) with an
//! `Authorization` header, so the token is never in a URL or a cookie.
//!
//! Every file is sent with headers that keep it self-contained and unframeable: a
//! `Content-Security-Policy` that allows only this origin's scripts, styles, images and API
//! calls (no inline script, no external load, no form submission, no framing),
//! `X-Content-Type-Options: nosniff`, `Cache-Control: no-store` and `Referrer-Policy:
//! no-referrer`.

use http::{header, HeaderValue, Method, Response, StatusCode};

use super::response::{error, with_type, Body};

/// The policy every page file is served with.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// One file of the page: its path under `/ui/`, content type and content.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const JS: &str = "text/javascript; charset=utf-8";

/// An asset from `ui/`, served at `/ui/<file>`.
macro_rules! asset {
    ($file:literal, $content_type:expr) => {
        Asset {
            path: concat!("/ui/", $file),
            content_type: $content_type,
            body: include_str!(concat!("ui/", $file)),
        }
    };
}

const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("app.js", JS),
    asset!("dom.js", JS),
    asset!("http.js", JS),
    asset!("postgres.js", JS),
    asset!("config.js", JS),
];

/// Whether `path` belongs to the page.
pub fn is_ui(path: &str) -> bool {
    path == "/ui" || path.starts_with("/ui/")
}

/// Serve a file of the page (`/ui` is the page itself too).
pub fn serve(method: &Method, path: &str) -> Response<Body> {
    if method != Method::GET && method != Method::HEAD {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: use GET",
        );
    }
    let path = if path == "/ui" || path == "/ui/" {
        "/ui/index.html"
    } else {
        path
    };
    let mut resp = match ASSETS.iter().find(|a| a.path == path) {
        Some(asset) => with_type(StatusCode::OK, asset.content_type, asset.body),
        None => error(StatusCode::NOT_FOUND, format!("no such page file: {path}")),
    };
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    resp
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_file_is_served_with_the_policy_and_no_store() {
        for path in ASSETS.iter().map(|a| a.path).chain(["/ui", "/ui/"]) {
            let resp = serve(&Method::GET, path);
            assert_eq!(resp.status(), StatusCode::OK, "{path}");
            let h = resp.headers();
            assert_eq!(h[header::CONTENT_SECURITY_POLICY], CONTENT_SECURITY_POLICY);
            assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert_eq!(h[header::CACHE_CONTROL], "no-store");
        }
        assert_eq!(serve(&Method::GET, "/ui/nope.js").status(), 404);
        assert_eq!(serve(&Method::POST, "/ui").status(), 405);
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for asset in ASSETS {
            for needle in ["http://", "https://", "//cdn", "innerHTML", "eval("] {
                // The SVG's XML namespace is a name, not a load.
                let body = asset.body.replace("http://www.w3.org/2000/svg", "");
                assert!(!body.contains(needle), "{} contains {needle}", asset.path);
            }
        }
    }
}
