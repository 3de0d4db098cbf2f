//! The route table: host (exact, then longest `*.suffix`, then `*`) and longest path prefix
//! to a route. Built once per config; matching allocates nothing and returns the index of
//! the route in the config's `http.routes`.

use switchyard_config::{HostMatch, Route};

/// Route indices grouped for matching, each group sorted longest prefix first.
#[derive(Debug, Default)]
pub struct RouteTable {
    exact: Vec<(String, Vec<(usize, String)>)>,
    /// Longest suffix first.
    suffix: Vec<(String, Vec<(usize, String)>)>,
    any: Vec<(usize, String)>,
}

impl RouteTable {
    pub fn new(routes: &[Route]) -> Self {
        let mut t = RouteTable::default();
        for (i, r) in routes.iter().enumerate() {
            let entry = (i, r.path_prefix.clone());
            match &r.host {
                HostMatch::Any => t.any.push(entry),
                HostMatch::Exact(h) => push(&mut t.exact, h, entry),
                HostMatch::Suffix(s) => push(&mut t.suffix, s, entry),
            }
        }
        let by_prefix =
            |v: &mut Vec<(usize, String)>| v.sort_by_key(|(_, p)| std::cmp::Reverse(p.len()));
        t.exact.iter_mut().for_each(|(_, v)| by_prefix(v));
        t.suffix.iter_mut().for_each(|(_, v)| by_prefix(v));
        t.suffix.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        by_prefix(&mut t.any);
        t
    }

    /// The index of the route for a request's host (any case, port allowed) and path.
    pub fn find(&self, host: &str, path: &str) -> Option<usize> {
        let host = match host.rsplit_once(':') {
            Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        };
        if let Some((_, routes)) = self
            .exact
            .iter()
            .find(|(h, _)| h.eq_ignore_ascii_case(host))
        {
            if let Some(i) = longest_prefix(routes, path) {
                return Some(i);
            }
        }
        for (suffix, routes) in &self.suffix {
            let matches = host.len() > suffix.len()
                && host.as_bytes()[host.len() - suffix.len()..]
                    .eq_ignore_ascii_case(suffix.as_bytes());
            if matches {
                if let Some(i) = longest_prefix(routes, path) {
                    return Some(i);
                }
            }
        }
        longest_prefix(&self.any, path)
    }
}

/// The first route (they are sorted longest prefix first) whose prefix `path` starts with.
fn longest_prefix(routes: &[(usize, String)], path: &str) -> Option<usize> {
    routes
        .iter()
        .find(|(_, p)| path.starts_with(p.as_str()))
        .map(|(i, _)| *i)
}

fn push(groups: &mut Vec<(String, Vec<(usize, String)>)>, key: &str, entry: (usize, String)) {
    match groups.iter_mut().find(|(k, _)| k == key) {
        Some((_, v)) => v.push(entry),
        None => groups.push((key.to_string(), vec![entry])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"
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

    #[test]
    fn host_then_longest_prefix() {
        let config = switchyard_config::parse(TEXT).unwrap_or_else(|e| panic!("{e}"));
        let routes = &config.http.routes;
        let t = RouteTable::new(routes);
        let up = |host: &str, path: &str| t.find(host, path).map(|i| routes[i].upstream.as_str());
        assert_eq!(up("other.org", "/"), Some("default"));
        assert_eq!(up("other.org", "/api/jobs"), Some("api"));
        assert_eq!(up("a.example.com", "/x"), Some("wild"));
        assert_eq!(up("a.EU.example.com:8443", "/x"), Some("eu"));
        assert_eq!(up("admin.example.com", "/admin/users"), Some("admin"));
        // An exact host without a matching prefix falls through to the wildcard routes.
        assert_eq!(up("admin.example.com", "/public"), Some("wild"));
        // The bare suffix is not a subdomain of itself.
        assert_eq!(up("example.com", "/x"), Some("default"));
    }

    #[test]
    fn no_route_without_catch_all() {
        let t = RouteTable::new(&[]);
        assert!(t.find("a", "/").is_none());
    }
}
