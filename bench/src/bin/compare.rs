//! Runs the comparison: every measurement of the plan against tether and the
//! peer servers, each server on core 0 and the load on core 1, the median of
//! several runs, and prints the table of ratios (also written, with every
//! run's report, under `target/compare/`).
//!
//! Run through `scripts/compare.sh`, which builds the servers first.

use std::path::PathBuf;

use clap::Parser;
use tether_compare::plan::{self, Peer, Runs};
use tether_compare::server::{pin_self, Server};

// The load generator allocates as `tether bench` does (the peer servers, other
// binaries, keep the system allocator).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Compare tether with tokio-tungstenite and fastwebsockets.
#[derive(Debug, Parser)]
struct Args {
    /// A short smoke run: small loads, one second each, one run.
    #[arg(long)]
    quick: bool,
    /// Runs per measurement and server (the table shows medians).
    #[arg(long)]
    runs: Option<usize>,
    /// Only measurements whose name contains this.
    #[arg(long)]
    only: Option<String>,
    /// Where results go.
    #[arg(long, default_value = "target/compare")]
    out: PathBuf,
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{model}, {cores} cores, Linux {}", kernel.trim())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Described before pinning, which narrows what this process sees to one core.
    let machine = machine();
    let runs = args.runs.unwrap_or(if args.quick { 1 } else { 3 });
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Server on core 0, load on core 1; pin before the runtime starts threads.
    let (server_core, load_core) = if cores >= 2 {
        (Some(0), Some(1))
    } else {
        (None, None)
    };
    if let Some(core) = load_core {
        pin_self(core)?;
    }
    // As `tether bench` does: one thread on the one core the load is pinned to.
    let runtime = tether_bench::runtime()?;
    let bin_dir = std::env::current_exe()?
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default();
    std::fs::create_dir_all(&args.out)?;
    let serve_config = args.out.join("serve.toml");
    // Fan-out measures publications: no presence traffic on the bench channel.
    std::fs::write(&serve_config, "[namespaces.bench]\npresence = false\n")?;
    let serve_config = serve_config.to_string_lossy().into_owned();
    eprintln!("machine: {machine}; server on core {server_core:?}, load on core {load_core:?}; {runs} run(s) each");
    let plan: Vec<_> = plan::measurements(args.quick)
        .into_iter()
        .filter(|m| {
            args.only
                .as_deref()
                .map_or(true, |only| m.name.contains(only))
        })
        .collect();
    let mut results = Vec::new();
    let mut failures = 0;
    let mut flawed_runs = Vec::new();
    for measurement in &plan {
        for &peer in &measurement.peers {
            let binary = bin_dir.join(peer.binary());
            anyhow::ensure!(
                binary.exists(),
                "{} is missing: build with scripts/compare.sh",
                binary.display()
            );
            let mut reports = Vec::new();
            for run in 1..=runs {
                let server_args: Vec<&str> = match peer {
                    Peer::Tether | Peer::TetherWide => vec!["echo", "--log", "warn"],
                    Peer::TetherHttp2 => vec!["echo", "--http2", "--log", "warn"],
                    Peer::TetherServe => vec![
                        "serve",
                        "--log",
                        "warn",
                        "--config",
                        &serve_config,
                        "--max-connections-per-ip",
                        "0",
                        // Room for the whole burst, as the peers' 4096, and
                        // no rate limit on the publisher.
                        "--outbound-queue",
                        "8192",
                        "--rate-limit",
                        "10000000",
                        "--rate-burst",
                        "10000000",
                    ],
                    Peer::Tungstenite | Peer::Fastwebsockets => Vec::new(),
                };
                let server = Server::start(&binary, &server_args, server_core)?;
                let path = match peer {
                    Peer::TetherServe => "/connection/websocket",
                    _ => measurement.path,
                };
                let options =
                    measurement.options(peer, server.url(path), server.pid(), "bench:feed");
                let outcome = runtime.block_on(measurement.scenario.run(&options));
                drop(server);
                match outcome {
                    Ok(report) => {
                        let figures: Vec<String> = measurement
                            .figures
                            .iter()
                            .filter_map(|f| {
                                f.of(&report).map(|v| {
                                    format!(
                                        "{} {}",
                                        tether_bench::report::si(v),
                                        f.label(measurement.unit)
                                    )
                                })
                            })
                            .collect();
                        let flawed = report.lost > 0 || report.errors > 0;
                        eprintln!(
                            "{} / {} run {run}: {}{}",
                            measurement.name,
                            peer.title(),
                            figures.join(", "),
                            if flawed {
                                format!(" (lost {}, errors {})", report.lost, report.errors)
                            } else {
                                String::new()
                            }
                        );
                        if flawed {
                            let note = format!(
                                "{} / {} run {run}: lost {}, errors {}",
                                measurement.name,
                                peer.title(),
                                report.lost,
                                report.errors
                            );
                            flawed_runs.push(note);
                            // tether must lose nothing; a peer's losses are reported.
                            failures += usize::from(peer.is_tether());
                        }
                        reports.push(report);
                    }
                    Err(error) => {
                        let note = format!(
                            "{} / {} run {run} failed: {error}",
                            measurement.name,
                            peer.title()
                        );
                        eprintln!("{note}");
                        flawed_runs.push(note);
                        failures += usize::from(peer.is_tether());
                    }
                }
            }
            results.push(Runs {
                measurement: measurement.name,
                peer,
                reports,
            });
        }
    }
    let table = format!(
        "{}\nWebSocket over HTTP/2 (RFC 8441), the same server and load, each WebSocket on an HTTP/2 connection of its own (h2c):\n\n{}",
        plan::table(&plan, &results),
        plan::http2_table(&plan, &results)
    );
    println!("Machine: {machine}. Server pinned to core 0, load generator to core 1; medians of {runs} run(s).\n");
    println!("{table}");
    if !flawed_runs.is_empty() {
        println!("Runs that lost messages or failed (their figures are in the medians):\n");
        for note in &flawed_runs {
            println!("- {note}");
        }
    }
    std::fs::write(args.out.join("table.md"), &table)?;
    let json = serde_json::json!({
        "machine": machine,
        "runs": runs,
        "quick": args.quick,
        "results": results,
        "flawed_runs": flawed_runs,
    });
    std::fs::write(
        args.out.join("results.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    if failures > 0 {
        eprintln!("{failures} run(s) of tether lost messages or failed");
        std::process::exit(2);
    }
    Ok(())
}
