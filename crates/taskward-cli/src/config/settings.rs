//! The settings of `taskward serve`: the one table that names each of them (file key,
//! flag, environment variable), its type, default, range and help. Read the
//! [`settings!`](super::declare) invocation below; adding a setting is adding a row.
//!
//! The file key is the field name; the environment variable is `TASKWARD_` and the key
//! in capitals (`TASKWARD_GRACEFUL_TIMEOUT`); the flag is `--` and the `long` name, the
//! key with dashes (a unit test holds them to that). `range` is both what the parser
//! accepts and what an error says it expected; `default` is parsed by the same parser.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use super::bind::{self, BindAddr};
use super::declare::settings;

/// The most workers one master keeps: Gunicorn's advice, (2 × cores) + 1, up to 255
/// cores. Each worker costs the master descriptors (its pidfd, the child's handle) and a
/// process; without a bound, `-w 100000` forked until descriptors ran out.
pub const MAX_WORKERS: usize = 512;

/// The shortest heartbeat `timeout` other than 0 (off): `WATCHDOG_USEC` is whole
/// microseconds and a worker beats at half of it, so below a millisecond it would be
/// zero, or a busy loop.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(1);

settings! {
    lists {
        bind: BindAddr {
            key: Bind,
            short: 'b',
            long: "bind",
            value_name: "ADDRESS",
            default: "127.0.0.1:8000",
            range: "HOST:PORT or unix:PATH",
            shape: "an address or an array of addresses",
            empty: "at least one address",
            once: "each address once",
            parse: bind::parse,
            help: "Address to listen on, `HOST:PORT` or `unix:PATH`",
        },
    }
    values {
        workers: NonZeroUsize {
            key: Workers,
            short: 'w',
            long: "workers",
            value_name: "INT",
            default: "1",
            range: "an integer from 1 to 512",
            parse: |raw| {
                raw.to_u64()
                    .filter(|&n| n <= MAX_WORKERS as u64)
                    .and_then(|n| usize::try_from(n).ok())
                    .and_then(NonZeroUsize::new)
            },
            help: "Number of worker processes, 1 to 512",
        },
        timeout: Option<Duration> {
            key: Timeout,
            short: 't',
            long: "timeout",
            value_name: "SECONDS",
            default: "30",
            range: "0 (off) or a number of seconds from 0.001 to 31536000",
            parse: |raw| {
                raw.to_duration()
                    .filter(|t| t.is_zero() || *t >= MIN_TIMEOUT)
                    .map(|t| (!t.is_zero()).then_some(t))
            },
            help: "Seconds without a heartbeat before a worker is killed, at least 0.001; 0 disables",
        },
        graceful_timeout: Duration {
            key: GracefulTimeout,
            long: "graceful-timeout",
            value_name: "SECONDS",
            default: "30",
            range: "a number of seconds from 0 to 31536000",
            parse: |raw| raw.to_duration(),
            help: "Seconds a stopping worker has before it is killed",
        },
        max_requests: u64 {
            key: MaxRequests,
            long: "max-requests",
            value_name: "INT",
            default: "0",
            range: "a non-negative integer",
            parse: |raw| raw.to_u64(),
            help: "Recycle a worker after this many requests; 0 disables",
        },
        max_requests_jitter: u64 {
            key: MaxRequestsJitter,
            long: "max-requests-jitter",
            value_name: "INT",
            default: "0",
            range: "a non-negative integer",
            parse: |raw| raw.to_u64(),
            help: "Add a random 0..=N to each worker's max-requests",
        },
        backlog: u32 {
            key: Backlog,
            long: "backlog",
            value_name: "INT",
            default: "2048",
            range: "an integer from 0 to 2147483647",
            // listen(2) takes a C int.
            parse: |raw| {
                raw.to_u64()
                    .and_then(|n| i32::try_from(n).ok())
                    .and_then(|n| u32::try_from(n).ok())
            },
            help: "The listen(2) backlog",
        },
        admin_socket: Option<PathBuf> {
            key: AdminSocket,
            long: "admin-socket",
            value_name: "PATH",
            default: none,
            range: "a non-empty path",
            parse: |raw| raw.to_path().map(Some),
            help: "Path of the admin socket read by `taskward status` (mode 0600) [default: ./taskward.sock if it can be bound]",
        },
        reload_timeout: Duration {
            key: ReloadTimeout,
            long: "reload-timeout",
            value_name: "SECONDS",
            default: "60",
            range: "a number of seconds above 0, at most 31536000",
            parse: |raw| raw.to_duration().filter(|t| !t.is_zero()),
            help: "Seconds a new worker has to report READY=1",
        },
    }
}
