//! The core's layers, checked from its own source: a module imports only from its own
//! layer and those below it, and no two modules import each other, directly or round
//! a circle. The table is the one in the crate docs (`src/lib.rs`) and in DESIGN.md.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module of `src/` (a file or a folder), bottom layer first.
const LAYERS: [(&str, &[&str]); 7] = [
    ("foundation", &["codec", "error", "future", "host", "id", "state", "task", "time", "trace"]),
    ("wire", &["envelope", "events", "link", "message", "scheduled"]),
    ("contracts", &["backend", "broker", "capability"]),
    ("drivers", &["driver", "memory"]),
    ("runtime", &["app", "context", "registry", "tries"]),
    ("features", &["beat", "client", "worker", "workflow"]),
    ("edges", &["cli", "private", "lib"]),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, modules)| modules.contains(&module))
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to.
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).expect("under src/");
    let first = relative.components().next().expect("a path").as_os_str().to_string_lossy().into_owned();
    first.trim_end_matches(".rs").to_owned()
}

/// The top-level modules named by `crate::` paths in `code` (comments left out).
fn imports(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in code.lines() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            let before = rest[..at].chars().next_back();
            rest = &rest[at + "crate::".len()..];
            // `$crate::` (a macro's own path) and `task_core::` are not module imports.
            if before.is_some_and(|c| c == '$' || c.is_alphanumeric() || c == '_') {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                // `crate::{a::X, b}`: the first name of each part (one line deep).
                let inner = group.split('}').next().unwrap_or("");
                found.extend(inner.split(',').filter_map(|part| first_ident(part.trim())));
            } else if let Some(name) = first_ident(rest) {
                found.insert(name);
            }
        }
    }
    found
}

fn first_ident(text: &str) -> Option<String> {
    let name: String = text.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
    (!name.is_empty() && name != "self").then_some(name)
}

/// module -> the modules it imports, for every file of task-core's `src/`.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let module = module_of(&src, &file);
        let code = std::fs::read_to_string(&file).expect("a readable source file");
        let targets = graph.entry(module.clone()).or_default();
        targets.extend(imports(&code).into_iter().filter(|t| *t != module));
    }
    graph
}

#[test]
fn every_module_has_a_layer() {
    let unplaced: Vec<String> = graph().into_keys().filter(|m| layer_of(m).is_none()).collect();
    assert!(unplaced.is_empty(), "modules missing from LAYERS (add each to its layer): {unplaced:?}");
}

#[test]
fn no_module_imports_from_a_layer_above_its_own() {
    let mut upward = Vec::new();
    for (module, targets) in graph() {
        let Some(own) = layer_of(&module) else { continue };
        for target in targets {
            if let Some(theirs) = layer_of(&target)
                && theirs > own
            {
                upward.push(format!("{module} ({}) imports {target} ({})", LAYERS[own].0, LAYERS[theirs].0));
            }
        }
    }
    assert!(upward.is_empty(), "imports that run up a layer:\n{}", upward.join("\n"));
}

#[test]
fn no_circle_of_modules() {
    let graph = graph();
    // Depth-first search; a module met again while on the path closes a circle.
    fn visit<'a>(
        module: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
        circles: &mut Vec<String>,
    ) {
        if let Some(at) = path.iter().position(|m| *m == module) {
            circles.push([&path[at..], &[module]].concat().join(" -> "));
            return;
        }
        if !done.insert(module) {
            return;
        }
        path.push(module);
        for next in graph.get(module).into_iter().flatten() {
            visit(next, graph, path, done, circles);
        }
        path.pop();
    }
    let mut circles = Vec::new();
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        visit(module, &graph, &mut Vec::new(), &mut done, &mut circles);
    }
    assert!(circles.is_empty(), "modules that import each other:\n{}", circles.join("\n"));
}

#[test]
fn the_check_sees_imports_in_each_form() {
    let code = "use crate::a::X;\nuse crate::{b::Y, c};\nlet z = crate::d::f();\n// crate::e\n$crate::g\ntask_core::h";
    let found: Vec<String> = imports(code).into_iter().collect();
    assert_eq!(found, ["a", "b", "c", "d"]);
}
