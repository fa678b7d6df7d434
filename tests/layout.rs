// The nginx-facing code reads one way: no file under `src/` imports another
// that (through any chain) imports it back, and nothing imports `lib.rs`,
// which only declares the module and wires its hooks.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

/// Module path (`""` for the crate root, `"a::b"`) -> source, for every file under `src/`.
fn modules() -> BTreeMap<String, String> {
    fn walk(dir: &Path, prefix: &[String], out: &mut BTreeMap<String, String>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                let mut next = prefix.to_vec();
                next.push(stem);
                walk(&p, &next, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let mut path = prefix.to_vec();
                if stem != "mod" && stem != "lib" {
                    path.push(stem);
                }
                out.insert(path.join("::"), fs::read_to_string(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &[], &mut out);
    out
}

/// The paths `src` names through `crate::` or `super::`, as absolute segments.
fn references(module: &str, src: &str) -> Vec<Vec<String>> {
    let code: String = src
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    for (anchor, base) in [("crate::", Vec::new()), ("super::", parent(module))] {
        let mut rest = code.as_str();
        while let Some(i) = rest.find(anchor) {
            let before = rest[..i].chars().last();
            rest = &rest[i + anchor.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            for path in expand(rest) {
                let mut full = base.clone();
                full.extend(path);
                out.push(full);
            }
        }
    }
    out
}

fn parent(module: &str) -> Vec<String> {
    let mut segs: Vec<String> = module
        .split("::")
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    segs.pop();
    segs
}

/// The paths at the start of `text`: `a::b::C` or a `{a, b::{c, d}}` group.
fn expand(text: &str) -> Vec<Vec<String>> {
    let ident: String = text
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    if ident.is_empty() {
        let Some(group) = text.strip_prefix('{') else {
            return Vec::new();
        };
        let mut depth = 0;
        let mut items = Vec::new();
        let mut start = 0;
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    items.push(&group[start..i]);
                    break;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    items.push(&group[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        return items.into_iter().flat_map(|it| expand(it.trim_start())).collect();
    }
    let rest = &text[ident.len()..];
    match rest.strip_prefix("::") {
        Some(more) => {
            let tails = expand(more);
            if tails.is_empty() {
                return vec![vec![ident]];
            }
            tails
                .into_iter()
                .map(|t| std::iter::once(ident.clone()).chain(t).collect())
                .collect()
        }
        None => vec![vec![ident]],
    }
}

/// The module a path lives in: its longest prefix that is a file's module.
fn owner(path: &[String], modules: &BTreeMap<String, String>) -> String {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].join("::"))
        .find(|m| modules.contains_key(m))
        .unwrap_or_default()
}

fn graph() -> BTreeMap<String, Vec<String>> {
    let modules = modules();
    modules
        .iter()
        .map(|(m, src)| {
            let mut to: Vec<String> = references(m, src)
                .iter()
                .map(|p| owner(p, &modules))
                .filter(|o| o != m)
                .collect();
            to.sort();
            to.dedup();
            (m.clone(), to)
        })
        .collect()
}

#[test]
fn nothing_imports_the_crate_root() {
    let importers: Vec<_> = graph()
        .into_iter()
        .filter(|(m, to)| !m.is_empty() && to.iter().any(String::is_empty))
        .map(|(m, _)| m)
        .collect();
    assert!(importers.is_empty(), "these import lib.rs: {importers:?}");
}

#[test]
fn no_import_cycle_among_src_files() {
    let g = graph();
    // Depth-first search; a grey node met again closes a cycle.
    fn visit<'a>(
        n: &'a str,
        g: &'a BTreeMap<String, Vec<String>>,
        state: &mut BTreeMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        state.insert(n, 1);
        stack.push(n);
        for m in g.get(n).into_iter().flatten() {
            match state.get(m.as_str()) {
                Some(1) => {
                    let i = stack.iter().position(|s| s == m).unwrap();
                    let mut cycle: Vec<String> = stack[i..].iter().map(|s| s.to_string()).collect();
                    cycle.push(m.clone());
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(m, g, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(n, 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in g.keys() {
        if !state.contains_key(n.as_str()) {
            if let Some(c) = visit(n, &g, &mut state, &mut Vec::new()) {
                panic!("import cycle: {}", c.join(" -> "));
            }
        }
    }
}

#[test]
fn the_checker_sees_imports() {
    assert_eq!(
        expand("{conf::{LocConf, MainConf}, request::Ctx};"),
        [
            vec!["conf", "LocConf"],
            vec!["conf", "MainConf"],
            vec!["request", "Ctx"]
        ]
    );
    let g = graph();
    assert!(g.values().flatten().any(|m| m.contains("conf")), "{g:?}");
}
