//! The layout rules of the crate, checked on its sources so that later changes keep them.
//!
//! 1. **Size**: every `.rs` file under `src/` has at most 800 lines, counting every line
//!    (comments and blank lines too) up to its first line that starts with `#[cfg(test)]`. A
//!    file without such a line (a separate `tests.rs`, a file under a `tests/` directory) counts
//!    whole. Split big files by concern, big test files by state or topic.
//! 2. **Connection tracking stands alone**: nothing under `src/conntrack/`, its tests included,
//!    names the engine (`crate::engine`, or any path that resolves to it).
//! 3. **No import cycles** in production code: none among the top-level modules of the crate
//!    (`src/x.rs` or `src/x/`), and none among the sibling files of one module (`a.rs` and
//!    `b.rs` of `src/m/`, each with what is under it; the parent `mod.rs` is not a sibling).
//!    Test code (after a file's first `#[cfg(test)]`, `tests.rs` files, `tests/` directories)
//!    may use any module: a test builds its fixtures with the crate's public face.
//!
//! How references are found (limits): paths written with `crate::`, `super::` or `self::`,
//! including grouped imports (`use super::{a, b::C}`: the first segment of each item). A name
//! the parent module re-exports from a child (`pub use child::{Name}`, `pub use child::Name`)
//! counts as that child. Line comments are skipped. Not seen: glob re-exports (`pub use
//! child::*`), paths produced by macros, block comments' contents (not skipped: they may add
//! references, never hide one).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Lines allowed before a file's first `#[cfg(test)]`.
const MAX_LINES: usize = 800;

/// A module path from the crate root, e.g. `["conntrack", "tcp", "window"]`.
type ModPath = Vec<String>;

/// One source file.
struct Source {
    /// Path relative to `src/`.
    rel: PathBuf,
    /// Its module.
    module: ModPath,
    /// Whole text.
    text: String,
    /// Production part: before the first `#[cfg(test)]`, empty for test files.
    production: String,
}

fn sources() -> Vec<Source> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let rel = path.strip_prefix(&src).expect("under src").to_path_buf();
            let text = std::fs::read_to_string(&path).expect("readable source");
            let is_test_file = rel.components().any(|c| c.as_os_str() == "tests")
                || rel.file_name().is_some_and(|n| n == "tests.rs");
            let production = if is_test_file {
                String::new()
            } else {
                before_tests(&text).to_owned()
            };
            Source {
                module: module_of(&rel),
                rel,
                text,
                production,
            }
        })
        .collect()
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            walk(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `conntrack/tcp/mod.rs` → `conntrack::tcp`; `lib.rs`, `main.rs` → the root; `bin/x.rs` → `bin::x`.
fn module_of(rel: &Path) -> ModPath {
    let mut parts: ModPath = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The text up to the first line starting with `#[cfg(test)]`.
fn before_tests(text: &str) -> &str {
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        if line.trim_start().starts_with("#[cfg(test)]") {
            return &text[..at];
        }
        at += line.len();
    }
    text
}

/// `text` without line comments (`//`, `///`, `//!` to the end of the line).
fn without_comments(text: &str) -> String {
    text.lines()
        .map(|l| l.find("//").map_or(l, |i| &l[..i]))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path a file names, resolved from the crate root (`super::x` in `a::b` is `a::x`).
fn references(module: &ModPath, text: &str) -> Vec<ModPath> {
    let code = without_comments(text);
    let bytes = code.as_bytes();
    let mut out = Vec::new();
    for head in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(head).map(|i| i + from) {
            from = i + head.len();
            let word_start =
                i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
            if !word_start || (i >= 2 && &code[i - 2..i] == "::") {
                continue;
            }
            let mut base: ModPath = match head {
                "crate::" => Vec::new(),
                "super::" => module[..module.len().saturating_sub(1)].to_vec(),
                _ => module.clone(),
            };
            let mut rest = &code[from..];
            while let Some(r) = rest.strip_prefix("super::") {
                base.pop();
                rest = r;
            }
            let mut segs = base;
            loop {
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                if end == 0 {
                    break;
                }
                segs.push(rest[..end].to_owned());
                rest = &rest[end..];
                match rest.strip_prefix("::") {
                    Some(r) => rest = r,
                    None => break,
                }
            }
            if let Some(group) = rest.strip_prefix('{') {
                let close = group.find('}').unwrap_or(group.len());
                for item in group[..close].split(',') {
                    let first = item.trim().split("::").next().unwrap_or("").trim();
                    let first = first.split_whitespace().next().unwrap_or("");
                    if !first.is_empty() && first != "self" {
                        let mut p = segs.clone();
                        p.push(first.to_owned());
                        out.push(p);
                    }
                }
            } else {
                out.push(segs);
            }
        }
    }
    out
}

/// Child modules (from the file tree) of every module.
fn children(files: &[Source]) -> BTreeMap<ModPath, BTreeSet<String>> {
    let mut kids: BTreeMap<ModPath, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        if let Some((last, parent)) = f.module.split_last() {
            kids.entry(parent.to_vec())
                .or_default()
                .insert(last.clone());
        }
    }
    kids
}

/// Names a module re-exports from one of its child modules: `pub use child::{A, B}`.
fn reexports(
    files: &[Source],
    kids: &BTreeMap<ModPath, BTreeSet<String>>,
) -> BTreeMap<(ModPath, String), String> {
    let mut map = BTreeMap::new();
    for f in files {
        let Some(mine) = kids.get(&f.module) else {
            continue;
        };
        for stmt in without_comments(&f.text).split(';') {
            let stmt = stmt.trim();
            let Some(rest) = stmt.strip_prefix("pub") else {
                continue;
            };
            let rest = rest.trim_start();
            let rest = match rest.strip_prefix('(') {
                Some(r) => r.split_once(')').map_or("", |(_, r)| r).trim_start(),
                None => rest,
            };
            let Some(path) = rest.strip_prefix("use ") else {
                continue;
            };
            let path = path.trim().trim_start_matches("self::");
            let Some((child, names)) = path.split_once("::") else {
                continue;
            };
            if !mine.contains(child) {
                continue;
            }
            for name in names.trim_matches(|c| c == '{' || c == '}').split(',') {
                let name = name.trim().rsplit(" as ").next().unwrap_or("").trim();
                let name = name.rsplit("::").next().unwrap_or("");
                if !name.is_empty() && name != "*" && name != "self" {
                    map.insert((f.module.clone(), name.to_owned()), child.to_owned());
                }
            }
        }
    }
    map
}

/// Dependency graphs: key = the parent module ([] for the top level), value = edges between
/// its children, each with the file that makes it.
type Graphs = BTreeMap<ModPath, BTreeMap<(String, String), String>>;

fn graphs(files: &[Source]) -> Graphs {
    let kids = children(files);
    let reexp = reexports(files, &kids);
    let mut graphs = Graphs::new();
    for f in files {
        for path in references(&f.module, &f.production) {
            // At every level where the file and the path share a parent, an edge between the
            // two children of that parent.
            for depth in 0..f.module.len() {
                let parent = &f.module[..depth];
                if path.len() <= depth || path[..depth] != *parent {
                    break;
                }
                let me = &f.module[depth];
                let Some(siblings) = kids.get(parent) else {
                    break;
                };
                let named = &path[depth];
                let other = if siblings.contains(named) {
                    Some(named.clone())
                } else {
                    reexp.get(&(parent.to_vec(), named.clone())).cloned()
                };
                if let Some(other) = other.filter(|o| o != me) {
                    graphs
                        .entry(parent.to_vec())
                        .or_default()
                        .entry((me.clone(), other))
                        .or_insert_with(|| f.rel.display().to_string());
                }
            }
        }
    }
    graphs
}

/// The strongly connected components with more than one node (Tarjan).
fn cycles(edges: &BTreeMap<(String, String), String>) -> Vec<Vec<String>> {
    let mut adj: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (a, b) in edges.keys() {
        adj.entry(a).or_default().push(b);
        adj.entry(b).or_default();
    }
    struct T<'a> {
        adj: BTreeMap<&'a str, Vec<&'a str>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let i = t.index.len();
        t.index.insert(v, i);
        t.low.insert(v, i);
        t.stack.push(v);
        t.on.insert(v);
        for w in t.adj[v].clone() {
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let nodes: Vec<&str> = adj.keys().copied().collect();
    let mut t = T {
        adj,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in nodes {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out
}

#[test]
fn every_source_file_is_at_most_800_lines_before_its_tests() {
    let mut problems = String::new();
    for f in sources() {
        let n = before_tests(&f.text).lines().count();
        if n > MAX_LINES {
            let _ = writeln!(
                problems,
                "src/{}: {n} lines before its first #[cfg(test)] (limit {MAX_LINES}): split it by concern \
                 (tests into a separate file count whole)",
                f.rel.display()
            );
        }
    }
    assert!(problems.is_empty(), "\n{problems}");
}

#[test]
fn connection_tracking_never_names_the_engine() {
    let mut problems = String::new();
    for f in sources()
        .iter()
        .filter(|f| f.module.first().is_some_and(|m| m == "conntrack"))
    {
        let textual = f.text.contains("crate::engine");
        let resolved = references(&f.module, &f.text)
            .iter()
            .any(|p| p.first().is_some_and(|m| m == "engine"));
        if textual || resolved {
            let _ = writeln!(
                problems,
                "src/{} names the engine: connection tracking must not depend on it (tests included)",
                f.rel.display()
            );
        }
    }
    assert!(problems.is_empty(), "\n{problems}");
}

#[test]
fn no_import_cycles_among_top_level_modules_or_sibling_files() {
    let mut problems = String::new();
    for (parent, edges) in graphs(&sources()) {
        for comp in cycles(&edges) {
            let scope = if parent.is_empty() {
                "top-level modules".to_owned()
            } else {
                format!("files of src/{}/", parent.join("/"))
            };
            let _ = writeln!(problems, "import cycle among {scope}: {}", comp.join(", "));
            for ((a, b), file) in &edges {
                if comp.contains(a) && comp.contains(b) {
                    let _ = writeln!(problems, "    {a} -> {b}  (src/{file})");
                }
            }
        }
    }
    assert!(problems.is_empty(), "\n{problems}");
}

/// The checks themselves, on small inputs, so that they cannot pass by seeing nothing.
#[test]
fn the_checks_see_what_they_must() {
    assert_eq!(
        before_tests("a\nb\n#[cfg(test)]\nmod tests;\n")
            .lines()
            .count(),
        2
    );
    assert_eq!(before_tests("a\nb\n").lines().count(), 2);
    let m: ModPath = vec!["conntrack".into(), "tcp".into(), "window".into()];
    let refs = references(
        &m,
        "use super::{Dir, segment::x};\nuse crate::engine::Engine; // crate::verdict\nsuper::super::scan::y",
    );
    let refs: Vec<String> = refs.iter().map(|p| p.join("::")).collect();
    assert_eq!(
        refs,
        [
            "engine::Engine",
            "conntrack::tcp::Dir",
            "conntrack::tcp::segment",
            "conntrack::scan::y"
        ]
    );
    let mut edges = BTreeMap::new();
    edges.insert(("a".to_owned(), "b".to_owned()), "a.rs".to_owned());
    edges.insert(("b".to_owned(), "a".to_owned()), "b.rs".to_owned());
    edges.insert(("b".to_owned(), "c".to_owned()), "b.rs".to_owned());
    assert_eq!(cycles(&edges), vec![vec!["a".to_owned(), "b".to_owned()]]);
    // The real crate has the edges it must have (so the graph is not empty by mistake).
    let g = graphs(&sources());
    let top = &g[&Vec::new()];
    assert!(top.contains_key(&("engine".to_owned(), "conntrack".to_owned())));
    let ct = &g[&vec!["conntrack".to_owned()]];
    assert!(ct.contains_key(&("segment".to_owned(), "tcp".to_owned())));
}
