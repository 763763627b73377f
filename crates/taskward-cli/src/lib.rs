//! The `taskward` command: a process manager that keeps N worker processes running and
//! talks to them with systemd's protocols. Read [`config::ServeConfig`] for what
//! `taskward serve` is told, and [`notify::NotifySocket`] for what its workers tell it.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

#[cfg(not(unix))]
compile_error!("taskward-cli speaks unix sockets and signals; it builds on unix only");

pub mod config;
pub mod notify;
