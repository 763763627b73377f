//! The leak-checking test harness catches what a test leaves behind.

use std::time::Duration;

use taskward::testing::Harness;

// Asserts: a deliberately leaked `tokio::spawn` is caught on a current-thread runtime.
#[test]
fn catches_leaked_tokio_spawn_current_thread() {
    let leak = Harness::current_thread()
        .try_run(|_scope| async {
            tokio::spawn(std::future::pending::<()>());
        })
        .expect_err("the leaked tokio task is found");
    assert_eq!(leak.untracked, 1);
    assert!(leak.tracked.is_empty());
    assert!(leak.to_string().contains("1 untracked task(s)"), "{leak}");
}

// Asserts: the same on a multi-thread runtime, where the count lags and must settle.
#[test]
fn catches_leaked_tokio_spawn_multi_thread() {
    let leak = Harness::multi_thread(2)
        .try_run(|_scope| async {
            for _ in 0..3 {
                tokio::spawn(std::future::pending::<()>());
            }
            // Short tasks that end on their own are not leaks, even if the count lags.
            for _ in 0..50 {
                tokio::spawn(async {});
            }
        })
        .expect_err("the leaked tokio tasks are found");
    assert_eq!(leak.untracked, 3);
}

// Asserts: a tracked task the test forgot to shut down is named in the failure.
#[test]
fn names_forgotten_tracked_tasks() {
    let leak = Harness::current_thread()
        .start_paused(true)
        .try_run(|scope| async move {
            let cache = scope.child("cache").expect("open");
            cache
                .spawn("refresher", std::future::pending::<()>())
                .expect("open");
            // Forgotten, not dropped: dropping the handle would abort the task itself.
            std::mem::forget(cache);
        })
        .expect_err("the forgotten task is found");
    assert_eq!(leak.tracked.names(), ["refresher"]);
    let message = leak.to_string();
    assert!(
        message.contains("refresher") && message.contains("test/cache"),
        "{message}"
    );
}

// Asserts: `run` panics with the leak's description, so an ordinary `#[test]` fails.
#[test]
fn run_panics_on_a_leak() {
    let panic = std::panic::catch_unwind(|| {
        taskward::testing::run(|_scope| async {
            tokio::spawn(std::future::pending::<()>());
        });
    })
    .expect_err("run must panic");
    let message = panic
        .downcast_ref::<String>()
        .expect("panic message is a String");
    assert!(message.contains("untracked"), "{message}");
}

// Asserts: a body that cleans up passes and returns its value.
#[test]
fn clean_body_passes() {
    let value = Harness::multi_thread(2).run(|scope| async move {
        let h = scope
            .spawn("work", async { Ok::<_, std::io::Error>(5) })
            .expect("open");
        let v = h.await.expect("joined").expect("ok");
        assert!(scope.shutdown(Duration::from_secs(1)).await.is_clean());
        v
    });
    assert_eq!(value, 5);
}

// Asserts: a child scope of the test's scope dropped with a live task fails the test,
// naming the task (before, the drop aborted it with a `tracing` warning only, and the
// test passed).
#[test]
fn catches_a_child_scope_dropped_with_a_live_task() {
    let leak = Harness::current_thread()
        .start_paused(true)
        .try_run(|scope| async move {
            let cache = scope.child("cache").expect("open");
            cache
                .spawn("refresher", std::future::pending::<()>())
                .expect("open");
            drop(cache);
        })
        .expect_err("the abandoned task is found");
    assert_eq!(leak.abandoned.len(), 1, "{leak}");
    assert!(
        leak.abandoned[0].starts_with("refresher (test/cache, spawned at"),
        "{leak}"
    );
    assert!(leak.to_string().contains("refresher (test/cache"), "{leak}");
}

/// Runs a body that leaves a `spawn_blocking` closure running, and checks the harness
/// reports it; the closure is let go afterwards, so no thread outlives the test.
fn catches_running_spawn_blocking(harness: Harness) {
    let (release, held) = std::sync::mpsc::channel::<()>();
    let leak = harness
        .try_run(|_scope| async move {
            let (entered, started) = tokio::sync::oneshot::channel();
            drop(tokio::task::spawn_blocking(move || {
                let _ = entered.send(());
                // Patience only: the test lets it go as soon as it has judged.
                let _ = held.recv_timeout(Duration::from_secs(60));
            }));
            started.await.expect("the blocking closure started");
        })
        .expect_err("the running blocking closure is found");
    let _ = release.send(());
    assert_eq!(leak.blocking, 1, "{leak}");
    assert!(leak.to_string().contains("1 spawn_blocking"), "{leak}");
}

// Asserts: `spawn_blocking` work still running when the body returns fails the test
// (before, the harness did not see it, and dropping the runtime waited for it).
#[test]
fn catches_running_spawn_blocking_current_thread() {
    catches_running_spawn_blocking(Harness::current_thread());
}

// Asserts: the same on a multi-thread runtime, whose workers are pool threads too.
#[test]
fn catches_running_spawn_blocking_multi_thread() {
    catches_running_spawn_blocking(Harness::multi_thread(2));
}

// Asserts: blocking work that finished, and tasks that ended, are not leaks.
#[test]
fn finished_blocking_work_passes() {
    for harness in [Harness::current_thread(), Harness::multi_thread(2)] {
        harness.run(|scope| async move {
            let sum = tokio::task::spawn_blocking(|| (1..=10).sum::<u32>())
                .await
                .expect("joined");
            assert_eq!(sum, 55);
            scope
                .spawn("work", async {})
                .expect("open")
                .await
                .expect("joined");
            assert!(scope.shutdown(Duration::from_secs(1)).await.is_clean());
        });
    }
}

// Asserts: a test of the drop itself can allow it, and still has its other leaks caught.
#[test]
fn dropped_scopes_can_be_allowed() {
    Harness::current_thread()
        .start_paused(true)
        .allow_dropped_scopes()
        .run(|scope| async move {
            let cache = scope.child("cache").expect("open");
            cache
                .spawn("refresher", std::future::pending::<()>())
                .expect("open");
            drop(cache);
        });
    let leak = Harness::current_thread()
        .allow_dropped_scopes()
        .try_run(|_scope| async {
            tokio::spawn(std::future::pending::<()>());
        })
        .expect_err("other leaks are still found");
    assert_eq!(leak.untracked, 1);
}
