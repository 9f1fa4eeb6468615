//! The `tether` command: a thin layer that parses arguments and calls the
//! subcommand modules.

mod bench;
mod connect;
mod echo;
mod reclaim;
mod serve;

use clap::{Parser, Subcommand};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// tether: a real-time messaging server (channels, presence, history and
/// recovery over WebSocket, SSE and long-polling) and WebSocket tools (an echo
/// server, an interactive client, a load generator).
#[derive(Debug, Parser)]
#[command(name = "tether", version)]
struct Cli {
    /// Log filter (error, warn, info, debug, trace, or a tracing filter).
    #[arg(long, global = true, env = "TETHER_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The real-time server: channels, history and recovery, presence, HTTP API.
    Serve(Box<serve::ServeArgs>),
    /// Configuration helpers.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Echo server: echoes every text and binary message on any path
    /// (used by conformance runs and benchmarks).
    Echo(echo::EchoArgs),
    /// Interactive client: sends stdin lines as text messages, prints what arrives.
    Connect(connect::ConnectArgs),
    /// Load generator: echo, fanout, idle, handshake and churn scenarios with a
    /// latency histogram and JSON/HTML reports.
    Bench(Box<bench::BenchArgs>),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print a commented `tether serve` configuration file with every default.
    Example,
    /// Print the table of every setting, as docs/CONFIG.md has it.
    Reference,
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("Error: {}", explain(&error));
            std::process::ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, each cause only when the message
/// before it does not already say it (most of ours include their source).
fn explain(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text = format!("{text}: {cause}");
        }
    }
    text
}

fn run(cli: Cli) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&cli.log)?)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.command {
        Command::Config(ConfigCommand::Example) => {
            print!("{}", tether_server::config::example());
            return Ok(());
        }
        Command::Config(ConfigCommand::Reference) => {
            print!("{}", tether_server::config::reference());
            return Ok(());
        }
        _ => {}
    }
    if matches!(cli.command, Command::Serve(_) | Command::Echo(_)) {
        reclaim::start()?;
        tether_server::metrics::set_allocator_probe(reclaim::allocator_stats);
    }
    if let Command::Echo(args) = cli.command {
        // The echo server builds a runtime per serving thread.
        return echo::run(args);
    }
    // One thread when the process has one core.
    let runtime = tether::runtime::builder()
        .on_thread_park(reclaim::on_park)
        .build()?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(async {
            tokio::spawn(reclaim::wake_up());
            serve::run(*args).await
        }),
        Command::Config(_) | Command::Echo(_) => Ok(()),
        Command::Bench(args) => {
            let code = runtime.block_on(bench::run(*args))?;
            std::process::exit(code)
        }
        Command::Connect(args) => {
            let code = runtime.block_on(connect::run(args))?;
            std::process::exit(code)
        }
    }
}
