//! Spawn, run and join 100,000 trivial tasks: taskward next to its peers.
//!
//! One criterion group, `spawn_join`, with the same work done six ways on a multi-thread
//! tokio runtime with 2 workers: raw `tokio::spawn` awaiting each `JoinHandle`, a
//! `JoinSet`, tokio-util's `TaskTracker`, tokio-graceful-shutdown subsystems, and
//! taskward (`scope.spawn` then `scope.wait()`, and `scope.spawn` awaiting each
//! `TaskHandle`). Throughput is in tasks, so criterion's "elem/s" reads as tasks per
//! second and the time divided by the count is the cost of one task.
//!
//! Every iteration is driven from a task on the runtime (as an accept loop would spawn),
//! and only the spawning and joining is timed (`iter_custom`): building the `Vec` of
//! handles, creating the taskward root scope and shutting it down are not.
//!
//! Run it with:
//!
//! ```text
//! cargo bench -p taskward --bench spawn_join
//! cargo bench -p taskward --bench spawn_join -- --warm-up-time 1 --measurement-time 2 --sample-size 10
//! ```

mod common;

use std::convert::Infallible;
use std::time::{Duration, Instant};

use common::{drive, runtime};
use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use taskward::Scope;
use tokio::task::JoinSet;
use tokio_graceful_shutdown::{SubsystemBuilder, SubsystemHandle, Toplevel};
use tokio_util::task::TaskTracker;

/// Tasks spawned and joined per iteration.
const TASKS: usize = 100_000;

/// Subsystems started per iteration for tokio-graceful-shutdown. It holds 100,000
/// subsystems, so it runs the same count as the others; the count is in the bench id.
const SUBSYSTEMS: usize = TASKS;

async fn tokio_spawn(n: usize) -> Duration {
    let mut handles = Vec::with_capacity(n);
    let start = Instant::now();
    for _ in 0..n {
        handles.push(tokio::spawn(async {}));
    }
    for handle in handles.drain(..) {
        handle.await.expect("a trivial task does not panic");
    }
    start.elapsed()
}

async fn join_set(n: usize) -> Duration {
    let start = Instant::now();
    let mut set = JoinSet::new();
    for _ in 0..n {
        set.spawn(async {});
    }
    while let Some(joined) = set.join_next().await {
        joined.expect("a trivial task does not panic");
    }
    start.elapsed()
}

async fn task_tracker(n: usize) -> Duration {
    let start = Instant::now();
    let tracker = TaskTracker::new();
    for _ in 0..n {
        drop(tracker.spawn(async {}));
    }
    tracker.close();
    tracker.wait().await;
    start.elapsed()
}

async fn trivial_subsystem(_: &mut SubsystemHandle) -> Result<(), Infallible> {
    Ok(())
}

async fn graceful_shutdown(n: usize) -> Duration {
    let start = Instant::now();
    // Toplevel returns once every subsystem has finished (or on a shutdown request,
    // which nothing sends here).
    Toplevel::new(async move |s: &mut SubsystemHandle| {
        for _ in 0..n {
            s.start(SubsystemBuilder::new("task", trivial_subsystem));
        }
    })
    .handle_shutdown_requests(Duration::from_secs(60))
    .await
    .expect("trivial subsystems do not fail");
    start.elapsed()
}

/// Shuts `scope` down (not timed by the callers) and checks that it is clean and, when
/// `n` is given, that all `n` tasks completed.
async fn close(scope: Scope, n: usize) {
    let report = scope.shutdown(Duration::ZERO).await;
    assert!(report.is_clean(), "{report}");
    if n > 0 {
        assert_eq!(report.counts.completed, n as u64, "{report}");
    }
}

async fn taskward_wait(n: usize) -> Duration {
    let scope = Scope::root("bench");
    let start = Instant::now();
    for _ in 0..n {
        drop(scope.spawn("task", async {}).expect("the scope is open"));
    }
    scope.wait().await;
    let elapsed = start.elapsed();
    close(scope, n).await;
    elapsed
}

/// Spawns `n` tasks into a long-lived scope, as a service's scope sees wave after wave of
/// tasks: its registry has already grown, as tokio's own task list has.
async fn taskward_wait_warm(scope: Scope, n: usize) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        drop(scope.spawn("task", async {}).expect("the scope is open"));
    }
    scope.wait().await;
    start.elapsed()
}

async fn taskward_handles(n: usize) -> Duration {
    let scope = Scope::root("bench");
    let mut handles = Vec::with_capacity(n);
    let start = Instant::now();
    for _ in 0..n {
        handles.push(scope.spawn("task", async {}).expect("the scope is open"));
    }
    for handle in handles.drain(..) {
        handle.await.expect("a trivial task does not panic");
    }
    let elapsed = start.elapsed();
    close(scope, n).await;
    elapsed
}

fn spawn_join(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("spawn_join");
    // One iteration is 100,000 tasks (tens of milliseconds): flat sampling keeps the
    // iteration count per sample constant instead of ramping up to thousands.
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(TASKS as u64));

    group.bench_function(BenchmarkId::new("tokio_spawn_await_each", TASKS), |b| {
        b.iter_custom(|iters| drive(&rt, iters, || tokio_spawn(TASKS)));
    });
    group.bench_function(BenchmarkId::new("join_set", TASKS), |b| {
        b.iter_custom(|iters| drive(&rt, iters, || join_set(TASKS)));
    });
    group.bench_function(BenchmarkId::new("task_tracker", TASKS), |b| {
        b.iter_custom(|iters| drive(&rt, iters, || task_tracker(TASKS)));
    });
    group.throughput(Throughput::Elements(SUBSYSTEMS as u64));
    group.bench_function(
        BenchmarkId::new("graceful_shutdown_subsystems", SUBSYSTEMS),
        |b| b.iter_custom(|iters| drive(&rt, iters, || graceful_shutdown(SUBSYSTEMS))),
    );
    group.throughput(Throughput::Elements(TASKS as u64));
    group.bench_function(BenchmarkId::new("taskward_wait", TASKS), |b| {
        b.iter_custom(|iters| drive(&rt, iters, || taskward_wait(TASKS)));
    });
    group.bench_function(BenchmarkId::new("taskward_await_each", TASKS), |b| {
        b.iter_custom(|iters| drive(&rt, iters, || taskward_handles(TASKS)));
    });
    let warm = Scope::root("bench-warm");
    group.bench_function(BenchmarkId::new("taskward_wait_warm_scope", TASKS), |b| {
        b.iter_custom(|iters| {
            let scope = warm.clone();
            drive(&rt, iters, move || taskward_wait_warm(scope.clone(), TASKS))
        });
    });
    group.finish();
    rt.block_on(close(warm, 0));
}

criterion_group! {
    name = benches;
    // Defaults only: the command line (`--sample-size`, `--measurement-time`) overrides them.
    config = Criterion::default().sample_size(20);
    targets = spawn_join
}
criterion_main!(benches);
