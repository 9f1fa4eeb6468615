//! `tether bench`: every scenario runs briefly against the real servers
//! (`tether echo`, its `/broadcast`, and `tether serve`) and writes a JSON and
//! an HTML report with nothing lost.

mod common;

use std::process::{Command, Stdio};

use serde_json::Value;

fn bench(args: &[&str], dir: &std::path::Path, name: &str) -> Value {
    let json = dir.join(format!("{name}.json"));
    let html = dir.join(format!("{name}.html"));
    let output = Command::new(env!("CARGO_BIN_EXE_tether"))
        .arg("bench")
        .args(args)
        .args(["--quiet", "--json", json.to_str().unwrap()])
        .args(["--html", html.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "tether bench {args:?}: {}\n{stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(args[0]), "a summary is printed: {stdout}");
    let html = std::fs::read_to_string(&html).unwrap();
    assert!(html.contains("<svg"), "the HTML report has plots");
    serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_runs_and_reports() {
    let dir = std::env::temp_dir().join(format!("tether-bench-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (echo, echo_port) = common::spawn(&["echo"], Stdio::null()).await;
    let echo_pid = echo.0.id().to_string();
    let echo_url = format!("ws://127.0.0.1:{echo_port}/");
    let broadcast_url = format!("ws://127.0.0.1:{echo_port}/broadcast");
    let config = dir.join("serve.toml");
    std::fs::write(&config, "[namespaces.bench]\npresence = false\n").unwrap();
    let (serve, serve_port) = common::spawn(
        &["serve", "--config", config.to_str().unwrap()],
        Stdio::null(),
    )
    .await;
    let serve_url = format!("ws://127.0.0.1:{serve_port}/connection/websocket");

    let echo = bench(
        &[
            "echo",
            &echo_url,
            "-c",
            "8",
            "-d",
            "1",
            "--server-pid",
            &echo_pid,
        ],
        &dir,
        "echo",
    );
    assert!(echo["operations"].as_u64().unwrap() > 100, "{echo}");
    assert!(echo["latency"]["p99_us"].as_f64().unwrap() > 0.0);
    assert!(
        echo["server"]["per_cpu_second"].as_f64().unwrap() > 0.0,
        "{echo}"
    );

    let paced = bench(
        &["echo", &echo_url, "-c", "4", "-r", "200", "-m", "100"],
        &dir,
        "paced",
    );
    assert_eq!(
        paced["operations"], 100,
        "--messages stops the run: {paced}"
    );

    for (name, url) in [("bare", &broadcast_url), ("serve", &serve_url)] {
        let fanout = bench(
            &[
                "fanout",
                url,
                "-c",
                "20",
                "-r",
                "50",
                "-d",
                "1",
                "--channel",
                "bench:smoke",
            ],
            &dir,
            &format!("fanout-{name}"),
        );
        let published = fanout["details"]["publications"].as_f64().unwrap() as u64;
        assert!(published >= 40, "{fanout}");
        assert_eq!(
            fanout["operations"].as_u64().unwrap(),
            published * 20,
            "{fanout}"
        );
        assert_eq!(
            (fanout["lost"].clone(), fanout["errors"].clone()),
            (0.into(), 0.into())
        );
    }

    // Past `tether echo`'s 64 MiB limit, in about 128 KiB each.
    let bombs = bench(
        &[
            "bombs",
            &echo_url,
            "-c",
            "4",
            "-s",
            "134217728",
            "--server-pid",
            &echo_pid,
        ],
        &dir,
        "bombs",
    );
    assert_eq!(bombs["details"]["closed 1009"], 4.0, "{bombs}");
    assert!(bombs["details"]["server RSS peak, MiB"].as_f64().unwrap() > 0.0);

    // Two 4 MiB messages in four fragments each, echoed whole.
    let large = bench(
        &[
            "large",
            &echo_url,
            "-c",
            "2",
            "-s",
            "4194304",
            "--fragments",
            "4",
            "--server-pid",
            &echo_pid,
        ],
        &dir,
        "large",
    );
    assert_eq!(large["operations"], 2, "{large}");
    assert_eq!(large["errors"], 0, "{large}");
    assert!(large["details"]["peak growth per message byte"].is_number());

    let idle = bench(
        &[
            "idle",
            &echo_url,
            "-c",
            "200",
            "-d",
            "0.5",
            "--server-pid",
            &echo_pid,
        ],
        &dir,
        "idle",
    );
    assert_eq!(idle["details"]["held open"], 200.0, "{idle}");
    assert!(
        idle["server"]["rss_per_connection_bytes"].is_number(),
        "{idle}"
    );

    let handshake = bench(
        &["handshake", &echo_url, "-c", "4", "-d", "1"],
        &dir,
        "handshake",
    );
    assert!(
        handshake["operations"].as_u64().unwrap() > 10,
        "{handshake}"
    );

    let churn = bench(
        &[
            "churn",
            &serve_url,
            "-c",
            "10",
            "-r",
            "50",
            "-d",
            "1.5",
            "--churn-rate",
            "20",
            "--hold",
            "0.3",
            "--channel",
            "bench:churn",
        ],
        &dir,
        "churn",
    );
    assert!(
        churn["details"]["joins"].as_f64().unwrap() >= 10.0,
        "{churn}"
    );
    assert_eq!(churn["lost"], 0, "{churn}");

    let serve_pid = serve.0.id().to_string();
    let transports = bench(
        &[
            "transports",
            &format!("http://127.0.0.1:{serve_port}"),
            "-c",
            "5",
            "-r",
            "50",
            "-d",
            "1",
            "--poll-interval",
            "0.2",
            "--server-pid",
            &serve_pid,
        ],
        &dir,
        "transports",
    );
    let rows = transports["transports"].as_array().unwrap();
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r["transport"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["websocket", "sse", "long-polling", "short polling"]);
    for row in rows {
        assert_eq!(row["lost"], 0, "{row}");
        assert!(row["deliveries"].as_u64().unwrap() >= 5 * 40, "{row}");
        assert!(
            row["bytes_down_per_message"].as_f64().unwrap() > 50.0,
            "{row}"
        );
        assert!(row["server_cpu_us_per_message"].as_f64().is_some(), "{row}");
    }
    assert!(rows[2]["requests_per_second"].as_f64().unwrap() > 1.0);

    // Idle sessions over the HTTP transports: held, measured, deleted.
    for (path, name) in [("longpoll", "idle-longpoll"), ("sse", "idle-sse")] {
        let idle = bench(
            &[
                "idle",
                &format!("http://127.0.0.1:{serve_port}/connection/{path}"),
                "-c",
                "20",
                "-d",
                "0.5",
                "--channel",
                "bench:idle",
                "--server-pid",
                &serve_pid,
            ],
            &dir,
            name,
        );
        assert_eq!(idle["details"]["held open"], 20.0, "{idle}");
        assert_eq!(idle["errors"], 0, "{idle}");
        assert!(
            idle["server"]["rss_per_connection_bytes"].is_number(),
            "{idle}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_scenario_measures_every_setup_on_real_redis_and_nginx() {
    let dir = std::env::temp_dir().join(format!("tether-bench-cluster-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let report = bench(
        &["cluster", "-c", "20", "-r", "200", "-d", "1"],
        &dir,
        "cluster",
    );
    let setups = report["cluster"].as_array().expect("a row per setup");
    assert_eq!(setups.len(), 3, "{report}");
    for row in setups {
        assert!(
            row["deliveries_per_node_cpu_second"].as_f64() > Some(0.0),
            "{row}"
        );
        assert_eq!(row["lost"], 0, "{row}");
        assert!(row["latency"]["p99_us"].is_number(), "{row}");
    }
    assert!(
        setups[0]["redis_cpu_seconds"].is_null(),
        "no Redis for memory"
    );
    assert!(
        setups[2]["redis_cpu_seconds"].as_f64() > Some(0.0),
        "{report}"
    );
    assert!(
        setups[2]["proxy_cpu_seconds"].as_f64() > Some(0.0),
        "{report}"
    );
    let rates = report["rates"].as_array().expect("the publication rates");
    assert_eq!(rates.len(), 2, "{report}");
    for row in rates {
        assert!(row["per_second"].as_f64() > Some(100.0), "{row}");
        assert!(
            row["redis_us_per_publication"].as_f64() > Some(0.0),
            "{row}"
        );
        assert_eq!(
            (&row["lost"], &row["refused"]),
            (&0.into(), &0.into()),
            "{row}"
        );
    }
    let details = &report["details"];
    let per_channel = details["Redis bytes per channel (with its first publication)"].as_f64();
    let per_entry = details["Redis bytes per history entry"].as_f64();
    assert!(
        per_channel > Some(50.0) && per_channel < Some(10_000.0),
        "{details}"
    );
    assert!(
        per_entry > Some(16.0) && per_entry < Some(1_000.0),
        "{details}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn refuses_an_unknown_scenario() {
    let output = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["bench", "nonsense", "ws://127.0.0.1:1/"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("echo, fanout, idle, handshake, churn"),
        "{stderr}"
    );
}

/// Runs `tether bench ARGS --quiet`, which must end by itself within 20 s (it
/// is killed otherwise); its exit code and standard output.
async fn bench_ending_by_itself(args: &[&str]) -> (Option<i32>, String) {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_tether"))
        .arg("bench")
        .args(args)
        .arg("--quiet")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(20), run)
        .await
        .unwrap_or_else(|_| panic!("tether bench {args:?} did not end by itself"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    (output.status.code(), stdout)
}

/// A server that takes the handshake and then never answers: each echo
/// connection's stall watchdog gives up after one to two `--timeout`s, the run
/// ends early, and the requests left unanswered count as errors (exit code 2).
#[tokio::test]
async fn echo_gives_up_on_a_server_that_stops_answering() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            // Handshake, then nothing: the requests are read by no one.
            if let Ok(ws) = tether::accept(tcp).await {
                held.push(ws);
            }
        }
    });
    let started = std::time::Instant::now();
    let (code, stdout) = bench_ending_by_itself(&[
        "echo",
        &url,
        "-c",
        "3",
        "--in-flight",
        "4",
        "-d",
        "30",
        "--timeout",
        "0.5",
    ])
    .await;
    silent.abort();
    let took = started.elapsed();
    assert_eq!(code, Some(2), "{stdout}");
    assert!(took < std::time::Duration::from_secs(10), "took {took:?}");
    assert!(
        stdout.contains("errors 12"),
        "3 connections x 4 requests: {stdout}"
    );
}

/// A `/broadcast` server that passes on the warm-up and the first five
/// publications and then silently drops the rest: the subscribers stop
/// waiting once deliveries have stopped for a `--timeout`, and the missing
/// ones are reported as lost (exit code 2).
#[tokio::test]
async fn fanout_reports_what_a_lossy_server_dropped() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/broadcast", listener.local_addr().unwrap());
    let (room, _) = tokio::sync::broadcast::channel::<tether::Message>(1024);
    let lossy = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let room = room.clone();
            tokio::spawn(async move {
                let Ok(ws) = tether::accept(tcp).await else {
                    return;
                };
                let (mut reader, writer) = ws.split();
                let mut inbox = room.subscribe();
                tokio::spawn(async move {
                    while let Ok(message) = inbox.recv().await {
                        let _ = writer.send(message).await;
                    }
                });
                while let Ok(Some(message)) = reader.recv().await {
                    // Publications start "TTTT… SSSSSSSSSS ": keep sequences 0 to 5.
                    let seq = match &message {
                        tether::Message::Text(text) => {
                            text.get(21..31).and_then(|s| s.parse().ok())
                        }
                        _ => None,
                    };
                    if seq.is_some_and(|seq: u64| seq <= 5) {
                        let _ = room.send(message);
                    }
                }
            });
        }
    });
    let (code, stdout) = bench_ending_by_itself(&[
        "fanout",
        &url,
        "-c",
        "4",
        "-r",
        "200",
        "-m",
        "20",
        "--timeout",
        "0.5",
    ])
    .await;
    lossy.abort();
    assert_eq!(code, Some(2), "{stdout}");
    assert!(
        stdout.contains("lost 60"),
        "4 subscribers x 15 dropped: {stdout}"
    );
}
