//! Heap bytes per idle task: taskward next to raw `tokio::spawn`, `TaskTracker` and
//! `JoinSet`.
//!
//! A counting global allocator keeps the number of live heap bytes (as requested from the
//! allocator: malloc's own per-block overhead is not included) and live blocks. For each
//! way of spawning, on a fresh `current_thread` runtime:
//!
//! 1. warm the runtime up (spawn and join as many trivial tasks, so that its run queue has
//!    already grown) and build what the spawner needs: the tracker, the set, the taskward
//!    root scope, and a `Vec` preallocated for the handles that are kept;
//! 2. read the live bytes;
//! 3. spawn `TASKS` idle tasks (each bumps a counter, then waits forever) and let every
//!    one be polled once;
//! 4. read the live bytes again: the difference divided by `TASKS` is the cost of a task.
//!
//! The handles kept in a preallocated `Vec` are not counted; their size is printed
//! separately. Dropping a taskward `TaskHandle` does not stop its task, so taskward is
//! measured both ways. The table is followed by one JSON line starting with
//! `memory-json:` for tools.
//!
//! Run it with:
//!
//! ```text
//! cargo bench -p taskward --bench memory
//! ```
#![expect(clippy::print_stdout, reason = "a benchmark prints its table")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use taskward::{Scope, TaskHandle};
use tokio::runtime::Runtime;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::task::TaskTracker;

/// Idle tasks spawned per measurement.
const TASKS: usize = 100_000;

/// Live heap bytes, as requested by callers.
static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
/// Live heap blocks.
static LIVE_BLOCKS: AtomicUsize = AtomicUsize::new(0);
/// Idle tasks of the current measurement that have been polled once.
static STARTED: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, counting live bytes and blocks.
struct Counting;

// SAFETY: every method forwards to `System` with the arguments it was given, so the
// allocator contract holds exactly as it does for `System`; the counters are plain atomics
// that never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller guarantees what `GlobalAlloc::alloc` requires of `layout`
        // (non-zero size), and `System.alloc` requires the same.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
            LIVE_BLOCKS.fetch_add(1, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`: the caller's guarantees on `layout` are passed on.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
            LIVE_BLOCKS.fetch_add(1, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller guarantees `ptr` was allocated by this allocator (so by
        // `System`, to which every allocation is forwarded) with this `layout`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        LIVE_BLOCKS.fetch_sub(1, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `ptr` came from this allocator (so from `System`)
        // with `layout`, and that `new_size` is valid for `layout`'s alignment.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            // On failure the old block stays allocated, so the counts do not change.
            LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
            LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Live bytes and blocks now.
fn live() -> (usize, usize) {
    (
        LIVE_BYTES.load(Ordering::Relaxed),
        LIVE_BLOCKS.load(Ordering::Relaxed),
    )
}

/// The body of every idle task, whoever spawns it: note the first poll, then wait forever.
async fn idle() {
    STARTED.fetch_add(1, Ordering::Relaxed);
    std::future::pending::<()>().await;
}

/// An idle task that keeps 96 bytes of state across its await, as a connection or a
/// periodic job does. Tokio sizes task cells in 128-byte steps: a trivial task fits the
/// smallest cell, while this one needs the next size with or without taskward, so it shows
/// taskward's cost on tasks that do something.
async fn stateful() {
    let state = std::hint::black_box([7u64; 12]);
    STARTED.fetch_add(1, Ordering::Relaxed);
    std::future::pending::<()>().await;
    std::hint::black_box(state);
}

/// Heap cost of `TASKS` idle tasks spawned one way.
#[derive(Debug, Clone, Copy)]
struct Cost {
    bytes: usize,
    blocks: usize,
}

impl Cost {
    fn bytes_per_task(self) -> f64 {
        self.bytes as f64 / TASKS as f64
    }

    fn blocks_per_task(self) -> f64 {
        self.blocks as f64 / TASKS as f64
    }
}

/// A fresh current-thread runtime whose run queue has already held `TASKS` tasks.
fn warm_runtime() -> Runtime {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread tokio runtime can be built");
    rt.block_on(async {
        let handles: Vec<_> = (0..TASKS).map(|_| tokio::spawn(async {})).collect();
        for handle in handles {
            handle.await.expect("a trivial task does not panic");
        }
        // Taskward's one-time setup (its panic hook, the process's table of root scopes).
        let scope = Scope::root("warm-up");
        scope
            .spawn("warm-up", async {})
            .expect("the scope is open")
            .await
            .expect("a trivial task does not panic");
        let _report = scope.shutdown(Duration::ZERO).await;
    });
    rt
}

/// Reads the live heap, runs `spawn_all`, lets every task be polled once, and returns what
/// the tasks added.
async fn measure(spawn_all: impl FnOnce()) -> Cost {
    STARTED.store(0, Ordering::Relaxed);
    let (bytes, blocks) = live();
    spawn_all();
    while STARTED.load(Ordering::Relaxed) < TASKS {
        tokio::task::yield_now().await;
    }
    let (bytes_after, blocks_after) = live();
    Cost {
        bytes: bytes_after
            .checked_sub(bytes)
            .expect("spawning tasks does not free memory"),
        blocks: blocks_after
            .checked_sub(blocks)
            .expect("spawning tasks does not free blocks"),
    }
}

fn tokio_spawn<F>(body: fn() -> F) -> Cost
where
    F: Future<Output = ()> + Send + 'static,
{
    let rt = warm_runtime();
    rt.block_on(async {
        let mut handles: Vec<JoinHandle<()>> = Vec::with_capacity(TASKS);
        let cost = measure(|| {
            for _ in 0..TASKS {
                handles.push(tokio::spawn(body()));
            }
        })
        .await;
        for handle in &handles {
            handle.abort();
        }
        cost
    })
}

fn task_tracker() -> Cost {
    let rt = warm_runtime();
    rt.block_on(async {
        let tracker = TaskTracker::new();
        let cost = measure(|| {
            for _ in 0..TASKS {
                drop(tracker.spawn(idle()));
            }
        })
        .await;
        tracker.close();
        cost
    })
}

fn join_set() -> Cost {
    let rt = warm_runtime();
    rt.block_on(async {
        let mut set = JoinSet::new();
        let cost = measure(|| {
            for _ in 0..TASKS {
                set.spawn(idle());
            }
        })
        .await;
        set.shutdown().await;
        cost
    })
}

fn taskward<F>(keep_handles: bool, body: fn() -> F) -> Cost
where
    F: Future<Output = ()> + Send + 'static,
{
    let rt = warm_runtime();
    rt.block_on(async {
        let scope = Scope::root("bench");
        let mut handles: Vec<TaskHandle<()>> =
            Vec::with_capacity(if keep_handles { TASKS } else { 0 });
        let cost = measure(|| {
            for _ in 0..TASKS {
                let handle = scope.spawn("idle", body()).expect("the scope is open");
                if keep_handles {
                    handles.push(handle);
                }
            }
        })
        .await;
        let report = scope.shutdown(Duration::ZERO).await;
        assert_eq!(report.counts.aborted, TASKS as u64, "{report}");
        cost
    })
}

fn main() {
    let rows = [
        (
            "tokio_spawn",
            "tokio::spawn (JoinHandles kept)",
            tokio_spawn(idle),
        ),
        ("task_tracker", "TaskTracker::spawn", task_tracker()),
        ("join_set", "JoinSet::spawn", join_set()),
        (
            "taskward",
            "taskward scope.spawn (handles dropped)",
            taskward(false, idle),
        ),
        (
            "taskward_handles_kept",
            "taskward scope.spawn (TaskHandles kept)",
            taskward(true, idle),
        ),
        (
            "tokio_spawn_stateful",
            "tokio::spawn, 96-byte task state",
            tokio_spawn(stateful),
        ),
        (
            "taskward_stateful",
            "taskward scope.spawn, 96-byte task state",
            taskward(false, stateful),
        ),
    ];
    let tokio = rows[0].2.bytes_per_task();
    let tokio_stateful = rows[5].2.bytes_per_task();

    println!("heap per idle task, {TASKS} tasks, current_thread runtime");
    println!(
        "{:<42} {:>10} {:>11} {:>15}",
        "spawner", "bytes/task", "allocs/task", "- tokio::spawn"
    );
    for (key, label, cost) in &rows {
        // Each row is compared with raw tokio running the same task body.
        let baseline = if key.ends_with("_stateful") {
            tokio_stateful
        } else {
            tokio
        };
        println!(
            "{:<42} {:>10.1} {:>11.2} {:>+15.1}",
            label,
            cost.bytes_per_task(),
            cost.blocks_per_task(),
            cost.bytes_per_task() - baseline,
        );
    }
    println!(
        "handles kept in a preallocated Vec are not counted: JoinHandle {} B, TaskHandle {} B",
        size_of::<JoinHandle<()>>(),
        size_of::<TaskHandle<()>>(),
    );

    let mut json = serde_json::Map::new();
    json.insert("tasks".to_owned(), TASKS.into());
    for (key, _, cost) in &rows {
        json.insert(
            format!("{key}_bytes_per_task"),
            serde_json::json!(cost.bytes_per_task()),
        );
        json.insert(
            format!("{key}_allocs_per_task"),
            serde_json::json!(cost.blocks_per_task()),
        );
    }
    json.insert(
        "taskward_minus_tokio_bytes_per_task".to_owned(),
        serde_json::json!(rows[3].2.bytes_per_task() - tokio),
    );
    json.insert(
        "taskward_minus_tokio_stateful_bytes_per_task".to_owned(),
        serde_json::json!(rows[6].2.bytes_per_task() - tokio_stateful),
    );
    println!("memory-json: {}", serde_json::Value::Object(json));
}
