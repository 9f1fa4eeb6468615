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

/// tether: WebSocket tools.
#[derive(Debug, Parser)]
#[command(name = "tether", version, about)]
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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&cli.log)?)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Command::Config(ConfigCommand::Example) = cli.command {
        print!("{}", tether_server::file::example());
        return Ok(());
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
