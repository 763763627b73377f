//! `taskward`, the command: parses the command line and hands over to the library. Read
//! [`taskward_cli::serve`] for `taskward serve`.

use std::error::Error;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use taskward_cli::admin::TopError;
use taskward_cli::config::{ServeConfig, ServeFlags};
use taskward_cli::master::Outcome;
use taskward_cli::serve::{DEFAULT_ADMIN_SOCKET, EXIT_CLEAN, EXIT_CONFIG, EXIT_KILLED, EXIT_START};

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
    Serve(Box<ServeFlags>),
    /// Show the workers of a running `taskward serve` and its recent restarts.
    Status {
        /// The master's admin socket.
        #[arg(long, value_name = "PATH", default_value = DEFAULT_ADMIN_SOCKET)]
        admin_socket: PathBuf,
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
        /// Seconds to wait for the master's answer.
        #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = parse_interval)]
        timeout: Duration,
    },
    /// Show the status of a running `taskward serve` again and again, with its requests/s.
    Top {
        /// The master's admin socket.
        #[arg(long, value_name = "PATH", default_value = DEFAULT_ADMIN_SOCKET)]
        admin_socket: PathBuf,
        /// Seconds between two refreshes.
        #[arg(short = 'd', long, value_name = "SECONDS", default_value = "1", value_parser = parse_interval)]
        delay: Duration,
        /// Stop after this many refreshes (default: until Ctrl-C or the master stops).
        #[arg(short = 'n', long, value_name = "N")]
        iterations: Option<u64>,
        /// Seconds to wait for each of the master's answers.
        #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = parse_interval)]
        timeout: Duration,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Top {
            admin_socket,
            delay,
            iterations,
            timeout,
        } => {
            let runtime = match client_runtime() {
                Ok(runtime) => runtime,
                Err(error) => return fail(&error, EXIT_START),
            };
            let stdout = std::io::stdout();
            let terminal = stdout.is_terminal();
            let mut out = stdout.lock();
            let shown = runtime.block_on(taskward_cli::admin::top(
                &admin_socket,
                delay,
                iterations,
                terminal,
                timeout,
                &mut out,
            ));
            match shown {
                Ok(()) => ExitCode::SUCCESS,
                Err(TopError::Write(error)) => output_failed(&error),
                Err(error) => fail(&error, EXIT_START),
            }
        }
        Command::Status {
            admin_socket,
            json,
            timeout,
        } => {
            let runtime = match client_runtime() {
                Ok(runtime) => runtime,
                Err(error) => return fail(&error, EXIT_START),
            };
            let status =
                match runtime.block_on(taskward_cli::admin::query_within(&admin_socket, timeout)) {
                    Ok(status) => status,
                    Err(error) => return fail(&error, EXIT_START),
                };
            let text = if json {
                match serde_json::to_string_pretty(&status) {
                    Ok(text) => text + "\n",
                    Err(error) => return fail(&error, EXIT_START),
                }
            } else {
                status.to_string()
            };
            let mut out = std::io::stdout().lock();
            match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => output_failed(&error),
            }
        }
        Command::Serve(flags) => {
            let loaded = std::env::current_dir()
                .map_err(|error| Box::new(error) as Box<dyn Error>)
                .and_then(|cwd| {
                    Ok(ServeConfig::load(
                        *flags,
                        |name| std::env::var_os(name),
                        &cwd,
                    )?)
                });
            let config = match loaded {
                Ok(config) => config,
                Err(error) => return fail(error.as_ref(), EXIT_CONFIG),
            };
            init_logs();
            match taskward_cli::serve::run(config) {
                Ok(Outcome::Clean) => ExitCode::from(EXIT_CLEAN),
                Ok(Outcome::Killed) => ExitCode::from(EXIT_KILLED),
                Ok(Outcome::WorkerConfig(error)) => fail(&error, EXIT_CONFIG),
                Err(error) => fail(&error, error.exit_code()),
            }
        }
    }
}

/// The runtime of the admin commands: one thread is plenty.
fn client_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// `--delay`: seconds, positive and finite.
fn parse_interval(text: &str) -> Result<Duration, String> {
    let max = taskward_http::protocol::MAX_SECONDS;
    let bad = || format!("expected a number of seconds above 0 and at most {max}, found {text:?}");
    // `f64` takes `inf`, `NaN` and `1e300`: bounded here, so that no value reaches
    // `Duration`'s own (panicking or cryptic) conversion.
    match text.parse::<f64>() {
        Ok(seconds) if seconds > 0.0 && seconds <= max as f64 => {
            Duration::try_from_secs_f64(seconds).map_err(|_| bad())
        }
        _ => Err(bad()),
    }
}

/// The output could not be written. Closed early (`| head -1`, `| grep -q`): the reader
/// has what it wanted, so exit quietly and successfully, as ripgrep does. Otherwise
/// (`>/dev/full`): one line, exit code 1.
fn output_failed(error: &std::io::Error) -> ExitCode {
    if error.kind() == std::io::ErrorKind::BrokenPipe {
        return ExitCode::SUCCESS;
    }
    fail(
        &std::io::Error::new(error.kind(), format!("cannot write the output: {error}")),
        EXIT_START,
    )
}

/// Prints `error` and its causes on one line; returns `code`.
#[expect(clippy::print_stderr, reason = "the command's error output")]
fn fail(error: &dyn Error, code: u8) -> ExitCode {
    eprintln!("taskward: {}", taskward_cli::error_line::error_line(error));
    ExitCode::from(code)
}

/// Logs to stderr, filtered by `RUST_LOG` (default: `info`).
fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

#[cfg(test)]
mod tests {
    use super::parse_interval;

    // Asserts: intervals are positive seconds up to a year; anything else (`1e300`, `inf`,
    // `NaN`, 0, text) is refused with the same plain message naming the value, never
    // Rust's "cannot convert float seconds to Duration".
    #[test]
    fn intervals_are_bounded_with_a_plain_message() {
        assert_eq!(
            parse_interval("0.5"),
            Ok(std::time::Duration::from_millis(500))
        );
        for bad in ["1e300", "inf", "NaN", "0", "-1", "abc", "31536001"] {
            let error = parse_interval(bad).expect_err(bad);
            assert!(
                error.contains("at most 31536000") && error.contains(bad),
                "{error}"
            );
        }
    }
}
