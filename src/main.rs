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
        Command::Serve(args) => match callml::config::Config::load(*args) {
            Ok(config) => {
                println!("{config:?}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("callml: {e}");
                std::process::ExitCode::from(2)
            }
        },
        Command::Check(args) => std::process::ExitCode::from(callml::markup::check::run(
            &args,
            &mut std::io::stdin().lock(),
            &mut std::io::stdout().lock(),
            &mut std::io::stderr().lock(),
        )),
    }
}
