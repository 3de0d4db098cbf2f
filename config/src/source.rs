//! The TOML source of a config: parsing with spans, key path ↔ line lookups, and
//! deserializing one piece (a "unit") at a time so that one bad value does not hide the
//! problems in the rest of the file.

use std::ops::Range;

use serde::de::{DeserializeOwned, IntoDeserializer};
use toml_edit::{DocumentMut, ImDocument, Item, Table, Value};

use crate::error::{ConfigError, ConfigErrors, KeyPath, Seg};

/// A borrowed piece of the document: an item, a table inside an array of tables, or a value.
#[derive(Clone, Copy)]
pub(crate) enum Node<'a> {
    Item(&'a Item),
    Table(&'a Table),
    Value(&'a Value),
}

/// A child of a table-like node: `(key, key span, child)`.
pub(crate) type Entry<'a> = (&'a str, Option<Range<usize>>, Node<'a>);

impl<'a> Node<'a> {
    /// The entries when this is a table or an inline table.
    pub(crate) fn entries(self) -> Option<Vec<Entry<'a>>> {
        match self {
            Node::Item(Item::Table(t)) | Node::Table(t) => Some(
                t.iter()
                    .filter(|(_, v)| !v.is_none())
                    .map(|(k, v)| (k, t.key(k).and_then(|key| key.span()), Node::Item(v)))
                    .collect(),
            ),
            Node::Item(Item::Value(Value::InlineTable(t))) | Node::Value(Value::InlineTable(t)) => {
                Some(
                    t.iter()
                        .map(|(k, v)| (k, t.key(k).and_then(|key| key.span()), Node::Value(v)))
                        .collect(),
                )
            }
            _ => None,
        }
    }

    /// The elements when this is an array or an array of tables.
    pub(crate) fn elements(self) -> Option<Vec<Node<'a>>> {
        match self {
            Node::Item(Item::ArrayOfTables(a)) => Some(a.iter().map(Node::Table).collect()),
            Node::Item(Item::Value(Value::Array(a))) | Node::Value(Value::Array(a)) => {
                Some(a.iter().map(Node::Value).collect())
            }
            _ => None,
        }
    }

    fn span(self) -> Option<Range<usize>> {
        match self {
            Node::Item(i) => i.span(),
            Node::Table(t) => t.span(),
            Node::Value(v) => v.span(),
        }
    }

    /// What kind of TOML value this is, for "expected a table, found …" messages.
    pub(crate) fn kind(self) -> &'static str {
        match self {
            Node::Item(Item::Table(_)) | Node::Table(_) => "table",
            Node::Item(Item::ArrayOfTables(_)) => "array of tables",
            Node::Item(Item::Value(v)) | Node::Value(v) => v.type_name(),
            Node::Item(Item::None) => "nothing",
        }
    }

    /// The child at `seg`, if there is one.
    fn child(self, seg: &Seg) -> Option<(Option<Range<usize>>, Node<'a>)> {
        match seg {
            Seg::Key(k) => self
                .entries()?
                .into_iter()
                .find(|(key, _, _)| key == k)
                .map(|(_, span, node)| (span.or_else(|| node.span()), node)),
            Seg::Index(i) => self
                .elements()?
                .get(*i)
                .copied()
                .map(|node| (node.span(), node)),
        }
    }
}

/// A parsed TOML document with its text, for line lookups.
pub struct Source<'t> {
    doc: ImDocument<&'t str>,
    line_starts: Vec<usize>,
}

impl<'t> Source<'t> {
    /// Parse TOML text; a syntax error comes back with its line.
    pub fn parse(text: &'t str) -> Result<Self, ConfigErrors> {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        match ImDocument::parse(text) {
            Ok(doc) => Ok(Source { doc, line_starts }),
            Err(e) => {
                let line = e.span().map(|s| line_of_offset(&line_starts, s.start));
                Err(ConfigErrors(vec![ConfigError {
                    path: "(syntax)".to_string(),
                    line,
                    message: format!("TOML syntax error: {}", e.message().trim()),
                }]))
            }
        }
    }

    pub(crate) fn root(&self) -> Node<'_> {
        Node::Table(self.doc.as_table())
    }

    /// 1-based line of the key at `path`, or of the nearest enclosing key that exists.
    pub fn line_of(&self, path: &KeyPath) -> Option<usize> {
        let mut node = self.root();
        let mut best = None;
        for seg in path.segments() {
            match node.child(seg) {
                Some((span, child)) => {
                    if let Some(span) = span {
                        best = Some(span.start);
                    }
                    node = child;
                }
                None => break,
            }
        }
        best.map(|off| line_of_offset(&self.line_starts, off))
    }

    /// The deepest key path whose value contains byte offset `off`.
    fn path_at(&self, off: usize) -> KeyPath {
        fn walk(node: Node<'_>, off: usize, path: KeyPath) -> Option<KeyPath> {
            let inside = node.span().is_some_and(|s| s.contains(&off));
            let children: Vec<(Seg, Node<'_>)> = if let Some(entries) = node.entries() {
                entries
                    .into_iter()
                    .map(|(k, _, n)| (Seg::Key(k.to_string().into()), n))
                    .collect()
            } else if let Some(elements) = node.elements() {
                elements
                    .into_iter()
                    .enumerate()
                    .map(|(i, n)| (Seg::Index(i), n))
                    .collect()
            } else {
                Vec::new()
            };
            for (seg, child) in children {
                let p = path.push(seg);
                if let Some(found) = walk(child, off, p) {
                    return Some(found);
                }
            }
            inside.then_some(path)
        }
        walk(self.root(), off, KeyPath::root()).unwrap_or_default()
    }

    pub(crate) fn error(&self, path: &KeyPath, message: impl Into<String>) -> ConfigError {
        ConfigError {
            path: path.to_string(),
            line: self.line_of(path),
            message: message.into(),
        }
    }

    /// Deserialize one unit of the document into a raw type. Unknown keys are reported (all
    /// of them) and so is a type error (the first one in this unit); `None` when the unit
    /// could not be read at all.
    pub(crate) fn unit<T: DeserializeOwned>(
        &self,
        node: Node<'_>,
        path: &KeyPath,
        errors: &mut Vec<ConfigError>,
    ) -> Option<T> {
        let mut unknown = Vec::new();
        let result = match node {
            Node::Item(Item::Table(t)) | Node::Table(t) => {
                let de = toml_edit::de::Deserializer::from(DocumentMut::from(t.clone()));
                serde_ignored::deserialize(de, |p| unknown.push(extend(path, &p)))
            }
            Node::Item(Item::Value(v)) | Node::Value(v) => {
                let de = v.clone().into_deserializer();
                serde_ignored::deserialize(de, |p| unknown.push(extend(path, &p)))
            }
            Node::Item(other) => {
                errors.push(self.error(
                    path,
                    format!("expected a table, found {}", Node::Item(other).kind()),
                ));
                return None;
            }
        };
        for full in unknown {
            errors.push(self.error(&full, "unknown key"));
        }
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                let (at, line) = match e.span() {
                    Some(s) => {
                        let found = self.path_at(s.start);
                        let at = if found.len() > path.len() {
                            found
                        } else {
                            path.clone()
                        };
                        (at, Some(line_of_offset(&self.line_starts, s.start)))
                    }
                    None => (path.clone(), self.line_of(path)),
                };
                errors.push(ConfigError {
                    path: at.to_string(),
                    line,
                    message: e.message().trim().to_string(),
                });
                None
            }
        }
    }
}

/// `path` extended by a `serde_ignored` path such as `pools.blue.wieght` or `backends.1.x`.
///
/// Walks the path's structure rather than splitting its text on '.', because names may
/// contain dots or be all digits (a pool named `v1.2` or `2`).
fn extend(path: &KeyPath, ignored: &serde_ignored::Path<'_>) -> KeyPath {
    fn push(p: &serde_ignored::Path<'_>, out: &mut KeyPath) {
        use serde_ignored::Path;
        match p {
            Path::Root => {}
            Path::Seq { parent, index } => {
                push(parent, out);
                *out = out.index(*index);
            }
            Path::Map { parent, key } => {
                push(parent, out);
                *out = out.key(key.clone());
            }
            Path::Some { parent }
            | Path::NewtypeStruct { parent }
            | Path::NewtypeVariant { parent } => push(parent, out),
        }
    }
    let mut p = path.clone();
    push(ignored, &mut p);
    p
}

fn line_of_offset(line_starts: &[usize], off: usize) -> usize {
    match line_starts.binary_search(&off) {
        Ok(i) => i + 1,
        Err(i) => i,
    }
}
