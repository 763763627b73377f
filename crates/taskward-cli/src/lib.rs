//! The `taskward` command: a process manager that keeps N worker processes running and
//! talks to them with systemd's protocols. Read [`serve`] for what `taskward serve` does,
//! [`config::ServeConfig`] for what it is told, and [`notify::NotifySocket`] for what its
//! workers tell it.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

#[cfg(not(unix))]
compile_error!("taskward-cli speaks unix sockets and signals; it builds on unix only");

pub mod admin;
pub mod config;
pub mod error_line;
mod leftovers;
mod lifecycle;
pub mod listen;
pub mod master;
pub mod notify;
#[path = "os/unix.rs"]
mod os;
mod runtime_dir;
pub mod serve;
#[cfg(test)]
mod temp_dir;
mod worker;
