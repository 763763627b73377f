//! Shutdown latency of N idle tasks that wait for cancellation, for N from 1,000 to
//! 1,000,000: tokio-util's `CancellationToken` + `TaskTracker` next to taskward.
//!
//! Each iteration spawns N tasks that wait for cancellation and lets every one of them
//! reach its first `.await` (untimed), then times only the shutdown:
//!
//! - `token_tracker`: `token.cancel(); tracker.close(); tracker.wait().await`;
//! - `taskward`: `scope.shutdown(Duration::from_secs(10)).await` (the report is checked to
//!   be clean, outside the timing).
//!
//! The runtime is multi-thread with 2 workers, and the iterations are driven from a task on
//! it. The 1,000,000 case spawns a million tasks per iteration (untimed, but not free), so
//! it runs 10 samples of one iteration whatever the command line says, to stay within about
//! a minute. A whole default run takes about three minutes on 2 cores.
//!
//! Run it with:
//!
//! ```text
//! cargo bench -p taskward --bench shutdown
//! cargo bench -p taskward --bench shutdown -- --warm-up-time 1 --measurement-time 2 --sample-size 10
//! ```

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{drive, runtime};
use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use taskward::Scope;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Task counts, smallest first.
const COUNTS: [usize; 4] = [1_000, 10_000, 100_000, 1_000_000];

/// Tasks of the current iteration that have been polled once (and so wait on the token).
/// A static, so that counting adds no per-task allocation.
static STARTED: AtomicUsize = AtomicUsize::new(0);

/// Waits until all `n` tasks of this iteration have been polled once.
async fn all_started(n: usize) {
    // Acquire: pairs with the Release increments, though only the count matters here.
    while STARTED.load(Ordering::Acquire) < n {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn token_tracker(n: usize) -> Duration {
    STARTED.store(0, Ordering::Relaxed);
    let token = CancellationToken::new();
    let tracker = TaskTracker::new();
    for _ in 0..n {
        let token = token.clone();
        drop(tracker.spawn(async move {
            STARTED.fetch_add(1, Ordering::Release);
            token.cancelled().await;
        }));
    }
    all_started(n).await;

    let start = Instant::now();
    token.cancel();
    tracker.close();
    tracker.wait().await;
    start.elapsed()
}

async fn taskward(n: usize) -> Duration {
    STARTED.store(0, Ordering::Relaxed);
    let scope = Scope::root("bench");
    for _ in 0..n {
        let handle = scope
            .task("idle")
            .spawn_with(|ctx| async move {
                STARTED.fetch_add(1, Ordering::Release);
                ctx.cancelled().await;
            })
            .expect("the scope is open");
        drop(handle);
    }
    all_started(n).await;

    let start = Instant::now();
    let report = scope.shutdown(Duration::from_secs(10)).await;
    let elapsed = start.elapsed();
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.counts.cancelled, n as u64, "{report}");
    elapsed
}

fn shutdown(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("shutdown");
    // An iteration spawns N tasks untimed before the timed shutdown: flat sampling keeps
    // the iteration count low and predictable.
    group.sampling_mode(SamplingMode::Flat);
    for n in COUNTS {
        if n >= 1_000_000 {
            // At least one iteration per sample, each spawning a million tasks: bound it.
            group.sample_size(10);
            group.warm_up_time(Duration::from_millis(500));
            group.measurement_time(Duration::from_secs(1));
        }
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("token_tracker", n), &n, |b, &n| {
            b.iter_custom(|iters| drive(&rt, iters, move || token_tracker(n)));
        });
        group.bench_with_input(BenchmarkId::new("taskward", n), &n, |b, &n| {
            b.iter_custom(|iters| drive(&rt, iters, move || taskward(n)));
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    // Defaults only (the command line overrides them): the untimed spawning makes each
    // timed second cost several seconds of wall time.
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = shutdown
}
criterion_main!(benches);
