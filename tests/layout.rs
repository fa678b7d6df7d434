// Both crates read one way. In `core/src/` the folders are layers (see its
// lib.rs): each file imports only its own folder and the layers below, and
// no file or folder imports another that (through any chain) imports it
// back. In `src/`, no file or folder imports another that imports it back
// (the side-car's crate, `sidecar/src/`, has no file cycle either). In all,
// nothing imports `lib.rs`, which only declares modules. Unit tests (a
// file's `#[cfg(test)] mod tests`) may use any layer: they are not counted.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

/// `core/src/`'s layers, lowest first; folders on one rank may not import
/// each other.
const CORE_LAYERS: &[&[&str]] = &[
    &["primitives"],
    &["model"],
    &["codec"],
    &["engine"],
    &["stores"],
    &["access", "config"],
    &["proofs"],
];

/// Module path (`""` for the crate root, `"a::b"`) -> source without its
/// unit tests, for every file under `dir` (a crate's `src/`).
fn modules(dir: &str) -> BTreeMap<String, String> {
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
                out.insert(path.join("::"), without_tests(&fs::read_to_string(&p).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join(dir), &[], &mut out);
    out
}

/// `src` up to its unit tests: a `#[cfg(test)]` line before a `mod` line.
fn without_tests(src: &str) -> String {
    let lines: Vec<&str> = src.lines().collect();
    let end = (0..lines.len())
        .find(|&i| {
            lines[i].trim() == "#[cfg(test)]"
                && lines.get(i + 1).is_some_and(|l| {
                    let l = l.trim_start();
                    l.starts_with("mod ") || l.starts_with("pub(crate) mod ")
                })
        })
        .unwrap_or(lines.len());
    lines[..end].join("\n")
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

fn graph(dir: &str) -> BTreeMap<String, Vec<String>> {
    let modules = modules(dir);
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

/// A cycle in `g`, as the modules along it, if there is one.
fn cycle(g: &BTreeMap<String, Vec<String>>) -> Option<Vec<String>> {
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
    g.keys().find_map(|n| {
        if state.contains_key(n.as_str()) {
            return None;
        }
        visit(n, g, &mut state, &mut Vec::new())
    })
}

/// `g` with each module replaced by its folder `depth` levels down (files
/// nearer the root stay themselves); edges inside one folder dropped.
fn folders(g: &BTreeMap<String, Vec<String>>, depth: usize) -> BTreeMap<String, Vec<String>> {
    let cut = |m: &str| -> String {
        let segs: Vec<&str> = m.split("::").collect();
        segs[..segs.len().min(depth)].join("::")
    };
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (m, to) in g {
        let from = cut(m);
        let edges = out.entry(from.clone()).or_default();
        edges.extend(to.iter().map(|t| cut(t)).filter(|t| *t != from));
        edges.sort();
        edges.dedup();
    }
    out
}

/// No cycle among the files of `dir`, nor among its folders down to
/// `depth` levels.
fn no_cycles(dir: &str, depth: usize) {
    let g = graph(dir);
    if let Some(c) = cycle(&g) {
        panic!("import cycle in {dir}/: {}", c.join(" -> "));
    }
    for depth in 1..=depth {
        if let Some(c) = cycle(&folders(&g, depth)) {
            panic!("import cycle between folders of {dir}/: {}", c.join(" -> "));
        }
    }
}

fn nothing_imports_the_root(dir: &str) {
    let importers: Vec<_> = graph(dir)
        .into_iter()
        .filter(|(m, to)| !m.is_empty() && to.iter().any(String::is_empty))
        .map(|(m, _)| m)
        .collect();
    assert!(importers.is_empty(), "these import {dir}/lib.rs: {importers:?}");
}

#[test]
fn nothing_imports_the_crate_root() {
    nothing_imports_the_root("src");
    nothing_imports_the_root("core/src");
}

#[test]
fn no_import_cycle_among_src_files_or_folders() {
    no_cycles("src", 2);
}

#[test]
fn no_import_cycle_in_core() {
    no_cycles("core/src", 3);
}

#[test]
fn no_import_cycle_in_the_sidecar() {
    no_cycles("sidecar/src", 0);
}

#[test]
fn core_layers_import_only_layers_below() {
    let rank = |m: &str| {
        let top = m.split("::").next().unwrap_or_default();
        CORE_LAYERS.iter().position(|layer| layer.contains(&top))
    };
    let g = graph("core/src");
    let mut wrong = Vec::new();
    for (m, to) in &g {
        if m.is_empty() {
            continue;
        }
        let Some(r) = rank(m) else {
            panic!("core/src/{m} is in no layer of CORE_LAYERS");
        };
        let top = m.split("::").next().unwrap();
        for t in to {
            let same = t.split("::").next() == Some(top);
            if !same && rank(t).is_none_or(|rt| rt >= r) {
                wrong.push(format!("{m} -> {t}"));
            }
        }
    }
    assert!(wrong.is_empty(), "imports against the layers: {wrong:#?}");
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
    let g = graph("src");
    assert!(g.values().flatten().any(|m| m.contains("conf")), "{g:?}");
    let core = graph("core/src");
    assert!(
        core["stores::redis::sealed"].contains(&"model::keys".to_string()),
        "{core:?}"
    );
    assert!(
        !core.contains_key("proofs::fuzz") || !core["engine"].is_empty(),
        "{core:?}"
    );
    // Unit tests are cut off; what comes before them is kept.
    assert_eq!(
        without_tests("use a;\n#[cfg(test)]\nmod tests {\nuse b;\n}"),
        "use a;"
    );
}

/// Request time asks the store what it does; only `access::store_of`
/// chooses which store that is (`match` on `StoreKind`), and no phase
/// branches on the location's `sessions_store` itself.
#[test]
fn the_store_is_chosen_in_one_place() {
    let mut choosers = Vec::new();
    for (m, src) in modules("src") {
        if !m.starts_with("phases") {
            continue;
        }
        for (i, line) in src.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            let arm = ["Shm", "Redis", "Cookie"]
                .iter()
                .any(|k| code.contains(&format!("StoreKind::{k} =>")));
            let asks = [".redis()", ".cookie()", ".store() =="]
                .iter()
                .any(|c| code.contains(c));
            if arm || asks {
                choosers.push(format!("{m}:{}: {}", i + 1, line.trim()));
            }
        }
    }
    assert!(
        choosers.iter().all(|c| c.starts_with("phases::access:")) && choosers.len() == 3,
        "the store is chosen at: {choosers:#?}"
    );
}

/// `unsafe` lives in the layer facing nginx (lib.rs's hooks, `nginx/`,
/// `zone/`, `lifecycle/`, `config::module`, `threads`) and nowhere else:
/// the phases, the clock and the configuration values have none, and
/// lib.rs denies it in the phases.
#[test]
fn unsafe_stays_in_the_layer_facing_nginx() {
    let lib = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    assert!(
        lib.contains("#[deny(unsafe_code)]\nmod phases;"),
        "lib.rs denies unsafe code in phases"
    );
    let facing_nginx = |m: &str| {
        ["", "threads", "config::module"].contains(&m)
            || ["nginx", "zone", "lifecycle"]
                .iter()
                .any(|f| m == *f || m.starts_with(&format!("{f}::")))
    };
    let modules = modules("src");
    assert!(
        modules.iter().any(|(m, _)| m == "phases::access"),
        "modules are named by path"
    );
    let outside: Vec<&String> = modules
        .iter()
        .filter(|(m, src)| {
            !facing_nginx(m)
                && src
                    .lines()
                    .any(|l| l.split("//").next().unwrap_or_default().contains("unsafe"))
        })
        .map(|(m, _)| m)
        .collect();
    assert!(
        outside.is_empty(),
        "unsafe outside the layer facing nginx: {outside:?}"
    );
}
