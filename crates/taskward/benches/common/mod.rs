//! What the criterion benches share: the runtime they run on and the timed loop.

use std::future::Future;
use std::time::Duration;

use tokio::runtime::Runtime;

/// The 2-worker multi-thread runtime every bench runs on (the size of CI's machine).
pub(crate) fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a 2-worker tokio runtime can be built")
}

/// Runs `iters` iterations of `one` inside a task on `rt` (as a service spawns from its
/// tasks) and sums the times they report.
pub(crate) fn drive<F, Fut>(rt: &Runtime, iters: u64, one: F) -> Duration
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = Duration> + Send,
{
    rt.block_on(async move {
        tokio::spawn(async move {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                total += one().await;
            }
            total
        })
        .await
        .expect("the driver task does not panic")
    })
}
