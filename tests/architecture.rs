//! The module structure ARCHITECTURE.md describes, checked on the sources:
//! the core (`control`) imports nothing from the layers above it, and no two
//! modules import each other, directly or through others, at either level
//! (the crate's top-level modules, and the files inside each module folder).
//!
//! An import is any path `crate::m` or `super::m` outside comments and doc
//! comments (doc links do not make a dependency).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// The top-level modules of the crate (files and folders under `src/`).
fn top_level() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for entry in fs::read_dir(src()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if name != "lib" && name != "loom_models" {
            names.insert(name);
        }
    }
    names
}

fn src() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src"))
}

/// The code of a file without its comments.
fn code(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        let line = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The module names following `prefix` (`crate::` or `super::`) in `code`.
fn paths_after(code: &str, prefix: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        // Not the tail of a longer path (`foo::crate::`) or identifier.
        let before = rest[..i].chars().next_back();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            found.insert(name);
        }
    }
    found
}

/// Files of a module: `src/m.rs`, or every file under `src/m/`.
fn files(module: &str) -> Vec<std::path::PathBuf> {
    let file = src().join(format!("{module}.rs"));
    if file.exists() {
        return vec![file];
    }
    let mut all = Vec::new();
    let mut dirs = vec![src().join(module)];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                all.push(path);
            }
        }
    }
    all
}

/// A cycle in `graph`, if any (as the list of nodes on it).
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|n| n == node) {
            let mut c = path[i..].to_vec();
            c.push(node.to_owned());
            return Some(c);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(c) = visit(node, graph, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

fn crate_graph() -> BTreeMap<String, BTreeSet<String>> {
    let modules = top_level();
    modules
        .iter()
        .map(|m| {
            let deps: BTreeSet<String> = files(m)
                .iter()
                .flat_map(|f| paths_after(&code(f), "crate::"))
                .filter(|d| d != m && modules.contains(d))
                .collect();
            (m.clone(), deps)
        })
        .collect()
}

#[test]
fn the_core_imports_nothing_from_the_layers_above_it() {
    let graph = crate_graph();
    let core = &graph["control"];
    for above in [
        "router",
        "mirror",
        "shadow",
        "plan",
        "telemetry",
        "admin",
        "fleet",
    ] {
        assert!(!core.contains(above), "control imports {above}: {core:?}");
    }
    // The same holds through the modules it does import.
    let mut reach: BTreeSet<String> = core.clone();
    let mut todo: Vec<String> = core.iter().cloned().collect();
    while let Some(m) = todo.pop() {
        for d in graph.get(&m).into_iter().flatten() {
            if reach.insert(d.clone()) {
                todo.push(d.clone());
            }
        }
    }
    assert!(
        reach
            .iter()
            .all(|m| ["color", "error", "head", "stats"].contains(&m.as_str())),
        "control reaches {reach:?}"
    );
}

#[test]
fn no_import_cycles_between_top_level_modules() {
    let graph = crate_graph();
    assert_eq!(cycle(&graph), None, "{graph:#?}");
}

#[test]
fn no_import_cycles_between_the_files_of_a_module() {
    // Every module folder, nested ones (`shadow/json/`) included.
    let mut dirs: Vec<std::path::PathBuf> = top_level()
        .iter()
        .map(|m| src().join(m))
        .filter(|d| d.is_dir())
        .collect();
    while let Some(dir) = dirs.pop() {
        let module = dir.strip_prefix(src()).unwrap().display().to_string();
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            }
        }
        let names: BTreeSet<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "rs"))
            .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
            .filter(|n| n != "mod")
            .collect();
        let graph: BTreeMap<String, BTreeSet<String>> = names
            .iter()
            .map(|n| {
                let deps = paths_after(&code(&dir.join(format!("{n}.rs"))), "super::")
                    .into_iter()
                    .filter(|d| d != n && names.contains(d))
                    .collect();
                (n.clone(), deps)
            })
            .collect();
        assert_eq!(cycle(&graph), None, "in {module}: {graph:#?}");
    }
}

#[test]
fn the_checker_finds_a_cycle() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(
        cycle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    assert_eq!(
        paths_after(
            "use crate::control::Word; x::crate::no; crate::router",
            "crate::"
        ),
        ["control", "router"].map(String::from).into()
    );
}
