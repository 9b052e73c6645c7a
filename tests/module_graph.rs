//! The top-level modules of `src/` form no cycle.
//!
//! Reads every `src/**/*.rs`, drops comments, string and char literals and `#[cfg(test)]` items,
//! and records an edge `a -> b` for each `crate::b` path (a `crate::{b, c}` group counts each
//! name) and each `super::` chain that climbs out of top-level module `a` into `b`. The edges
//! must form no cycle, so the modules can be read (and layered) bottom up:
//!
//! protocol, inspect, rules, metrics → config, state, telemetry → audit, circuit → http →
//! incident, forensics → alerts → fleet → gateway → proxy, mcp → server → control → replay → cli
//!
//! `KNOWN_EDGES_TO_CUT` lists edges that still close a cycle on this branch and that another
//! change is removing (who, and why the edge is wrong); the lead empties it after the merge. An
//! edge that is on the list but gone fails the test too, so the list never outlives its edges.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// `(from, to, owner, reason)`: edges that close a cycle today and are being cut elsewhere.
const KNOWN_EDGES_TO_CUT: &[(&str, &str, &str, &str)] = &[];

/// Edges `from -> to`, each with the files it comes from.
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

#[test]
fn top_level_modules_form_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    let mut problems = Vec::new();
    for (from, to, owner, _) in KNOWN_EDGES_TO_CUT {
        if !graph.get(*from).is_some_and(|t| t.contains_key(*to)) {
            problems
                .push(format!("{from} -> {to} (KNOWN_EDGES_TO_CUT, owner {owner}) is gone: delete it from the list"));
        }
    }
    let mut allowed = graph.clone();
    for (from, to, _, _) in KNOWN_EDGES_TO_CUT {
        if let Some(t) = allowed.get_mut(*from) {
            t.remove(*to);
        }
    }
    for cycle in cycles(&allowed) {
        problems.push(describe(&allowed, &cycle));
    }
    assert!(problems.is_empty(), "module graph:\n{}", problems.join("\n"));
}

/// The inspection engine (wire formats, rule ids, inspection) uses nothing else of the gateway: no
/// policy, runtime, I/O or state. This is the boundary a `firebreak-inspect` library crate would
/// enforce (docs/ARCHITECTURE.md, "The inspection engine as a library"), checked here instead.
const ENGINE: [&str; 3] = ["protocol", "rules", "inspect"];

#[test]
fn the_inspection_engine_uses_nothing_else_of_the_gateway() {
    let graph = module_graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let mut problems = Vec::new();
    for from in ENGINE {
        for (to, files) in graph.get(from).into_iter().flatten() {
            if !ENGINE.contains(&to.as_str()) {
                problems.push(format!("{from} -> {to} ({})", files.iter().cloned().collect::<Vec<_>>().join(", ")));
            }
        }
    }
    assert!(problems.is_empty(), "the inspection engine reaches outside itself:\n{}", problems.join("\n"));
}

#[test]
fn a_new_edge_that_closes_a_cycle_is_found() {
    let mut g = Graph::new();
    let mut edge = |a: &str, b: &str| {
        g.entry(a.into()).or_default().entry(b.into()).or_default().insert(format!("{a}/x.rs"));
    };
    edge("server", "proxy");
    edge("proxy", "gateway");
    edge("gateway", "http");
    assert!(cycles(&g).is_empty());
    g.entry("http".into()).or_default().entry("server".into()).or_default().insert("http/body.rs".into());
    let found = cycles(&g);
    assert_eq!(found.len(), 1);
    let text = describe(&g, &found[0]);
    assert!(text.contains("http -> server") && text.contains("http/body.rs"), "{text}");
}

#[test]
fn the_scanner_ignores_comments_strings_and_test_modules() {
    let code = r##"
        //! see [`crate::server`]
        use crate::{config, http::body};
        use super::super::audit::Record;
        /* crate::alerts */
        const S: &str = "crate::proxy";
        const R: &str = r#"crate::mcp"#;
        const C: char = '"';
        const Q: [char; 3] = ['\'', '\n', '\u{22}'];
        const T: &str = "crate::cli";
        fn f<'a>(x: &'a str) -> &'a str { crate::state::now(); x }
        #[cfg(test)]
        mod tests {
            use crate::control;
        }
    "##;
    let found = references(code, 2);
    let want: BTreeSet<String> = ["config", "http", "audit", "state"].iter().map(|s| s.to_string()).collect();
    assert_eq!(found, want);
}

/// The graph of top-level modules under `src`.
fn module_graph(src: &Path) -> Graph {
    let tops: BTreeSet<String> = std::fs::read_dir(src)
        .expect("read src")
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().into_string().ok()?;
            if e.path().is_dir() {
                Some(name)
            } else {
                name.strip_suffix(".rs").filter(|n| *n != "lib" && *n != "main").map(str::to_owned)
            }
        })
        .collect();
    let mut graph = Graph::new();
    for file in rust_files(src) {
        let rel = file.strip_prefix(src).expect("under src");
        let parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        let top = parts[0].trim_end_matches(".rs").to_owned();
        if !tops.contains(&top) {
            continue;
        }
        // How many `super::` reach the crate root: src/a.rs and src/a/mod.rs are one level down,
        // src/a/b.rs two, src/a/b/mod.rs two, …
        let last = parts.last().map(String::as_str).unwrap_or("");
        let depth = if last == "mod.rs" { parts.len() - 1 } else { parts.len() };
        let code = std::fs::read_to_string(&file).expect("read source");
        for to in references(&code, depth) {
            if to != top && tops.contains(&to) {
                graph
                    .entry(top.clone())
                    .or_default()
                    .entry(to)
                    .or_default()
                    .insert(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    graph
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The top-level modules `code` (a file `depth` modules below the crate root) refers to.
fn references(code: &str, depth: usize) -> BTreeSet<String> {
    let code = without_test_items(&code_only(code));
    let mut out = BTreeSet::new();
    let b = code.as_bytes();
    let is_ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let ident_at = |i: usize| -> (String, usize) {
        let mut j = i;
        while j < b.len() && is_ident(b[j]) {
            j += 1;
        }
        (code[i..j].to_owned(), j)
    };
    let skip_ws = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    let mut i = 0;
    while i < b.len() {
        if !is_ident(b[i]) || (i > 0 && (is_ident(b[i - 1]) || b[i - 1] == b':')) {
            i += 1;
            continue;
        }
        let (word, end) = ident_at(i);
        let mut j = end;
        let climbs = if word == "crate" {
            Some(0)
        } else if word == "super" {
            // Count the chain `super::super::…` and see whether it leaves the crate's top level.
            let mut n = 1;
            let mut k = end;
            while code[k..].starts_with("::super")
                && !code[k + 7..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
            {
                n += 1;
                k += 7;
            }
            j = k;
            (n >= depth).then_some(n)
        } else {
            None
        };
        if climbs.is_some() && code[j..].starts_with("::") {
            let k = skip_ws(j + 2);
            if b.get(k) == Some(&b'{') {
                // `crate::{a, b::c, d as e}`: the first name of each item at the group's top level.
                let mut level = 0;
                let mut m = k + 1;
                let mut expect_name = true;
                while m < b.len() {
                    match b[m] {
                        b'{' => level += 1,
                        b'}' if level == 0 => break,
                        b'}' => level -= 1,
                        b',' if level == 0 => expect_name = true,
                        c if is_ident(c) && expect_name && level == 0 => {
                            let (name, e) = ident_at(m);
                            out.insert(name);
                            expect_name = false;
                            m = e;
                            continue;
                        }
                        _ => {}
                    }
                    m += 1;
                }
            } else if b.get(k).copied().is_some_and(is_ident) {
                out.insert(ident_at(k).0);
            }
        }
        i = end;
    }
    out
}

/// `code` with comments, string literals and char literals blanked (newlines kept).
fn code_only(code: &str) -> String {
    let b = code.as_bytes();
    let mut out = String::with_capacity(code.len());
    let mut i = 0;
    while i < b.len() {
        let rest = &code[i..];
        if rest.starts_with("//") {
            let end = rest.find('\n').map_or(b.len(), |n| i + n);
            i = end;
        } else if rest.starts_with("/*") {
            // Block comments nest in Rust.
            let mut level = 0;
            let mut j = i;
            while j < b.len() {
                if code[j..].starts_with("/*") {
                    level += 1;
                    j += 2;
                } else if code[j..].starts_with("*/") {
                    level -= 1;
                    j += 2;
                    if level == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            out.extend(code[i..j.min(b.len())].chars().filter(|c| *c == '\n'));
            i = j;
        } else if let Some(hashes) = raw_string_start(rest, i > 0 && is_ident_byte(b[i - 1])) {
            // r"…", r#"…"#, br"…": ends at the quote followed by as many #.
            let open = rest.find('"').unwrap_or(0) + 1;
            let close = format!("\"{}", "#".repeat(hashes));
            let end = rest[open..].find(&close).map_or(b.len(), |n| i + open + n + close.len());
            out.push_str("\"\"");
            out.extend(code[i..end].chars().filter(|c| *c == '\n'));
            i = end;
        } else if b[i] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            out.push_str("\"\"");
            out.extend(code[i..j.min(b.len())].chars().filter(|c| *c == '\n'));
            i = (j + 1).min(b.len());
        } else if b[i] == b'\'' {
            // A char literal ('x', '\n', '\'', '\u{1F600}', '"'), or a lifetime ('a), left as is.
            let c = &code[i + 1..];
            let len = if let Some(escaped) = c.strip_prefix('\\') {
                // The escaped character, then anything up to the closing quote ('\u{…}').
                escaped.get(1..).and_then(|e| e.find('\'')).map(|n| n + 2)
            } else {
                c.chars().next().map(char::len_utf8).filter(|&n| c[n..].starts_with('\''))
            };
            match len {
                Some(n) => {
                    out.push_str("' '");
                    i += n + 2;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            let ch = rest.chars().next().unwrap_or(' ');
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

fn is_ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The number of `#` of a raw string starting at the beginning of `s`, if one does.
fn raw_string_start(s: &str, after_ident: bool) -> Option<usize> {
    if after_ident {
        return None;
    }
    let s = s.strip_prefix('b').unwrap_or(s).strip_prefix('r')?;
    let hashes = s.len() - s.trim_start_matches('#').len();
    s[hashes..].starts_with('"').then_some(hashes)
}

/// `code` without the items marked `#[cfg(test)]` (a `mod tests { … }`, a `use`, a function).
fn without_test_items(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        // The item ends at its first `;` outside braces, or at the brace closing its first `{`.
        let mut level = 0usize;
        let mut end = after.len();
        for (k, c) in after.char_indices() {
            match c {
                '{' => level += 1,
                '}' => {
                    level = level.saturating_sub(1);
                    if level == 0 {
                        end = k + 1;
                        break;
                    }
                }
                ';' if level == 0 => {
                    end = k + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// The strongly connected components of more than one module (Tarjan), each sorted.
fn cycles(g: &Graph) -> Vec<Vec<String>> {
    struct Tarjan<'g> {
        g: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        found: Vec<Vec<String>>,
    }
    impl<'g> Tarjan<'g> {
        fn visit(&mut self, v: &'g str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.g.get(v).into_iter().flat_map(|t| t.keys()) {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if self.on_stack.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut scc = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    scc.push(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if scc.len() > 1 {
                    scc.sort();
                    self.found.push(scc);
                }
            }
        }
    }
    let mut t = Tarjan {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.found
}

/// A cycle named with its edges and the files behind each.
fn describe(g: &Graph, scc: &[String]) -> String {
    let mut s = format!("cycle between {}:", scc.join(", "));
    for a in scc {
        for (b, files) in g.get(a).into_iter().flatten() {
            if scc.contains(b) {
                let files: Vec<&str> = files.iter().map(String::as_str).collect();
                s.push_str(&format!("\n  {a} -> {b}  ({})", files.join(", ")));
            }
        }
    }
    s
}
