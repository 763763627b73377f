//! HTTP on taskward: a server whose connections are tracked tasks and which drains before
//! it stops, with health and readiness endpoints, and a client whose `close()` leaves
//! nothing running. Start with [`Server`] and [`Client`].
#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

/// The README's examples (core and HTTP), compiled, and run where they do not bind a port,
/// as doc tests of the crate that can see both.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

mod client;
mod client_builder;
mod connector;
pub mod debug;
mod drain;
mod error;
mod health;
pub mod limits;
mod listener;
mod notify;
pub mod protocol;
mod request_builder;
mod requests;
mod resolve;
mod response;
mod retry;
mod server;
mod streams;
pub mod throttle;
mod timeouts;
mod tls;
mod worker;

pub use client::Client;
pub use client_builder::ClientBuilder;
pub use error::ClientBuildError;
pub use error::{ClientError, ServeError, WorkerError};
pub use health::{Health, HealthPaths};
pub use listener::ListenAddr;
pub use notify::Notifier;
pub use request_builder::RequestBuilder;
pub use requests::RequestCount;
pub use response::Response;
pub use server::{Body, HttpService, Server, ServerHandle};
pub use timeouts::Timeouts;
pub use tls::{Certificate, Identity};
pub use worker::Worker;
