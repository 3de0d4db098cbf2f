//! The shape of the code, checked so it cannot drift back (issue 10; docs/ARCHITECTURE.md):
//!
//! - no import circle between the files of any crate of the workspace, but for the known ones
//!   in crates whose engineers are taking them out (item 4 of the issue): a new circle fails,
//!   and a known one that is gone is reported so its entry can go;
//! - the parts of `dbrouter` import only downwards, in the order ARCHITECTURE.md draws;
//! - nothing below `dbrouter`'s top (`lib.rs`, `plane/`) names `DbPlane`;
//! - `pgwire` does not depend on tokio.
//!
//! The checker itself is `scripts/import_circles.rs` (std only, also runnable with `rustc`).

#[path = "../scripts/import_circles.rs"]
mod import_circles;

use std::collections::BTreeSet;
use std::path::Path;

use import_circles::{analyse, Graph};

/// Circles known and accepted: crate root, then the files of each circle. A circle found must
/// be one of these or part of one. Issue 10 took out the last ones; keep it empty.
const KNOWN: &[(&str, &[&str])] = &[];

const CRATES: &[&str] = &[
    "dbrouter/src/lib.rs",
    "control/src/lib.rs",
    "src/lib.rs",
    "src/main.rs",
];

/// dbrouter's parts from the top down (ARCHITECTURE.md): each may import only parts of a
/// later rank. The leaves share a rank and so do not import each other.
const DBROUTER_RANKS: &[&[&str]] = &[
    &["lib"],
    &["plane"],
    &["status"],
    &["client"],
    &["pooling"],
    &["route"],
    &["ha"],
    &["server"],
    &["runtime"],
    &["classify", "net", "stats", "cancel", "closing"],
    &["registry"],
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn graph(krate: &str) -> Graph {
    match analyse(&root().join(krate)) {
        Ok(g) => g,
        Err(e) => panic!("reading {krate}: {e}"),
    }
}

fn names(g: &Graph, group: &[usize]) -> BTreeSet<String> {
    group.iter().map(|&f| g.name(f)).collect()
}

#[test]
fn no_new_import_circle_in_any_crate() {
    let mut failures = Vec::new();
    for krate in CRATES {
        let g = graph(krate);
        let known: Vec<BTreeSet<String>> = KNOWN
            .iter()
            .filter(|(k, _)| k == krate)
            .map(|(_, files)| files.iter().map(|f| f.to_string()).collect())
            .collect();
        let circles = g.circles();
        for c in &circles {
            let files = names(&g, c);
            if !known.iter().any(|k| files.is_subset(k)) {
                failures.push(format!(
                    "{krate}: import circle of {} files:\n{}",
                    c.len(),
                    g.describe(c)
                ));
            }
        }
        for k in &known {
            if !circles.iter().any(|c| names(&g, c).is_subset(k)) {
                println!("{krate}: the known circle {k:?} is gone: remove it from KNOWN");
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn dbrouter_parts_import_only_downwards() {
    let g = graph("dbrouter/src/lib.rs");
    let rank = |part: &str| DBROUTER_RANKS.iter().position(|r| r.contains(&part));
    let mut failures = Vec::new();
    for ((from, to), (a, b)) in g.part_arrows() {
        match (rank(&from), rank(&to)) {
            (Some(rf), Some(rt)) if rf < rt => {}
            (None, _) | (_, None) => failures.push(format!(
                "{from} -> {to}: a part that ARCHITECTURE.md does not draw (add it to \
                 DBROUTER_RANKS and the drawing); e.g. {} -> {}",
                g.name(a),
                g.name(b)
            )),
            _ => failures.push(format!(
                "{from} -> {to} points up or sideways; e.g. {} -> {}",
                g.name(a),
                g.name(b)
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn only_the_top_of_dbrouter_names_db_plane() {
    let g = graph("dbrouter/src/lib.rs");
    let below: Vec<String> = (0..g.files.len())
        .filter(|&f| g.idents[f].contains("DbPlane"))
        .map(|f| g.name(f))
        .filter(|n| n != "lib.rs" && !n.starts_with("plane/"))
        .collect();
    assert!(
        below.is_empty(),
        "DbPlane is named below the top of dbrouter (give the part a narrow handle): {below:?}"
    );
}

#[test]
fn pgwire_has_no_tokio() {
    let manifest = match std::fs::read_to_string(root().join("pgwire/Cargo.toml")) {
        Ok(m) => m,
        Err(e) => panic!("reading pgwire/Cargo.toml: {e}"),
    };
    assert!(
        !manifest.contains("tokio"),
        "pgwire is the wire protocol alone: no tokio"
    );
    let g = graph("pgwire/src/lib.rs");
    let with_tokio: Vec<String> = (0..g.files.len())
        .filter(|&f| g.idents[f].contains("tokio"))
        .map(|f| g.name(f))
        .collect();
    assert!(
        with_tokio.is_empty(),
        "tokio named in pgwire: {with_tokio:?}"
    );
}

/// The checker finds what it must: a circle through a `mod.rs` and its child, through a
/// re-export, and none where a child only declares a sibling.
#[test]
fn the_checker_sees_circles() {
    let dir = std::env::temp_dir().join(format!("import-circles-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let write = |path: &str, text: &str| {
        let p = dir.join(path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::write(&p, text).unwrap_or_else(|e| panic!("{e}"));
    };
    write(
        "lib.rs",
        "pub mod pool;\npub mod top;\npub mod leaf;\npub use leaf::Shared;\n",
    );
    write(
        "pool/mod.rs",
        "mod idle;\npub struct NodePool;\nfn f() { idle::take(); }\n",
    );
    write(
        "pool/idle.rs",
        "use super::NodePool;\npub fn take() -> Option<NodePool> { None }\n",
    );
    write("leaf.rs", "pub struct Shared;\n");
    write(
        "top.rs",
        "use crate::Shared;\npub fn g(_: Shared) { crate::pool::f2(); }\n",
    );
    let g = analyse(&dir.join("lib.rs")).unwrap_or_else(|e| panic!("{e}"));
    let circles: Vec<BTreeSet<String>> = g.circles().iter().map(|c| names(&g, c)).collect();
    let _ = std::fs::remove_dir_all(&dir);
    let want: BTreeSet<String> = ["pool/idle.rs", "pool/mod.rs"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(circles, vec![want], "mod.rs <-> child is a circle");
    // `crate::Shared` is re-exported by lib.rs: top.rs imports leaf.rs, not lib.rs.
    let top = (0..g.files.len()).find(|&f| g.name(f) == "top.rs");
    let leaf = (0..g.files.len()).find(|&f| g.name(f) == "leaf.rs");
    let (Some(top), Some(leaf)) = (top, leaf) else {
        panic!("files not found: {:?}", g.files)
    };
    let targets: Vec<usize> = g
        .edges
        .get(&top)
        .map(|e| e.keys().copied().collect())
        .unwrap_or_default();
    assert!(targets.contains(&leaf), "{targets:?}");
}
