//! Import circles between the files of a Rust crate: which file imports which, and the
//! strongly connected groups of files that import each other (directly or round a ring).
//!
//! A file *imports* another when one of its paths (`use` trees, and paths written inline such
//! as `crate::tls::current()` or `super::CheckError::new`) names an item that the other file
//! defines. Re-exports are followed to the file that defines the item, so a `mod.rs` that
//! re-exports its children is not counted as the place their items come from; a `mod.rs`
//! that defines types its children use, and uses theirs, is a circle. Declaring a module
//! (`mod x;`) is not an import, and a path that ends at a module (`use crate::pool;`) counts
//! where it is used (`pool::key(...)`). Comments and string literals are skipped. Method
//! calls are not paths: `impl Foo` blocks spread over several files are not imports.
//!
//! No dependencies beyond `std`, so it runs anywhere:
//!
//! ```text
//! rustc --edition 2021 -O scripts/import_circles.rs -o target/import_circles
//! target/import_circles dbrouter/src/lib.rs pgwire/src/lib.rs      # circles, exit 1 if any
//! target/import_circles --edges dbrouter/src/lib.rs                # every file -> file
//! target/import_circles --parts dbrouter/src/lib.rs                # part -> part arrows
//! ```
//!
//! `tests/import_circles.rs` runs it over every crate of the workspace, so circles cannot come
//! back, and checks the allowed arrows between dbrouter's parts.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

// === tokens ===

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Str(String),
    PathSep,
    Punct(char),
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    line: usize,
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Skip a string body starting after its opening quote; returns the index after the closing
/// quote and the body.
fn string_body(s: &[char], mut i: usize, line: &mut usize) -> (usize, String) {
    let mut out = String::new();
    while i < s.len() {
        match s[i] {
            '\\' => {
                if let Some(&n) = s.get(i + 1) {
                    if n == '\n' {
                        *line += 1;
                    }
                    out.push(n);
                }
                i += 2;
            }
            '"' => return (i + 1, out),
            c => {
                if c == '\n' {
                    *line += 1;
                }
                out.push(c);
                i += 1;
            }
        }
    }
    (i, out)
}

/// A raw string `r#"…"#` with `hashes` hashes, starting after its opening quote.
fn raw_string_body(s: &[char], mut i: usize, hashes: usize, line: &mut usize) -> (usize, String) {
    let mut out = String::new();
    while i < s.len() {
        if s[i] == '"' && (1..=hashes).all(|k| s.get(i + k) == Some(&'#')) {
            return (i + 1 + hashes, out);
        }
        if s[i] == '\n' {
            *line += 1;
        }
        out.push(s[i]);
        i += 1;
    }
    (i, out)
}

fn tokenize(src: &str) -> Vec<Token> {
    let s: Vec<char> = src.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    let mut line = 1;
    while i < s.len() {
        let c = s[i];
        let next = s.get(i + 1).copied();
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && next == Some('/') {
            while i < s.len() && s[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < s.len() {
                if s[i] == '/' && s.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if s[i] == '*' && s.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if s[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if c == '"' {
            let at = line;
            let (end, body) = string_body(&s, i + 1, &mut line);
            toks.push(Token {
                tok: Tok::Str(body),
                line: at,
            });
            i = end;
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            if next == Some('\\') {
                let mut j = i + 2;
                while j < s.len() && s[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
            } else if s.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
                while i < s.len() && is_ident_char(s[i]) {
                    i += 1;
                }
            }
        } else if is_ident_start(c) {
            let start = i;
            while i < s.len() && is_ident_char(s[i]) {
                i += 1;
            }
            let word: String = s[start..i].iter().collect();
            let after = s.get(i).copied();
            // Byte, raw and C strings and byte chars: b"..", r#".."#, br"..", b'x'.
            if matches!(word.as_str(), "b" | "r" | "br" | "c" | "cr")
                && matches!(after, Some('"') | Some('#') | Some('\''))
            {
                if after == Some('\'') {
                    let mut j = i + 1;
                    if s.get(j) == Some(&'\\') {
                        j += 1;
                    }
                    j += 1;
                    while j < s.len() && s[j] != '\'' {
                        j += 1;
                    }
                    i = j + 1;
                    continue;
                }
                let mut hashes = 0;
                while s.get(i + hashes) == Some(&'#') {
                    hashes += 1;
                }
                if s.get(i + hashes) == Some(&'"') {
                    let at = line;
                    let (end, body) = if word.contains('r') {
                        raw_string_body(&s, i + hashes + 1, hashes, &mut line)
                    } else {
                        string_body(&s, i + hashes + 1, &mut line)
                    };
                    toks.push(Token {
                        tok: Tok::Str(body),
                        line: at,
                    });
                    i = end;
                    continue;
                }
                if word == "r" && hashes == 1 {
                    // A raw identifier: r#type.
                    let start = i + 1;
                    i = start;
                    while i < s.len() && is_ident_char(s[i]) {
                        i += 1;
                    }
                    toks.push(Token {
                        tok: Tok::Ident(s[start..i].iter().collect()),
                        line,
                    });
                    continue;
                }
            }
            toks.push(Token {
                tok: Tok::Ident(word),
                line,
            });
        } else if c.is_ascii_digit() {
            while i < s.len()
                && (is_ident_char(s[i])
                    || (s[i] == '.' && s.get(i + 1).is_some_and(|d| d.is_ascii_digit())))
            {
                i += 1;
            }
        } else if c == ':' && next == Some(':') {
            toks.push(Token {
                tok: Tok::PathSep,
                line,
            });
            i += 2;
        } else {
            toks.push(Token {
                tok: Tok::Punct(c),
                line,
            });
            i += 1;
        }
    }
    toks
}

// === modules and references ===

/// A module path from the crate root: `["pool", "idle"]`.
type ModPath = Vec<String>;

#[derive(Debug, Default)]
struct Module {
    file: usize,
    children: BTreeSet<String>,
    /// Names brought in by `use`: the name (or alias), and the path as written.
    uses: HashMap<String, Vec<String>>,
    /// `use x::*` paths, as written.
    globs: Vec<Vec<String>>,
    /// Items defined at the module's top level.
    items: HashSet<String>,
}

/// A path written in a file.
#[derive(Debug, Clone)]
struct Reference {
    file: usize,
    scope: ModPath,
    segments: Vec<String>,
    line: usize,
    /// A glob (`use x::*`): an import of the module `segments` names.
    glob: bool,
}

/// Where one file imports another.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Evidence {
    pub line: usize,
    pub path: String,
}

/// The files of one crate and which imports which.
#[derive(Debug, Default)]
pub struct Graph {
    /// Paths of the files, relative to the crate root's directory.
    pub files: Vec<PathBuf>,
    /// `edges[a][b]`: the places where file `a` imports file `b`.
    pub edges: BTreeMap<usize, BTreeMap<usize, Vec<Evidence>>>,
    /// Identifiers each file uses outside comments and strings.
    pub idents: Vec<HashSet<String>>,
}

const ITEM_KEYWORDS: &[&str] = &[
    "fn", "struct", "enum", "trait", "type", "const", "static", "union",
];

struct Parser<'a> {
    toks: &'a [Token],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self, k: usize) -> Option<&Tok> {
        self.toks.get(self.i + k).map(|t| &t.tok)
    }

    fn ident(&self, k: usize) -> Option<&str> {
        match self.peek(k) {
            Some(Tok::Ident(s)) => Some(s),
            _ => None,
        }
    }

    fn is_punct(&self, k: usize, c: char) -> bool {
        self.peek(k) == Some(&Tok::Punct(c))
    }
}

/// A `use` tree from `p.i` (just after `use`) to its `;`: each leaf as (name it binds, path),
/// the name being `*` for a glob and `_` for `as _`.
fn use_tree(p: &mut Parser, prefix: &[String], out: &mut Vec<(String, Vec<String>)>) {
    let mut path = prefix.to_vec();
    loop {
        match p.peek(0) {
            Some(Tok::PathSep) => p.i += 1,
            Some(Tok::Ident(s)) if s == "as" => {
                p.i += 1;
                let alias = p.ident(0).unwrap_or("_").to_string();
                p.i += 1;
                out.push((alias, path.clone()));
                return;
            }
            Some(Tok::Ident(s)) => {
                path.push(s.clone());
                p.i += 1;
            }
            Some(Tok::Punct('*')) => {
                p.i += 1;
                out.push(("*".into(), path.clone()));
                return;
            }
            Some(Tok::Punct('{')) => {
                p.i += 1;
                loop {
                    match p.peek(0) {
                        Some(Tok::Punct('}')) => {
                            p.i += 1;
                            return;
                        }
                        Some(Tok::Punct(',')) => p.i += 1,
                        None => return,
                        _ => use_tree(p, &path, out),
                    }
                }
            }
            _ => {
                // `,`, `}` or `;`: the leaf ends here.
                if let Some(last) = path.last().cloned() {
                    if last == "self" {
                        path.pop();
                        let name = path.last().cloned().unwrap_or_default();
                        out.push((name, path));
                    } else if path.len() > prefix.len() {
                        out.push((last, path));
                    }
                }
                return;
            }
        }
    }
}

/// Record `name` as a module declared in module `scope`.
fn add_child(modules: &mut HashMap<ModPath, Module>, scope: &ModPath, name: String) {
    modules
        .entry(scope.clone())
        .or_default()
        .children
        .insert(name);
}

/// Record `name` (if any) as an item defined at the top of module `scope`.
fn define(modules: &mut HashMap<ModPath, Module>, scope: &ModPath, name: Option<&str>) {
    if let Some(name) = name {
        modules
            .entry(scope.clone())
            .or_default()
            .items
            .insert(name.to_string());
    }
}

/// Parse one file as module `module`; returns the modules it declares (`mod x;`) with their
/// files.
fn parse_file(
    file: usize,
    path: &Path,
    module: &ModPath,
    toks: &[Token],
    modules: &mut HashMap<ModPath, Module>,
    refs: &mut Vec<Reference>,
) -> Vec<(ModPath, PathBuf)> {
    let mut declared = Vec::new();
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string();
    let mod_rs = matches!(stem.as_str(), "mod" | "lib" | "main");
    let base = if mod_rs { dir.clone() } else { dir.join(&stem) };

    // (module, brace depth of its body)
    let mut scopes: Vec<(ModPath, usize)> = vec![(module.clone(), 0)];
    let mut depth = 0usize;
    let mut pending_inline: Option<String> = None;
    let mut pending_path: Option<String> = None;
    let mut p = Parser { toks, i: 0 };
    modules.entry(module.clone()).or_default().file = file;

    while p.i < toks.len() {
        let line = toks[p.i].line;
        let (scope, scope_depth) = scopes.last().cloned().unwrap_or_default();
        match p.peek(0).cloned() {
            Some(Tok::Punct('#')) => {
                // An attribute: note `#[path = "…"]`, skip the rest.
                let mut j = p.i + 1;
                if p.is_punct(1, '!') {
                    j += 1;
                }
                if toks.get(j).map(|t| &t.tok) == Some(&Tok::Punct('[')) {
                    if let (Some(Tok::Ident(a)), Some(Tok::Punct('=')), Some(Tok::Str(v))) = (
                        toks.get(j + 1).map(|t| &t.tok),
                        toks.get(j + 2).map(|t| &t.tok),
                        toks.get(j + 3).map(|t| &t.tok),
                    ) {
                        if a == "path" {
                            pending_path = Some(v.clone());
                        }
                    }
                    let mut level = 0;
                    while j < toks.len() {
                        match toks[j].tok {
                            Tok::Punct('[') => level += 1,
                            Tok::Punct(']') => {
                                level -= 1;
                                if level == 0 {
                                    break;
                                }
                            }
                            _ => {}
                        }
                        j += 1;
                    }
                    p.i = j + 1;
                } else {
                    p.i += 1;
                }
            }
            Some(Tok::Punct('{')) => {
                depth += 1;
                if let Some(name) = pending_inline.take() {
                    let mut m = scope.clone();
                    m.push(name.clone());
                    add_child(modules, &scope, name);
                    modules.entry(m.clone()).or_default().file = file;
                    scopes.push((m, depth));
                }
                p.i += 1;
            }
            Some(Tok::Punct('}')) => {
                if scopes.len() > 1 && scope_depth == depth {
                    scopes.pop();
                }
                depth = depth.saturating_sub(1);
                p.i += 1;
            }
            Some(Tok::Ident(w)) if w == "mod" && p.ident(1).is_some() => {
                let name = p.ident(1).unwrap_or_default().to_string();
                if p.is_punct(2, ';') {
                    let inline: Vec<String> = scope[module.len()..].to_vec();
                    let mut at = if inline.is_empty() {
                        base.clone()
                    } else {
                        inline.iter().fold(base.clone(), |d, m| d.join(m))
                    };
                    let file_path = match pending_path.take() {
                        Some(rel) if inline.is_empty() => dir.join(rel),
                        Some(rel) => at.join(rel),
                        None => {
                            at = at.join(&name);
                            let flat = at.with_extension("rs");
                            if flat.exists() {
                                flat
                            } else {
                                at.join("mod.rs")
                            }
                        }
                    };
                    let mut m = scope.clone();
                    m.push(name.clone());
                    add_child(modules, &scope, name);
                    declared.push((m, file_path));
                    p.i += 3;
                } else {
                    pending_path = None;
                    pending_inline = Some(name);
                    p.i += 2;
                }
            }
            Some(Tok::Ident(w)) if w == "use" => {
                pending_path = None;
                p.i += 1;
                let mut leaves = Vec::new();
                use_tree(&mut p, &[], &mut leaves);
                let entry = modules.entry(scope.clone()).or_default();
                for (name, segs) in leaves {
                    if segs.is_empty() {
                        continue;
                    }
                    let glob = name == "*";
                    if glob {
                        entry.globs.push(segs.clone());
                    } else if name != "_" {
                        entry.uses.insert(name, segs.clone());
                    }
                    refs.push(Reference {
                        file,
                        scope: scope.clone(),
                        segments: segs,
                        line,
                        glob,
                    });
                }
            }
            Some(Tok::Ident(w)) if depth == scope_depth && ITEM_KEYWORDS.contains(&w.as_str()) => {
                pending_path = None;
                let name = p.ident(1).filter(|n| !ITEM_KEYWORDS.contains(n));
                define(modules, &scope, name);
                p.i += 1;
            }
            Some(Tok::Ident(w)) if w == "macro_rules" && p.is_punct(1, '!') => {
                define(modules, &scope, p.ident(2));
                p.i += 3;
            }
            Some(Tok::Ident(first))
                if p.peek(1) == Some(&Tok::PathSep)
                    && (p.i == 0 || toks[p.i - 1].tok != Tok::PathSep) =>
            {
                // An inline path: first::second::…
                let mut segs = vec![first];
                let mut j = p.i + 1;
                while toks.get(j).map(|t| &t.tok) == Some(&Tok::PathSep) {
                    match toks.get(j + 1).map(|t| &t.tok) {
                        Some(Tok::Ident(s)) => {
                            segs.push(s.clone());
                            j += 2;
                        }
                        _ => break,
                    }
                }
                refs.push(Reference {
                    file,
                    scope: scope.clone(),
                    segments: segs,
                    line,
                    glob: false,
                });
                p.i = j;
            }
            _ => p.i += 1,
        }
    }
    declared
}

/// What a path names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// An item defined in this file.
    File(usize),
    /// A module (and so no file in particular).
    Module(ModPath),
}

struct Resolver<'a> {
    modules: &'a HashMap<ModPath, Module>,
}

impl Resolver<'_> {
    /// Resolve `segs` written in module `scope`. `None`: outside the crate, or unknown.
    /// `strict`: only a name some module defines counts (for globs).
    fn resolve(
        &self,
        scope: &[String],
        segs: &[String],
        strict: bool,
        depth: u8,
    ) -> Option<Target> {
        if depth > 24 || segs.is_empty() {
            return None;
        }
        let first = segs[0].as_str();
        match first {
            "crate" => self.walk(Vec::new(), &segs[1..], strict, depth),
            "self" => self.walk(scope.to_vec(), &segs[1..], strict, depth),
            "super" => {
                let mut m = scope.to_vec();
                let mut k = 0;
                while segs.get(k).map(String::as_str) == Some("super") {
                    m.pop();
                    k += 1;
                }
                self.walk(m, &segs[k..], strict, depth)
            }
            _ => {
                let module = self.modules.get(scope)?;
                if module.children.contains(first) {
                    let mut m = scope.to_vec();
                    m.push(first.to_string());
                    return self.walk(m, &segs[1..], strict, depth);
                }
                if let Some(u) = module.uses.get(first) {
                    if u.len() == 1 && u[0] == first {
                        return None;
                    }
                    let mut full = u.clone();
                    full.extend_from_slice(&segs[1..]);
                    return self.resolve(scope, &full, strict, depth + 1);
                }
                if segs.len() > 1 && module.items.contains(first) {
                    // `Type::method` of a type defined here.
                    return Some(Target::File(module.file));
                }
                None
            }
        }
    }

    fn walk(&self, mut cur: ModPath, rest: &[String], strict: bool, depth: u8) -> Option<Target> {
        for (i, seg) in rest.iter().enumerate() {
            let module = self.modules.get(&cur)?;
            if module.children.contains(seg) {
                cur.push(seg.clone());
                continue;
            }
            if module.items.contains(seg) {
                return Some(Target::File(module.file));
            }
            if let Some(u) = module.uses.get(seg) {
                let mut full = u.clone();
                full.extend_from_slice(&rest[i + 1..]);
                return self.resolve(&cur, &full, strict, depth + 1);
            }
            for g in &module.globs {
                let mut full = g.clone();
                full.extend_from_slice(&rest[i..]);
                if let Some(t) = self.resolve(&cur, &full, true, depth + 1) {
                    return Some(t);
                }
            }
            return (!strict).then_some(Target::File(module.file));
        }
        Some(Target::Module(cur))
    }
}

/// Read the crate whose root file is `root` (`src/lib.rs`, `src/main.rs`).
pub fn analyse(root: &Path) -> Result<Graph, String> {
    let root_dir = root.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut graph = Graph::default();
    let mut modules: HashMap<ModPath, Module> = HashMap::new();
    let mut refs = Vec::new();
    let mut queue: Vec<(ModPath, PathBuf)> = vec![(Vec::new(), root.to_path_buf())];
    let mut seen: HashMap<PathBuf, usize> = HashMap::new();
    while let Some((module, path)) = queue.pop() {
        let src = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let file = match seen.get(&path) {
            Some(&f) => f,
            None => {
                let f = graph.files.len();
                seen.insert(path.clone(), f);
                let rel = path.strip_prefix(&root_dir).unwrap_or(&path).to_path_buf();
                graph.files.push(rel);
                graph.idents.push(HashSet::new());
                f
            }
        };
        let toks = tokenize(&src);
        for t in &toks {
            if let Tok::Ident(s) = &t.tok {
                graph.idents[file].insert(s.clone());
            }
        }
        let declared = parse_file(file, &path, &module, &toks, &mut modules, &mut refs);
        queue.extend(declared);
    }
    let resolver = Resolver { modules: &modules };
    for r in &refs {
        let target = match resolver.resolve(&r.scope, &r.segments, false, 0) {
            Some(Target::File(f)) => Some(f),
            Some(Target::Module(m)) if r.glob => modules.get(&m).map(|m| m.file),
            _ => None,
        };
        if let Some(t) = target.filter(|&t| t != r.file) {
            graph
                .edges
                .entry(r.file)
                .or_default()
                .entry(t)
                .or_default()
                .push(Evidence {
                    line: r.line,
                    path: r.segments.join("::"),
                });
        }
    }
    Ok(graph)
}

impl Graph {
    /// Groups of two or more files that import each other (strongly connected components),
    /// each sorted, smallest file index first.
    pub fn circles(&self) -> Vec<Vec<usize>> {
        // Tarjan's algorithm, iterative over the small graphs we have.
        struct State {
            index: Vec<Option<usize>>,
            low: Vec<usize>,
            on_stack: Vec<bool>,
            stack: Vec<usize>,
            next: usize,
            out: Vec<Vec<usize>>,
        }
        fn visit(g: &Graph, v: usize, s: &mut State) {
            s.index[v] = Some(s.next);
            s.low[v] = s.next;
            s.next += 1;
            s.stack.push(v);
            s.on_stack[v] = true;
            for &w in g.edges.get(&v).map(|e| e.keys()).into_iter().flatten() {
                match s.index[w] {
                    None => {
                        visit(g, w, s);
                        s.low[v] = s.low[v].min(s.low[w]);
                    }
                    Some(iw) if s.on_stack[w] => s.low[v] = s.low[v].min(iw),
                    _ => {}
                }
            }
            if Some(s.low[v]) == s.index[v] {
                let mut group = Vec::new();
                while let Some(w) = s.stack.pop() {
                    s.on_stack[w] = false;
                    group.push(w);
                    if w == v {
                        break;
                    }
                }
                if group.len() > 1 {
                    group.sort_unstable();
                    s.out.push(group);
                }
            }
        }
        let n = self.files.len();
        let mut s = State {
            index: vec![None; n],
            low: vec![0; n],
            on_stack: vec![false; n],
            stack: Vec::new(),
            next: 0,
            out: Vec::new(),
        };
        for v in 0..n {
            if s.index[v].is_none() {
                visit(self, v, &mut s);
            }
        }
        s.out.sort();
        s.out
    }

    /// A file's name for people: its path from the crate root's directory.
    pub fn name(&self, f: usize) -> String {
        self.files[f].display().to_string()
    }

    /// One circle spelt out: each file, and where it imports the next one of the group.
    pub fn describe(&self, group: &[usize]) -> String {
        let members: BTreeSet<usize> = group.iter().copied().collect();
        let mut out = String::new();
        for &a in group {
            for (b, evidence) in self.edges.get(&a).into_iter().flatten() {
                if members.contains(b) {
                    let first = &evidence[0];
                    out.push_str(&format!(
                        "    {} -> {}   (line {}: {})\n",
                        self.name(a),
                        self.name(*b),
                        first.line,
                        first.path
                    ));
                }
            }
        }
        out
    }

    /// The part of a file: its first path component below the crate root's directory
    /// (`server/pool/idle.rs` is in `server`, `cancel.rs` in `cancel`, `lib.rs` in `lib`).
    pub fn part(&self, f: usize) -> String {
        let p = &self.files[f];
        let first = p
            .components()
            .next()
            .map(|c| c.as_os_str().to_string_lossy().into_owned());
        match first {
            Some(c) if p.components().count() > 1 => c,
            _ => p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }

    /// Part-to-part arrows, with one file-level edge as an example of each.
    pub fn part_arrows(&self) -> BTreeMap<(String, String), (usize, usize)> {
        let mut out = BTreeMap::new();
        for (&a, targets) in &self.edges {
            for &b in targets.keys() {
                let (pa, pb) = (self.part(a), self.part(b));
                if pa != pb {
                    out.entry((pa, pb)).or_insert((a, b));
                }
            }
        }
        out
    }
}

#[allow(dead_code)] // the test includes this file as a module and calls `analyse`
fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let edges = args.iter().any(|a| a == "--edges");
    let parts = args.iter().any(|a| a == "--parts");
    args.retain(|a| !a.starts_with("--"));
    if args.is_empty() {
        eprintln!("usage: import_circles [--edges|--parts] CRATE_ROOT.rs...");
        std::process::exit(2);
    }
    let mut found = false;
    for root in &args {
        let graph = match analyse(Path::new(root)) {
            Ok(g) => g,
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(2);
            }
        };
        if edges {
            for (&a, targets) in &graph.edges {
                for (&b, ev) in targets {
                    println!(
                        "{root}: {} -> {} (line {}: {})",
                        graph.name(a),
                        graph.name(b),
                        ev[0].line,
                        ev[0].path
                    );
                }
            }
        }
        if parts {
            for ((pa, pb), (a, b)) in graph.part_arrows() {
                println!(
                    "{root}: {pa} -> {pb}   (e.g. {} -> {})",
                    graph.name(a),
                    graph.name(b)
                );
            }
        }
        let circles = graph.circles();
        println!(
            "{root}: {} files, {} import circles",
            graph.files.len(),
            circles.len()
        );
        for c in &circles {
            found = true;
            println!("  circle of {} files:", c.len());
            print!("{}", graph.describe(c));
        }
    }
    std::process::exit(i32::from(found));
}
