//! Shutdown hooks: once each, after the tasks stopped, in reverse order, inside the deadline.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use taskward::testing::Harness;
use taskward::{HookOutcome, ShutdownPolicy};

async fn close_closed_pool() {
    panic!("pool already closed")
}

fn paused() -> Harness {
    Harness::current_thread().start_paused(true)
}

type Journal = Arc<Mutex<Vec<String>>>;

fn note(journal: &Journal, line: impl Into<String>) {
    journal.lock().expect("journal lock").push(line.into());
}

// Asserts: hooks run after every task of the subtree has stopped, children's before their
// parent's, each scope's in reverse registration order, and each exactly once even when
// shutdown is requested again.
#[test]
fn hooks_run_once_in_reverse_order_after_tasks_stop() {
    paused().run(|app| async move {
        let journal = Journal::default();
        let db = app.child("db").expect("open");
        let j = journal.clone();
        db.task("writer")
            .spawn_with(move |ctx| async move {
                ctx.cancelled().await;
                // Still draining when cancelled: the hooks must wait for this.
                tokio::time::sleep(Duration::from_millis(300)).await;
                note(&j, "writer stopped");
            })
            .expect("open");
        let runs = Arc::new(AtomicU32::new(0));
        for (scope, name) in [
            (&app, "close-pool"),
            (&app, "flush-metrics"),
            (&db, "fsync"),
        ] {
            let (j, runs) = (journal.clone(), runs.clone());
            scope
                .on_shutdown(name, move || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    note(&j, name);
                })
                .expect("open");
        }

        let report = app.shutdown(Duration::from_secs(5)).await;
        let again = app.shutdown(Duration::from_secs(5)).await;

        assert_eq!(
            *journal.lock().expect("lock"),
            ["writer stopped", "fsync", "flush-metrics", "close-pool"]
        );
        assert_eq!(runs.load(Ordering::SeqCst), 3, "each hook ran once");
        let names: Vec<_> = report
            .hooks
            .iter()
            .map(|h| (h.scope.as_str(), h.name.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("test/db", "fsync"),
                ("test", "flush-metrics"),
                ("test", "close-pool")
            ]
        );
        assert!(
            report
                .hooks
                .iter()
                .all(|h| h.outcome == HookOutcome::Completed)
        );
        assert_eq!(report, again);
    });
}

// Asserts: a failing, a panicking and a hanging hook are each reported, none is fatal, the
// hooks after them still run, and the hanging one is cut at the deadline.
#[test]
fn bad_hooks_are_reported_not_fatal() {
    paused().run(|app| async move {
        let last_ran = Arc::new(AtomicBool::new(false));
        let flag = last_ran.clone();
        // Registration order is the reverse of the run order.
        app.on_shutdown(
            "last",
            move || async move { flag.store(true, Ordering::SeqCst) },
        )
        .expect("open");
        app.on_shutdown("hangs", std::future::pending::<()>)
            .expect("open");
        app.on_shutdown("panics", close_closed_pool).expect("open");
        app.on_shutdown("fails", || async { Err::<(), _>("flush: broken pipe") })
            .expect("open");

        let report = app.shutdown(Duration::from_secs(2)).await;

        let outcomes: Vec<_> = report
            .hooks
            .iter()
            .map(|h| (h.name.as_str(), h.outcome.clone()))
            .collect();
        assert_eq!(
            outcomes,
            [
                ("fails", HookOutcome::Failed("flush: broken pipe".into())),
                (
                    "panics",
                    HookOutcome::Panicked("pool already closed".into())
                ),
                ("hangs", HookOutcome::TimedOut),
                ("last", HookOutcome::Completed),
            ]
        );
        assert!(
            last_ran.load(Ordering::SeqCst),
            "a hook after the hanging one still ran"
        );
        assert_eq!(
            report.elapsed,
            Duration::from_secs(2),
            "the hanging hook was cut at the deadline"
        );
        assert!(!report.is_clean());
    });
}

// Asserts: `reserve_for_hooks` keeps time for hooks even when a task uses all its grace.
#[test]
fn reserve_for_hooks_ends_grace_early() {
    paused().run(|app| async move {
        app.spawn("stubborn", std::future::pending::<()>())
            .expect("open");
        app.on_shutdown("flush", || tokio::time::sleep(Duration::from_secs(3)))
            .expect("open");

        let policy =
            ShutdownPolicy::new(Duration::from_secs(10)).reserve_for_hooks(Duration::from_secs(4));
        let report = app.shutdown_with(policy).await;

        assert_eq!(report.counts.aborted, 1);
        assert_eq!(
            report.hooks[0].outcome,
            HookOutcome::Completed,
            "3 s of flushing fit in the 4 s reserve"
        );
        assert_eq!(
            report.elapsed,
            Duration::from_secs(9),
            "6 s grace, then 3 s of hook"
        );
    });
}

// Asserts: by default a quarter of the deadline is kept for hooks, so a hook still runs
// in full when a task uses up its grace.
#[test]
fn hooks_get_a_share_of_the_deadline_by_default() {
    paused().run(|app| async move {
        app.spawn("stubborn", std::future::pending::<()>())
            .expect("open");
        app.on_shutdown("flush", || tokio::time::sleep(Duration::from_secs(1)))
            .expect("open");
        let report = app.shutdown(Duration::from_secs(8)).await;
        assert_eq!(report.counts.aborted, 1);
        assert_eq!(report.hooks[0].outcome, HookOutcome::Completed, "{report}");
        assert_eq!(
            report.elapsed,
            Duration::from_secs(7),
            "6 s grace, then 1 s of hook"
        );
    });
}
