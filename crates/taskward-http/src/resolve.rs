//! Name lookups as tasks of the client's scope, so that `close()` sees and awaits them.
//!
//! `getaddrinfo` blocks and cannot be cancelled. hyper-util's own resolver runs it on
//! tokio's blocking pool where nothing owns it. Here each lookup is a task of the client's
//! scope (named `lookup <host>`) that awaits the blocking call: a lookup in progress keeps
//! `close()` waiting, up to its deadline; past it the task is aborted and reported, and the
//! blocking thread finishes the call on its own and drops the answer.

use std::future::Future;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::Name;
use taskward::Scope;
use tokio::sync::oneshot;

/// A lookup's answer: the addresses, in the order the system gave them.
type Lookup = io::Result<std::vec::IntoIter<SocketAddr>>;

/// hyper-util's resolver `Service`, spawning each lookup into `scope`.
#[derive(Debug, Clone)]
pub(crate) struct ScopeResolver(pub(crate) Scope);

impl tower::Service<Name> for ScopeResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = io::Error;
    // Boxed: one allocation per lookup is nothing beside the lookup itself.
    type Future = Pin<Box<dyn Future<Output = Lookup> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let host = name.as_str().to_owned();
        let (answer, answered) = oneshot::channel();
        let spawned = self.0.spawn(format!("lookup {host}"), async move {
            let found = tokio::task::spawn_blocking(move || {
                // Port 0: hyper-util sets the request's port on each address.
                (host.as_str(), 0).to_socket_addrs()
            })
            .await
            .unwrap_or_else(|joined| Err(io::Error::other(joined)));
            // The request may have been dropped meanwhile; then nobody wants the answer.
            let _ = answer.send(found.map(|addrs| addrs.collect::<Vec<_>>().into_iter()));
        });
        Box::pin(async move {
            spawned.map_err(|refused| io::Error::other(format!("no lookup: {refused}")))?;
            answered
                .await
                .map_err(|_| io::Error::other("lookup aborted: the client was closed"))?
        })
    }
}
