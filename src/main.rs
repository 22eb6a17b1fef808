//! The `minikafka` binary: parses the command line, sets up logging (RUST_LOG, to stderr) and
//! runs the subcommand; errors go to stderr with exit code 1.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use minikafka::cli::{Cli, CliError, Command};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The broker says where it listens at info; client commands stay quiet unless asked.
    // openraft narrates every vote at info and every unreachable peer at warn, several times a
    // second: only its errors by default (RUST_LOG=openraft=info shows them).
    let default_filter = match cli.command {
        Command::Broker(_) => "info,openraft=error",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(minikafka::cli::run(cli));
    // Don't wait for a blocking stdin read that will never finish.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    match result {
        Ok(()) | Err(CliError::OutputClosed) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
