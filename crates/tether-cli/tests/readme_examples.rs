//! The README's shell examples, run as written against a real `tether serve`
//! (only the port changed), so the first thing a new user tries works.

mod common;

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

/// The README's shell lines that start with `prefix`, from its ```sh blocks.
fn readme_lines(prefix: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md");
    let mut in_sh = false;
    let mut lines = Vec::new();
    for line in readme.lines() {
        match line.trim() {
            "```sh" => in_sh = true,
            "```" => in_sh = false,
            text if in_sh && text.starts_with(prefix) => lines.push(text.to_owned()),
            _ => {}
        }
    }
    assert!(!lines.is_empty(), "README has no `{prefix}` example");
    lines
}

/// Runs a shell line with `tether` meaning this build's binary; returns stdout.
async fn shell(line: &str) -> String {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_tether"));
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = tokio::process::Command::new("sh")
        .args(["-c", line])
        .env("PATH", path)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(20), output)
        .await
        .expect("the example finishes")
        .unwrap();
    assert!(
        output.status.success(),
        "{line}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn the_readme_publish_examples_work_as_written() {
    let (_serve, port) = common::spawn(&["serve"], Stdio::null()).await;
    let here = format!("127.0.0.1:{port}");
    let curl = readme_lines("curl -X POST http://127.0.0.1:8080/api/publish");
    for line in &curl {
        let answer: Value =
            serde_json::from_str(&shell(&line.replace("127.0.0.1:8080", &here)).await)
                .unwrap_or_else(|e| panic!("{line}: {e}"));
        assert!(answer["offset"].as_u64().is_some(), "{line}: {answer}");
    }
    let piped = readme_lines("echo '{\"id\": 1, \"op\": \"publish\"");
    for line in &piped {
        let out = shell(&line.replace("127.0.0.1:8080", &here)).await;
        let ack: Value = serde_json::from_str(out.trim())
            .unwrap_or_else(|e| panic!("{line} printed {out:?}: {e}"));
        assert_eq!(ack["id"], 1, "{out}");
        assert!(ack["result"]["offset"].as_u64().is_some(), "{out}");
    }
}

/// The ```sh block of docs/PROTOCOL.md that follows `heading`.
fn protocol_block(heading: &str) -> String {
    let docs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/PROTOCOL.md"
    ))
    .expect("docs/PROTOCOL.md");
    let section = docs.split_once(heading).expect("the section").1;
    let block = section.split_once("```sh\n").expect("a sh block").1;
    block
        .split_once("```")
        .expect("the block ends")
        .0
        .to_owned()
}

#[tokio::test]
async fn the_protocol_long_polling_example_runs_as_written() {
    let (_serve, port) = common::spawn(&["serve"], Stdio::null()).await;
    let script =
        protocol_block("### Long-polling").replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"));
    let output = shell(&script).await;
    let lines: Vec<Value> = output
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
        .collect();
    assert_eq!(lines.len(), 3, "{output}");
    assert_eq!(lines[0]["messages"][0]["id"], 1, "{output}");
    assert_eq!(lines[1]["accepted"], 1, "{output}");
    let messages = lines[2]["messages"].as_array().unwrap();
    assert!(
        messages
            .iter()
            .any(|m| m["push"] == "publication" && m["data"]["headline"] == "hi"),
        "{output}"
    );
    assert!(messages.iter().any(|m| m["id"] == 2), "{output}");
}
