//! The executor a connection hands to hyper: HTTP/2 stream futures run inside the
//! connection's own task instead of as tasks of their own.
//!
//! Read [`ConnStreams`] first. Spawning each stream as a task would need the server's
//! scope to admit new tasks while it drains, and streams opened just before the GOAWAY
//! must still be served; inside the connection task they are tracked, drained and, at the
//! deadline, aborted with it, and no task is ever spawned for them.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::Notify;

type StreamFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The stream futures hyper handed over, waiting to be picked up by the connection task.
#[derive(Clone, Default)]
pub(crate) struct ConnStreams {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    handed: Mutex<Vec<StreamFuture>>,
    arrived: Notify,
}

impl<F> hyper::rt::Executor<F> for ConnStreams
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, future: F) {
        self.shared
            .handed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Box::pin(future));
        // A stored permit: the connection task picks the future up on its next turn even
        // if it is not waiting right now.
        self.shared.arrived.notify_one();
    }
}

/// The connection task's side: the streams being served.
#[derive(Default)]
pub(crate) struct Running {
    streams: FuturesUnordered<StreamFuture>,
}

impl Running {
    /// Runs the streams, taking in those hyper hands over meanwhile, and returns when the
    /// last one open has ended (the connection has just become idle). Never completes
    /// while a stream is open, nor while none was ever handed over: select on it next to
    /// the connection, which is what hands streams over.
    ///
    /// # Cancel safety
    ///
    /// This method is cancel safe: streams stay in `self` between calls.
    pub(crate) async fn serve(&mut self, from: &ConnStreams) {
        loop {
            self.take_in(from);
            if self.streams.is_empty() {
                from.shared.arrived.notified().await;
                continue;
            }
            tokio::select! {
                _ = self.streams.next() => {
                    self.take_in(from);
                    if self.streams.is_empty() {
                        return;
                    }
                }
                () = from.shared.arrived.notified() => {}
            }
        }
    }

    /// No stream is open.
    pub(crate) fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    fn take_in(&mut self, from: &ConnStreams) {
        let handed = std::mem::take(
            &mut *from
                .shared
                .handed
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        self.streams.extend(handed);
    }
}
