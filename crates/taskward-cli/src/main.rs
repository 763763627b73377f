//! `taskward`, the command: parses the command line and hands over to the library. Read
//! [`taskward_cli::config`] for the flags of `taskward serve`.

use std::error::Error;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use taskward_cli::config::{ServeConfig, ServeFlags};

/// A process manager for services built on taskward, or any program that speaks systemd's
/// socket activation and readiness notification.
#[derive(Debug, Parser)]
#[command(name = "taskward", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Listen on the bound addresses and keep workers running the program.
    Serve(ServeFlags),
}

/// Exit status for a bad configuration, as for bad flags (clap's own).
const EXIT_CONFIG: u8 = 2;

#[expect(
    clippy::print_stderr,
    reason = "the binary's only output before logging is set up"
)]
fn main() -> ExitCode {
    let Command::Serve(flags) = Cli::parse().command;
    let config = match std::env::current_dir()
        .map_err(|error| Box::new(error) as Box<dyn Error>)
        .and_then(|cwd| {
            Ok(ServeConfig::load(
                flags,
                |name| std::env::var_os(name),
                &cwd,
            )?)
        }) {
        Ok(config) => config,
        Err(error) => {
            eprint!("taskward: {error}");
            let mut source = error.source();
            while let Some(cause) = source {
                eprint!(": {cause}");
                source = cause.source();
            }
            eprintln!();
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // The master (supervision of the workers) is not written yet.
    eprintln!(
        "taskward: serve: {} worker(s) of {:?} on {} address(es): the process manager is not implemented yet",
        config.workers,
        config.program,
        config.bind.len()
    );
    ExitCode::FAILURE
}
