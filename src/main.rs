//! The `callml` command line: `serve` runs the server, `check` validates documents.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "callml",
    version,
    about = "Self-hosted TwiML / LaML voice platform"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: SIP, RTP, REST API
    Serve(Box<callml::config::ServeArgs>),
    /// Validate TwiML / LaML documents (`-` reads standard input)
    Check(callml::markup::check::CheckArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Check(args) => std::process::ExitCode::from(callml::markup::check::run(
            &args,
            &mut std::io::stdin().lock(),
            &mut std::io::stdout().lock(),
            &mut std::io::stderr().lock(),
        )),
    }
}

fn serve(args: callml::config::ServeArgs) -> std::process::ExitCode {
    let config = match callml::config::Config::load(args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("callml: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    init_logging(config.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("callml: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(callml::server::run(config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("callml: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Log lines go to stderr, as text or (`--log-format json`) one JSON object per line with the
/// fields of the spans they are in (a call's `call_sid`), for log shippers.
fn init_logging(format: callml::config::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        callml::config::LogFormat::Json => builder
            .json()
            .with_current_span(false)
            .with_span_list(true)
            .flatten_event(true)
            .init(),
        callml::config::LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}
