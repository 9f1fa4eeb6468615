//! The server's modules import only downward: transport → session → hub →
//! engine, and no two top-level modules import each other, directly or
//! round a circle. Read from the `crate::NAME` paths of the code (tests
//! aside), so a new import that breaks either rule fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module → the top-level modules it imports, each with one file
/// that does.
type Graph = BTreeMap<String, BTreeMap<String, String>>;

/// The layers that carry a session, from the top; each may import those
/// below it, never those above.
const LAYERS: [&str; 4] = ["transport", "session", "hub", "engine"];

fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            source_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without its tests and comments.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The names `crate::NAME` in `code`.
fn imported(code: &str) -> BTreeSet<String> {
    code.match_indices("crate::")
        .filter(|(at, _)| {
            // `tether_server::` or `$crate::` are other things.
            !code[..*at].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '$')
        })
        .map(|(at, found)| {
            code[at + found.len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    source_files(&src, &mut files);
    let top = |path: &Path| -> Option<String> {
        let first = path.strip_prefix(&src).ok()?.components().next()?;
        let name = first
            .as_os_str()
            .to_str()?
            .trim_end_matches(".rs")
            .to_owned();
        (name != "lib").then_some(name)
    };
    let modules: BTreeSet<String> = files.iter().filter_map(|path| top(path)).collect();
    let mut graph = Graph::new();
    for path in &files {
        let Some(from) = top(path) else { continue };
        for to in imported(&code(path)) {
            if to != from && modules.contains(&to) {
                let shown = path.strip_prefix(&src).unwrap().display().to_string();
                graph
                    .entry(from.clone())
                    .or_default()
                    .entry(to)
                    .or_insert(shown);
            }
        }
    }
    graph
}

/// Whether `to` can be reached from `from`.
fn reaches(graph: &Graph, from: &str, to: &str, seen: &mut BTreeSet<String>) -> bool {
    let Some(next) = graph.get(from) else {
        return false;
    };
    next.keys()
        .any(|step| step == to || (seen.insert(step.clone()) && reaches(graph, step, to, seen)))
}

#[test]
fn no_two_modules_import_each_other_round_a_circle() {
    let graph = graph();
    let mut circles = Vec::new();
    for (from, imports) in &graph {
        for (to, file) in imports {
            if reaches(&graph, to, from, &mut BTreeSet::new()) {
                circles.push(format!("{from} -> {to} ({file}) and back"));
            }
        }
    }
    assert!(circles.is_empty(), "import circles: {circles:#?}");
}

#[test]
fn the_session_layers_import_only_downward() {
    let graph = graph();
    let mut upward = Vec::new();
    for (below, lower) in LAYERS.iter().enumerate() {
        for upper in &LAYERS[..below] {
            if let Some(file) = graph.get(*lower).and_then(|imports| imports.get(*upper)) {
                upward.push(format!("{lower} imports {upper} ({file})"));
            }
        }
    }
    assert!(upward.is_empty(), "imports against the layers: {upward:#?}");
    // The test reads what it should: the layers import what is below them.
    assert!(graph["transport"].contains_key("session"));
    assert!(graph["session"].contains_key("hub"));
    assert!(graph["hub"].contains_key("engine"));
}

#[test]
fn finds_imports_as_the_compiler_reads_them() {
    let code = "use crate::hub::Hub;\nlet x = crate::engine::Event::A;\nuse tether_server::state;\n$crate::x";
    let found: Vec<String> = imported(code).into_iter().collect();
    assert_eq!(found, ["engine", "hub"]);
}

/// The session layer runs every transport's sessions the same way: the
/// names of transports (and their settings sections) appear only above it.
#[test]
fn the_session_layer_names_no_transport() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/session");
    let mut files = Vec::new();
    source_files(&dir, &mut files);
    let transports = [
        "websocket",
        "WebSocket",
        "WsReader",
        "WsWriter",
        "sse",
        "Sse",
        "longpoll",
        "LongPoll",
        "long_poll",
    ];
    let mut named = Vec::new();
    for path in &files {
        let code = code(path);
        let words = code.split(|c: char| !(c.is_alphanumeric() || c == '_'));
        for word in words.filter(|word| transports.contains(word)) {
            named.push(format!("{}: {word}", path.display()));
        }
        // A transport's own section of the settings.
        if code.contains(".http.") || code.contains(".websocket.") {
            named.push(format!("{}: reads a transport's settings", path.display()));
        }
    }
    assert!(files.len() > 5, "read the session layer");
    assert!(named.is_empty(), "transports named in session/: {named:#?}");
}
