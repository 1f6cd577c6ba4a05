//! The module import graph of each crate (`surge`, `surge-runtime`) must be acyclic.
//!
//! Every file is one node, named by its module path (`crate::control::autoscale::decider`).
//! An edge a -> b means a's code names something that lives in b: a `crate::`, `self::` or
//! `super::` path, a bare path starting with a child module declared in a's file, or a
//! path starting with a name a brought in by `use`. A path is attributed to the longest
//! prefix that is a known module. Test modules (`#[cfg(test)]` items, `mod tests`) are left
//! out entirely: a test may import anything. Paths into another crate are ignored (the
//! runtime never uses surge, so cross-crate edges cannot close a cycle).
//!
//! std only: this is a small lexer over the source, not a Rust parser. Comments, doc
//! comments and string/char literals are blanked first, so paths in them do not count.
//! Not handled: `#[path]` attributes (a declared module whose file is missing fails the
//! test loudly) and macro-generated modules.
//!
//! Runs under cargo, or standalone from the workspace root:
//! `rustc --edition 2021 --test tests/module_graph.rs -o /tmp/mg && /tmp/mg`.

// Integration tests drive real processes from plain threads against the wall clock: the
// time rule of `.clippy.toml` is for the host, not for them.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};

/// A module path as segments, starting with `crate`.
type ModPath = Vec<String>;

fn join(p: &[String]) -> String {
    p.join("::")
}

fn is_ident(s: &str) -> bool {
    s.starts_with(|c: char| c.is_alphabetic() || c == '_')
}

// ---------------------------------------------------------------- lexing

/// If a comment or a string/char literal starts at `c[i]`, the index just past it.
fn literal_end(c: &[char], i: usize) -> Option<usize> {
    let at = |k: usize| c.get(k).copied().unwrap_or('\0');
    let find = |from: usize, ch: char| (from..c.len()).find(|&k| c[k] == ch).unwrap_or(c.len());
    match (at(i), at(i + 1)) {
        ('/', '/') => return Some(find(i, '\n')), // also `///` and `//!` doc comments
        ('/', '*') => {
            // Block comments nest.
            let (mut k, mut depth) = (i + 2, 1);
            while k < c.len() && depth > 0 {
                match (c[k], at(k + 1)) {
                    ('/', '*') => (depth, k) = (depth + 1, k + 2),
                    ('*', '/') => (depth, k) = (depth - 1, k + 2),
                    _ => k += 1,
                }
            }
            return Some(k.min(c.len()));
        }
        _ => {}
    }
    // Literal prefixes b"", c"", b'', r"", br#""#: only at the start of a token.
    let at_token_start = i == 0 || !(c[i - 1].is_alphanumeric() || c[i - 1] == '_');
    let mut p = i;
    if at_token_start
        && matches!(at(i), 'b' | 'c')
        && (matches!(at(i + 1), '"' | 'r') || (at(i) == 'b' && at(i + 1) == '\''))
    {
        p = i + 1;
    }
    if at(p) == 'r' && at_token_start {
        let hashes = (p + 1..c.len()).take_while(|&k| c[k] == '#').count();
        if at(p + 1 + hashes) != '"' {
            return None; // an identifier such as `return`, or a raw identifier `r#type`
        }
        let body = p + 2 + hashes;
        let close =
            (body..c.len()).find(|&k| c[k] == '"' && (1..=hashes).all(|h| at(k + h) == '#'));
        return Some(close.map_or(c.len(), |k| k + 1 + hashes));
    }
    match at(p) {
        '"' => {
            let mut k = p + 1;
            while k < c.len() && c[k] != '"' {
                k += if c[k] == '\\' { 2 } else { 1 };
            }
            Some((k + 1).min(c.len()))
        }
        '\'' if at(p + 1) == '\\' => Some(find(p + 3, '\'') + 1), // '\n', '\'', '\u{..}'
        '\'' if at(p + 2) == '\'' => Some(p + 3),                 // 'x', '"'
        _ => None, // a lifetime `'a`, or ordinary code
    }
}

/// The source with comments and literals replaced by spaces; newlines are kept so that
/// line numbers stay right.
fn strip(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < c.len() {
        match literal_end(&c, i) {
            Some(end) => {
                out.extend(
                    c[i..end]
                        .iter()
                        .map(|&ch| if ch == '\n' { '\n' } else { ' ' }),
                );
                i = end;
            }
            None => {
                out.push(c[i]);
                i += 1;
            }
        }
    }
    out
}

#[derive(Debug)]
struct Tok {
    text: String,
    line: usize,
}

/// Identifiers/numbers, `::`, and single punctuation characters, each with its line.
fn tokenize(src: &str) -> Vec<Tok> {
    let c: Vec<char> = strip(src).chars().collect();
    let (mut out, mut i, mut line) = (Vec::new(), 0, 1);
    while i < c.len() {
        let start = i;
        if c[i] == '\n' {
            line += 1;
            i += 1;
            continue;
        } else if c[i].is_whitespace() {
            i += 1;
            continue;
        } else if c[i].is_alphanumeric() || c[i] == '_' {
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
        } else if c[i] == ':' && c.get(i + 1) == Some(&':') {
            i += 2;
        } else {
            i += 1;
        }
        out.push(Tok {
            text: c[start..i].iter().collect(),
            line,
        });
    }
    out
}

fn tok(t: &[Tok], i: usize) -> &str {
    t.get(i).map_or("", |x| x.text.as_str())
}

// ---------------------------------------------------------------- scanning one file

/// A path written in a file, before resolution.
#[derive(Debug, Clone, PartialEq)]
struct Ref {
    /// Inline modules (`mod a { ... }`) around the path, relative to the file's module.
    scope: Vec<String>,
    segs: Vec<String>,
    line: usize,
    /// For a `use` leaf, the name it binds (`use a::b as c;` binds `c`).
    binds: Option<String>,
}

#[derive(Debug, Default)]
struct Scan {
    /// `mod x;` declarations other than test modules, relative to the file's module
    /// (more than one segment when declared inside an inline module).
    children: Vec<Vec<String>>,
    refs: Vec<Ref>,
}

/// Index of the bracket closing the one at `open`.
fn matching(t: &[Tok], open: usize) -> usize {
    let mut depth = 0;
    for k in open..t.len() {
        match tok(t, k) {
            "(" | "[" | "{" => depth += 1,
            ")" | "]" | "}" => {
                depth -= 1;
                if depth == 0 {
                    return k;
                }
            }
            _ => {}
        }
    }
    t.len()
}

/// Index just past the item, statement or field starting at `i` (to drop `#[cfg(test)]` code).
/// An item ends at `;` or at its body's closing brace; a field, variant or match arm at `,`.
fn skip_item(t: &[Tok], i: usize) -> usize {
    let mut k = i;
    loop {
        match tok(t, k) {
            "#" if tok(t, k + 1) == "[" => k = matching(t, k + 1) + 1,
            "pub" if tok(t, k + 1) == "(" => k = matching(t, k + 1) + 1,
            "pub" => k += 1,
            _ => break,
        }
    }
    const ITEMS: &str = "mod fn use struct enum union trait impl const static type extern \
                         unsafe async macro_rules let {";
    let item = ITEMS.split_whitespace().any(|w| w == tok(t, k));
    let mut depth = 0;
    for k in i..t.len() {
        match tok(t, k) {
            "(" | "[" | "{" => depth += 1,
            ")" | "]" | "}" if depth == 0 => return k, // the enclosing block ends
            ")" | "]" => depth -= 1,
            "}" => {
                depth -= 1;
                if depth == 0 && item {
                    return k + 1;
                }
            }
            ";" if depth == 0 => return k + 1,
            "," if depth == 0 && !item => return k + 1,
            _ => {}
        }
    }
    t.len()
}

/// Parses one use tree at `*i`, prefixed by `segs`; pushes a Ref per leaf.
fn use_tree(
    t: &[Tok],
    i: &mut usize,
    mut segs: Vec<String>,
    scope: &[String],
    refs: &mut Vec<Ref>,
) {
    loop {
        let text = tok(t, *i);
        if text == "{" {
            *i += 1;
            while *i < t.len() && tok(t, *i) != "}" {
                use_tree(t, i, segs.clone(), scope, refs);
                match tok(t, *i) {
                    "," => *i += 1,
                    "}" => {}
                    _ => return, // malformed; the caller skips to `;`
                }
            }
            *i += 1;
            return;
        }
        if text == "*" {
            // A glob uses the module it reads from.
            refs.push(Ref {
                scope: scope.to_vec(),
                segs,
                line: t[*i].line,
                binds: None,
            });
            *i += 1;
            return;
        }
        if !is_ident(text) {
            return;
        }
        segs.push(text.to_string());
        let line = t[*i].line;
        *i += 1;
        if tok(t, *i) == "::" {
            *i += 1;
            continue;
        }
        let mut renamed = None;
        if tok(t, *i) == "as" {
            renamed = Some(tok(t, *i + 1).to_string());
            *i += 2;
        }
        if segs.len() > 1 && segs.last().is_some_and(|s| s == "self") {
            segs.pop(); // `a::{self}` is `a`
        }
        let binds = renamed
            .or_else(|| segs.last().cloned())
            .filter(|b| b != "_");
        refs.push(Ref {
            scope: scope.to_vec(),
            segs,
            line,
            binds,
        });
        return;
    }
}

/// Finds module declarations and every path, skipping test code.
fn scan(src: &str) -> Scan {
    let t = tokenize(src);
    let mut s = Scan::default();
    // Inline modules we are inside, each with the brace depth its `}` returns to.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut i = 0;
    while i < t.len() {
        let scope: Vec<String> = inline.iter().map(|(n, _)| n.clone()).collect();
        match tok(&t, i) {
            "#" if tok(&t, i + 1) == "[" => {
                let close = matching(&t, i + 1);
                let attr: Vec<&str> = (i + 2..close).map(|k| tok(&t, k)).collect();
                i = close + 1;
                if attr == ["cfg", "(", "test", ")"] {
                    i = skip_item(&t, i);
                }
            }
            "mod" if is_ident(tok(&t, i + 1)) => {
                let name = tok(&t, i + 1).to_string();
                match tok(&t, i + 2) {
                    _ if name == "tests" => i = skip_item(&t, i),
                    ";" => {
                        s.children.push([scope, vec![name]].concat());
                        i += 3;
                    }
                    "{" => {
                        inline.push((name, depth));
                        depth += 1;
                        i += 3;
                    }
                    _ => i += 1,
                }
            }
            "use" => {
                i += 1;
                if tok(&t, i) == "::" {
                    i += 1; // `use ::name`: always an external crate; resolves to nothing
                }
                use_tree(&t, &mut i, Vec::new(), &scope, &mut s.refs);
                while i < t.len() && tok(&t, i) != ";" {
                    i += 1;
                }
                i += 1;
            }
            "{" => {
                depth += 1;
                i += 1;
            }
            "}" => {
                depth -= 1;
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                i += 1;
            }
            text if is_ident(text)
                && tok(&t, i + 1) == "::"
                && is_ident(tok(&t, i + 2))
                && (i == 0 || tok(&t, i - 1) != "::")
                // `pub(in crate::a)` restricts visibility; it uses nothing
                && !(i >= 2 && tok(&t, i - 1) == "in" && tok(&t, i - 2) == "(") =>
            {
                let line = t[i].line;
                let mut segs = vec![text.to_string()];
                i += 1;
                while tok(&t, i) == "::" && is_ident(tok(&t, i + 1)) {
                    segs.push(tok(&t, i + 1).to_string());
                    i += 2;
                }
                s.refs.push(Ref {
                    scope,
                    segs,
                    line,
                    binds: None,
                });
            }
            _ => i += 1,
        }
    }
    s
}

// ---------------------------------------------------------------- resolution and graph

/// The absolute path `segs` names when written in module `scope`, or None when it does not
/// start inside this crate (std, dependencies, `surge_runtime::`, local items).
fn absolute(
    scope: &[String],
    segs: &[String],
    known: &BTreeSet<String>,
    aliases: &BTreeMap<String, ModPath>,
) -> Option<ModPath> {
    let first = segs.first()?.as_str();
    let (mut base, rest) = match first {
        "crate" => (vec!["crate".to_string()], &segs[1..]),
        "self" | "super" => {
            let mut base = scope.to_vec();
            let mut k = 0;
            while k < segs.len() && (segs[k] == "self" || segs[k] == "super") {
                if segs[k] == "super" {
                    if base.len() <= 1 {
                        return None; // above the crate root: not valid Rust
                    }
                    base.pop();
                }
                k += 1;
            }
            (base, &segs[k..])
        }
        // A child module declared here, then a name brought in by `use`.
        name if known.contains(&format!("{}::{name}", join(scope))) => (scope.to_vec(), segs),
        name => (aliases.get(name)?.clone(), &segs[1..]),
    };
    base.extend(rest.iter().cloned());
    Some(base)
}

/// The module an absolute path points into: its longest prefix that is a known module.
fn owner(abs: &[String], known: &BTreeSet<String>) -> Option<String> {
    (1..=abs.len())
        .rev()
        .map(|n| join(&abs[..n]))
        .find(|p| known.contains(p))
}

/// One crate module file.
struct ModFile {
    module: ModPath,
    /// As shown in messages: relative to the workspace root.
    file: String,
    src: String,
}

/// Where an edge comes from: the first reference that creates it.
#[derive(Debug, Clone)]
struct Site {
    file: String,
    line: usize,
    path: String,
}

#[derive(Default)]
struct Graph {
    nodes: BTreeSet<String>,
    edges: BTreeMap<(String, String), Site>,
}

fn build_graph(files: &[ModFile]) -> Graph {
    let mut g = Graph {
        nodes: files.iter().map(|f| join(&f.module)).collect(),
        ..Graph::default()
    };
    for f in files {
        let s = scan(&f.src);
        let from = join(&f.module);
        let scope_of = |r: &Ref| [f.module.clone(), r.scope.clone()].concat();
        // First the names `use` binds (a `use` may come after the code relying on it).
        let mut aliases = BTreeMap::new();
        for r in &s.refs {
            if let Some(name) = &r.binds {
                if let Some(abs) = absolute(&scope_of(r), &r.segs, &g.nodes, &BTreeMap::new()) {
                    aliases.insert(name.clone(), abs);
                }
            }
        }
        for r in &s.refs {
            let Some(abs) = absolute(&scope_of(r), &r.segs, &g.nodes, &aliases) else {
                continue;
            };
            let Some(to) = owner(&abs, &g.nodes) else {
                continue;
            };
            if to != from {
                let site = Site {
                    file: f.file.clone(),
                    line: r.line,
                    path: join(&r.segs),
                };
                g.edges.entry((from.clone(), to)).or_insert(site);
            }
        }
    }
    g
}

/// Follows `mod x;` declarations from a crate root (`lib.rs`) to every module file.
fn discover(root: &Path, crate_root: &Path) -> Vec<ModFile> {
    let mut out = Vec::new();
    let mut todo = vec![(vec!["crate".to_string()], crate_root.to_path_buf())];
    while let Some((module, path)) = todo.pop() {
        let src = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // Children of the crate root or of a mod.rs live beside it; those of a.rs in a/.
        let dir = if module.len() == 1 || path.file_name().is_some_and(|n| n == "mod.rs") {
            path.parent().unwrap().to_path_buf()
        } else {
            path.with_extension("")
        };
        for child in scan(&src).children {
            let (name, inline) = child.split_last().unwrap();
            let d = inline.iter().fold(dir.clone(), |d, seg| d.join(seg));
            let candidates = [d.join(format!("{name}.rs")), d.join(name).join("mod.rs")];
            let file = candidates.iter().find(|p| p.is_file()).unwrap_or_else(|| {
                panic!(
                    "{}: `mod {name};` but no {} or {}",
                    path.display(),
                    candidates[0].display(),
                    candidates[1].display()
                )
            });
            todo.push(([module.clone(), child.clone()].concat(), file.clone()));
        }
        let file = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .display()
            .to_string();
        out.push(ModFile { module, file, src });
    }
    out.sort_by(|a, b| a.module.cmp(&b.module));
    out
}

// ---------------------------------------------------------------- cycles

/// Breadth-first search from `from` through the nodes `allowed` admits: the predecessor of
/// each node reached (`from` is its own).
fn bfs(adj: &[Vec<usize>], from: usize, allowed: impl Fn(usize) -> bool) -> BTreeMap<usize, usize> {
    let mut prev = BTreeMap::from([(from, from)]);
    let mut queue = VecDeque::from([from]);
    while let Some(x) = queue.pop_front() {
        for &y in &adj[x] {
            if allowed(y) && !prev.contains_key(&y) {
                prev.insert(y, x);
                queue.push_back(y);
            }
        }
    }
    prev
}

/// For each strongly connected component of more than one module: its members, and cycles
/// `[a, b, .., a]` covering every edge inside it (for each edge not yet shown, the shortest
/// cycle through it). The graphs are tiny, so components come from plain reachability:
/// u and v are in one component when each reaches the other.
fn cycles(g: &Graph) -> Vec<(Vec<String>, Vec<Vec<String>>)> {
    let names: Vec<&String> = g.nodes.iter().collect();
    let idx = |n: &String| names.binary_search(&n).unwrap();
    let mut adj = vec![Vec::new(); names.len()];
    for (a, b) in g.edges.keys() {
        adj[idx(a)].push(idx(b));
    }
    let reach: Vec<_> = (0..names.len()).map(|u| bfs(&adj, u, |_| true)).collect();
    let (mut done, mut out) = (BTreeSet::new(), Vec::new());
    for u in 0..names.len() {
        let comp: BTreeSet<usize> = reach[u]
            .keys()
            .copied()
            .filter(|&v| reach[v].contains_key(&u))
            .collect();
        if comp.len() < 2 || !done.insert(*comp.first().unwrap()) {
            continue; // acyclic, or a component already reported
        }
        let (mut covered, mut found) = (BTreeSet::new(), Vec::new());
        for &a in &comp {
            for &b in adj[a].iter().filter(|b| comp.contains(b)) {
                if covered.contains(&(a, b)) {
                    continue;
                }
                // The shortest way from b back to a closes the cycle a -> b -> .. -> a.
                let prev = bfs(&adj, b, |x| comp.contains(&x));
                let mut cycle = vec![a];
                while *cycle.last().unwrap() != b {
                    cycle.push(prev[cycle.last().unwrap()]);
                }
                cycle.push(a);
                cycle.reverse();
                covered.extend(cycle.windows(2).map(|w| (w[0], w[1])));
                found.push(cycle.iter().map(|&k| names[k].clone()).collect());
            }
        }
        out.push((comp.iter().map(|&k| names[k].clone()).collect(), found));
    }
    out
}

fn report(krate: &str, g: &Graph, groups: &[(Vec<String>, Vec<Vec<String>>)]) -> String {
    let mut s = String::new();
    for (members, found) in groups {
        s += &format!(
            "\n{krate}: {} modules import each other: {}\n",
            members.len(),
            members.join(", ")
        );
        for cycle in found {
            s += &format!("  cycle: {}\n", cycle.join(" -> "));
            for w in cycle.windows(2) {
                let e = &g.edges[&(w[0].clone(), w[1].clone())];
                s += &format!(
                    "    {} -> {}: {}:{} `{}`\n",
                    w[0], w[1], e.file, e.line, e.path
                );
            }
        }
    }
    s
}

#[test]
fn module_imports_are_acyclic() {
    let root = PathBuf::from(option_env!("CARGO_MANIFEST_DIR").unwrap_or("."));
    let (mut summary, mut failures) = (Vec::new(), String::new());
    for (krate, lib) in [
        ("surge", "src/lib.rs"),
        ("surge_runtime", "runtime/src/lib.rs"),
    ] {
        let g = build_graph(&discover(&root, &root.join(lib)));
        summary.push(format!(
            "{krate} {} modules {} edges",
            g.nodes.len(),
            g.edges.len()
        ));
        failures += &report(krate, &g, &cycles(&g));
    }
    assert!(
        failures.is_empty(),
        "module import cycles (move the item, or the reference):\n{failures}"
    );
    println!("module graph: {}, no cycles", summary.join(", "));
}

// ---------------------------------------------------------------- tests of the checker

#[cfg(test)]
mod checker {
    use super::*;

    fn segs(s: &Scan) -> Vec<String> {
        s.refs.iter().map(|r| join(&r.segs)).collect()
    }

    /// A crate from (module path, source) pairs; each file is named after its module.
    fn graph(files: &[(&str, &str)]) -> Graph {
        let files: Vec<ModFile> = files
            .iter()
            .map(|(m, src)| ModFile {
                module: m.split("::").map(String::from).collect(),
                file: m.to_string(),
                src: src.to_string(),
            })
            .collect();
        build_graph(&files)
    }

    fn edges(g: &Graph) -> Vec<String> {
        g.edges.keys().map(|(a, b)| format!("{a} -> {b}")).collect()
    }

    #[test]
    fn nested_braces_and_self() {
        let s = scan("use crate::a::{b::C, d::{self, E as F}, *};");
        assert_eq!(
            segs(&s),
            [
                "crate::a::b::C",
                "crate::a::d",
                "crate::a::d::E",
                "crate::a"
            ]
        );
        let binds: Vec<_> = s.refs.iter().map(|r| r.binds.clone()).collect();
        assert_eq!(
            binds,
            [Some("C".into()), Some("d".into()), Some("F".into()), None]
        );
    }

    #[test]
    fn multi_line_use_reports_each_leaf_line() {
        let s = scan("use super::{\n    a,\n    b::C,\n};\nfn f() { crate::x::y(1); }\n");
        let lines: Vec<_> = s.refs.iter().map(|r| (join(&r.segs), r.line)).collect();
        let want = [("super::a", 2), ("super::b::C", 3), ("crate::x::y", 5)];
        assert_eq!(lines, want.map(|(p, l)| (p.to_string(), l)));
    }

    #[test]
    fn super_super_and_self_resolve() {
        let known: BTreeSet<String> = [
            "crate",
            "crate::a",
            "crate::a::b",
            "crate::a::b::c",
            "crate::z",
        ]
        .map(String::from)
        .into();
        let here: ModPath = ["crate", "a", "b", "c"].map(String::from).into();
        let abs = |p: &str| {
            let segs: Vec<String> = p.split("::").map(String::from).collect();
            let a = absolute(&here, &segs, &known, &BTreeMap::new());
            a.and_then(|a| owner(&a, &known))
        };
        assert_eq!(abs("super::super::X").as_deref(), Some("crate::a"));
        assert_eq!(abs("super::f").as_deref(), Some("crate::a::b"));
        assert_eq!(abs("self::Item").as_deref(), Some("crate::a::b::c"));
        assert_eq!(abs("crate::z::deep::Thing").as_deref(), Some("crate::z"));
        assert_eq!(abs("std::fs::read"), None);
    }

    #[test]
    fn comments_and_strings_are_ignored() {
        let src = r####"
            //! Docs name [`crate::a`].
            /// and crate::b
            /* block crate::c /* nested crate::d */ still comment crate::e */
            fn f() -> char {
                let s = "crate::f \" crate::g";
                let r = r#"crate::h "quoted" "#;
                let b = b"crate::i";
                let q = '"'; let e = '\''; let lt: &'static str = "";
                crate::real::path(q); // crate::j
                '"'
            }
        "####;
        assert_eq!(segs(&scan(src)), ["crate::real::path"]);
    }

    #[test]
    fn test_modules_are_skipped() {
        let src = "mod a;\n#[cfg(test)]\nmod tests;\n#[cfg(test)]\n#[allow(unused)]\nmod more { use crate::x; }\n\
                   mod tests { use crate::y; }\nfn f() { crate::z::g(); }\n";
        let s = scan(src);
        assert_eq!(s.children, [vec!["a".to_string()]]);
        assert_eq!(segs(&s), ["crate::z::g"]);
    }

    #[test]
    fn two_cycle_is_detected_with_sites() {
        let g = graph(&[
            ("crate", "pub mod a;\npub mod b;"),
            ("crate::a", "use crate::b::Thing;"),
            ("crate::b", "fn f() {\n    super::a::g();\n}"),
        ]);
        assert_eq!(edges(&g), ["crate::a -> crate::b", "crate::b -> crate::a"]);
        let found = cycles(&g);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].1, [vec!["crate::a", "crate::b", "crate::a"]]);
        let text = report("demo", &g, &found);
        assert!(
            text.contains("crate::a -> crate::b: crate::a:1 `crate::b::Thing`"),
            "{text}"
        );
        assert!(
            text.contains("crate::b -> crate::a: crate::b:2 `super::a::g`"),
            "{text}"
        );
    }

    #[test]
    fn parent_and_child_can_form_a_cycle() {
        let g = graph(&[
            ("crate", "pub mod m;"),
            (
                "crate::m",
                "pub mod child;\npub use child::Item;\nstruct Shared;",
            ),
            ("crate::m::child", "use super::Shared;\npub struct Item;"),
        ]);
        assert_eq!(
            edges(&g),
            ["crate::m -> crate::m::child", "crate::m::child -> crate::m"]
        );
        assert_eq!(cycles(&g).len(), 1);
    }

    #[test]
    fn use_aliases_reach_deeper_modules() {
        let g = graph(&[
            ("crate", "pub mod a; pub mod b;"),
            ("crate::a", "pub mod inner;"),
            ("crate::a::inner", ""),
            ("crate::b", "use crate::a;\nfn f() { a::inner::g(); }"),
        ]);
        assert_eq!(
            edges(&g),
            ["crate::b -> crate::a", "crate::b -> crate::a::inner"]
        );
    }

    #[test]
    fn acyclic_graph_passes() {
        let g = graph(&[
            ("crate", "pub mod a; pub mod b; pub mod c;"),
            ("crate::a", "use crate::b::X; use crate::c::Y;"),
            (
                "crate::b",
                "use crate::c::{self, Y};\nfn f() { c::g(); other_crate::a::h(); }",
            ),
            (
                "crate::c",
                "use surge_runtime::exec; fn g() { crate::c::h(); self::h(); }\n\
                          #[cfg(test)]\nmod tests { use crate::a::*; }",
            ),
        ]);
        assert_eq!(g.edges.len(), 3);
        assert!(cycles(&g).is_empty());
    }
}
