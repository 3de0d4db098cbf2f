//! Config errors: every problem found in one pass, each with its key path and line.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(Cow<'static, str>),
    Index(usize),
}

/// A key path such as `http.upstreams.jobs-api.pools.blue.backends[1]`.
///
/// Validation builds a path for every field it checks and almost never needs one (only for
/// errors), so a path is a shared, immutable linked list: extending it is one small
/// allocation, and static key names are not copied.
#[derive(Debug, Clone, Default)]
pub struct KeyPath(Option<Arc<PathNode>>);

#[derive(Debug)]
struct PathNode {
    parent: KeyPath,
    seg: Seg,
}

impl KeyPath {
    pub fn root() -> Self {
        KeyPath(None)
    }

    /// This path with a key appended.
    pub fn key(&self, key: impl Into<Cow<'static, str>>) -> Self {
        self.push(Seg::Key(key.into()))
    }

    /// This path with an array index appended.
    pub fn index(&self, i: usize) -> Self {
        self.push(Seg::Index(i))
    }

    pub fn push(&self, seg: Seg) -> Self {
        KeyPath(Some(Arc::new(PathNode {
            parent: self.clone(),
            seg,
        })))
    }

    /// Number of segments.
    pub fn len(&self) -> usize {
        let mut n = 0;
        let mut at = &self.0;
        while let Some(node) = at {
            n += 1;
            at = &node.parent.0;
        }
        n
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The segments, root first.
    pub fn segments(&self) -> Vec<&Seg> {
        let mut out = Vec::new();
        let mut at = &self.0;
        while let Some(node) = at {
            out.push(&node.seg);
            at = &node.parent.0;
        }
        out.reverse();
        out
    }
}

impl PartialEq for KeyPath {
    fn eq(&self, other: &Self) -> bool {
        self.segments() == other.segments()
    }
}

impl Eq for KeyPath {}

/// Keys made only of these characters are written bare; others are quoted, as TOML would.
fn is_bare(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("(root)");
        }
        for (i, seg) in self.segments().into_iter().enumerate() {
            match seg {
                Seg::Key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    if is_bare(k) {
                        f.write_str(k)?;
                    } else {
                        write!(f, "{k:?}")?;
                    }
                }
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// One problem in a config.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConfigError {
    /// Key path of the offending value, e.g. `http.routes[0].upstream`.
    pub path: String,
    /// 1-based line in the source text, when known.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}: {}", self.path, self.message),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

/// Every problem found in a config, in source order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[serde(transparent)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// A single error not tied to a key (I/O, size limits).
    pub fn single(path: &str, message: impl Into<String>) -> Self {
        ConfigErrors(vec![ConfigError {
            path: path.to_string(),
            line: None,
            message: message.into(),
        }])
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &ConfigError> {
        self.0.iter()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(f, "{n} config error{}", if n == 1 { "" } else { "s" })?;
        for e in &self.0 {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_read_like_toml() {
        let p = KeyPath::root()
            .key("http")
            .key("upstreams")
            .key("jobs-api")
            .key("backends")
            .index(1);
        assert_eq!(p.to_string(), "http.upstreams.jobs-api.backends[1]");
        assert_eq!(KeyPath::root().key("a b").key("c").to_string(), "\"a b\".c");
    }
}
