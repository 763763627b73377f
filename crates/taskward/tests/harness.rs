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
