//! The route table: host (exact, then longest `*.suffix`, then `*`) and longest path prefix
//! to an upstream name. Built once per config; matching allocates nothing.

use switchyard_config::{HostMatch, Route};

/// Routes grouped for matching.
#[derive(Debug, Default)]
pub struct RouteTable {
    /// Exact host → routes, longest prefix first.
    exact: Vec<(String, Vec<Route>)>,
    /// `.suffix` → routes, longest suffix first, then longest prefix first.
    suffix: Vec<(String, Vec<Route>)>,
    /// `*` routes, longest prefix first.
    any: Vec<Route>,
}

impl RouteTable {
    pub fn new(routes: &[Route]) -> Self {
        let mut t = RouteTable::default();
        for r in routes {
            match &r.host {
                HostMatch::Any => t.any.push(r.clone()),
                HostMatch::Exact(h) => push(&mut t.exact, h, r),
                HostMatch::Suffix(s) => push(&mut t.suffix, s, r),
            }
        }
        let by_prefix =
            |v: &mut Vec<Route>| v.sort_by(|a, b| b.path_prefix.len().cmp(&a.path_prefix.len()));
        t.exact.iter_mut().for_each(|(_, v)| by_prefix(v));
        t.suffix.iter_mut().for_each(|(_, v)| by_prefix(v));
        t.suffix.sort_by(|a, b| b.0.len().cmp(&a.0.len()));
        by_prefix(&mut t.any);
        t
    }

    /// The route for a request's host (any case, port allowed) and path.
    pub fn find(&self, host: &str, path: &str) -> Option<&Route> {
        let host = host.rsplit_once(':').map_or(host, |(h, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                host
            }
        });
        if let Some((_, routes)) = self
            .exact
            .iter()
            .find(|(h, _)| h.eq_ignore_ascii_case(host))
        {
            if let Some(r) = longest_prefix(routes, path) {
                return Some(r);
            }
        }
        for (suffix, routes) in &self.suffix {
            let matches = host.len() > suffix.len()
                && host.as_bytes()[host.len() - suffix.len()..]
                    .eq_ignore_ascii_case(suffix.as_bytes());
            if matches {
                if let Some(r) = longest_prefix(routes, path) {
                    return Some(r);
                }
            }
        }
        longest_prefix(&self.any, path)
    }
}

/// The first route (they are sorted longest prefix first) whose prefix `path` starts with.
fn longest_prefix<'r>(routes: &'r [Route], path: &str) -> Option<&'r Route> {
    routes.iter().find(|r| path.starts_with(&r.path_prefix))
}

fn push(groups: &mut Vec<(String, Vec<Route>)>, key: &str, r: &Route) {
    match groups.iter_mut().find(|(k, _)| k == key) {
        Some((_, v)) => v.push(r.clone()),
        None => groups.push((key.to_string(), vec![r.clone()])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        let text = r#"
            [[http.routes]]
            host = "*"
            upstream = "default"
            [[http.routes]]
            host = "*"
            path_prefix = "/api/"
            upstream = "api"
            [[http.routes]]
            host = "*.example.com"
            upstream = "wild"
            [[http.routes]]
            host = "*.eu.example.com"
            upstream = "eu"
            [[http.routes]]
            host = "Admin.Example.com"
            path_prefix = "/admin"
            upstream = "admin"
            [http.upstreams.default.pools.a]
            backends = ["127.0.0.1:1"]
            [http.upstreams.api.pools.a]
            backends = ["127.0.0.1:2"]
            [http.upstreams.wild.pools.a]
            backends = ["127.0.0.1:3"]
            [http.upstreams.eu.pools.a]
            backends = ["127.0.0.1:4"]
            [http.upstreams.admin.pools.a]
            backends = ["127.0.0.1:5"]
        "#;
        let config = switchyard_config::parse(text).unwrap_or_else(|e| panic!("{e}"));
        RouteTable::new(&config.http.routes)
    }

    fn up<'a>(t: &'a RouteTable, host: &str, path: &str) -> Option<&'a str> {
        t.find(host, path).map(|r| r.upstream.as_str())
    }

    #[test]
    fn host_then_longest_prefix() {
        let t = table();
        assert_eq!(up(&t, "other.org", "/"), Some("default"));
        assert_eq!(up(&t, "other.org", "/api/jobs"), Some("api"));
        assert_eq!(up(&t, "a.example.com", "/x"), Some("wild"));
        assert_eq!(up(&t, "a.EU.example.com:8443", "/x"), Some("eu"));
        assert_eq!(up(&t, "admin.example.com", "/admin/users"), Some("admin"));
        // Exact host without a matching prefix falls through to the wildcard routes.
        assert_eq!(up(&t, "admin.example.com", "/public"), Some("wild"));
        // The bare suffix is not a subdomain of itself.
        assert_eq!(up(&t, "example.com", "/x"), Some("default"));
    }

    #[test]
    fn no_route_without_catch_all() {
        let t = RouteTable::new(&[]);
        assert!(t.find("a", "/").is_none());
    }
}
