//! Shutdown in phases: signal, grace, abort, stuck; the deadline; repeated requests.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::DropFlag;
use taskward::testing::Harness;
use taskward::{Phase, ShutdownPolicy, SpawnError, TaskOutcome, TaskState};
use tokio_test::{assert_pending, assert_ready};

fn paused() -> Harness {
    Harness::current_thread().start_paused(true)
}

// Asserts: tasks that watch their context stop in the grace phase and count as cancelled.
#[test]
fn cooperative_tasks_stop_in_grace() {
    paused().run(|app| async move {
        for n in 0..3 {
            app.task(format!("worker-{n}"))
                .spawn_with(|ctx| async move { ctx.cancelled().await })
                .expect("app is open");
        }
        let report = app.shutdown(Duration::from_secs(10)).await;
        assert_eq!(report.phase, Phase::Grace);
        assert_eq!(report.counts.cancelled, 3);
        assert!(report.is_clean(), "{report}");
        assert!(app.snapshot().is_empty());
    });
}

// Asserts: a task that ignores cancellation is aborted at the deadline, reported by name and
// spawn site, and its future is really dropped; before the shutdown it was live.
#[test]
fn task_ignoring_cancellation_is_aborted_and_named() {
    paused().run(|app| async move {
        let dropped = DropFlag::default();
        let probe = dropped.probe();
        let line = line!() + 1;
        app.spawn("stubborn", async move {
            let _probe = probe;
            std::future::pending::<()>().await;
        })
        .expect("app is open");
        assert_eq!(app.snapshot().names(), ["stubborn"], "live before shutdown");

        let report = app.shutdown(Duration::from_secs(5)).await;

        assert_eq!(report.phase, Phase::Abort);
        assert_eq!(report.counts.aborted, 1);
        let task = &report.tasks[0];
        assert_eq!(
            (task.name.as_str(), task.outcome),
            ("stubborn", TaskOutcome::Aborted)
        );
        assert!(
            task.spawned_at.starts_with(&format!("{}:{line}:", file!())),
            "spawn site {} should be this file, line {line}",
            task.spawned_at
        );
        assert!(
            dropped.dropped(),
            "the aborted future must be dropped, not left running"
        );
        // Paused time: the grace period lasted exactly the deadline.
        assert_eq!(report.elapsed, Duration::from_secs(5));
    });
}

// Asserts: a task blocking its worker thread forever is reported stuck, and shutdown still
// returns (the test would hang otherwise).
#[test]
fn blocking_task_is_reported_stuck_and_shutdown_returns() {
    Harness::multi_thread(2).run(|app| async move {
        let release = Arc::new(AtomicBool::new(false));
        let entered = Arc::new(tokio::sync::Notify::new());
        let (r, e) = (release.clone(), entered.clone());
        app.spawn("blocker", async move {
            e.notify_one();
            // Never yields: neither cancellation nor abort can reach it.
            while !r.load(Ordering::SeqCst) {
                std::hint::spin_loop();
            }
        })
        .expect("app is open");
        entered.notified().await;

        let policy =
            ShutdownPolicy::new(Duration::from_millis(50)).abort_wait(Duration::from_millis(50));
        let report = app.shutdown_with(policy).await;

        assert_eq!(report.phase, Phase::Stuck, "{report}");
        assert_eq!(report.counts.stuck, 1);
        let stuck: Vec<_> = report.tasks_with(TaskOutcome::Stuck).collect();
        assert_eq!(stuck.len(), 1);
        assert_eq!(stuck[0].name, "blocker");
        assert_eq!(app.snapshot().tasks[0].state, TaskState::Stuck);

        // Let the thread go so the runtime can stop; the abort then lands.
        release.store(true, Ordering::SeqCst);
        app.wait().await;
    });
}

// Asserts: a zero deadline aborts at once instead of waiting.
#[test]
fn zero_deadline_means_abort_now() {
    paused().run(|app| async move {
        app.spawn("stubborn", std::future::pending::<()>())
            .expect("open");
        app.spawn("done", async {}).expect("open");
        // One yield lets `done` run to completion before the shutdown starts.
        tokio::task::yield_now().await;
        let report = app.shutdown(Duration::ZERO).await;
        assert_eq!(report.phase, Phase::Abort);
        assert_eq!(report.counts.aborted, 1);
        assert_eq!(report.counts.completed, 1);
        assert_eq!(report.elapsed, Duration::ZERO, "no grace was given");
    });
}

// Asserts: `abort_now` while a shutdown waits out its grace skips it to the abort phase
// (the second Ctrl-C), and both requests get the same report.
#[test]
fn abort_now_skips_a_running_shutdown_to_abort() {
    paused().run(|app| async move {
        app.spawn("stubborn", std::future::pending::<()>())
            .expect("open");
        let mut first = tokio_test::task::spawn(app.shutdown(Duration::from_secs(60)));
        assert_pending!(first.poll());
        assert!(app.is_cancelled(), "the first request signalled at once");

        let second = app.abort_now().await;

        let first = assert_ready!(first.poll());
        assert_eq!(first, second);
        assert_eq!(second.phase, Phase::Abort);
        assert_eq!(
            second.elapsed,
            Duration::ZERO,
            "no grace after the second request"
        );
    });
}

// Asserts: a second plain `shutdown` joins the running one: it does not cut the grace
// short, and it gets the same report.
#[test]
fn second_shutdown_call_joins_without_aborting() {
    paused().run(|app| async move {
        app.task("slow-drain")
            .spawn_with(|ctx| async move {
                ctx.cancelled().await;
                tokio::time::sleep(Duration::from_secs(3)).await;
            })
            .expect("open");
        let (a, b) = tokio::join!(
            app.shutdown(Duration::from_secs(10)),
            app.shutdown(Duration::ZERO)
        );
        assert_eq!(a, b);
        assert_eq!(a.phase, Phase::Grace, "{a}");
        assert_eq!(a.counts.cancelled, 1);
        assert_eq!(a.elapsed, Duration::from_secs(3));
    });
}

// Asserts: `Duration::MAX` means "no deadline", not an overflow panic.
#[test]
fn unbounded_deadline_is_accepted() {
    paused().run(|app| async move {
        app.task("worker")
            .spawn_with(|ctx| async move { ctx.cancelled().await })
            .expect("open");
        let report = app.shutdown(Duration::MAX).await;
        assert!(report.is_clean(), "{report}");
    });
}

// Asserts: the shutdown runs on a task of its own: dropping its future and every scope
// handle does not detach a task that ignores cancellation; it is aborted at the deadline
// and the hooks still run.
#[test]
fn dropped_shutdown_still_completes() {
    paused().run(|app| async move {
        let scope = taskward::Scope::root("fire-and-forget");
        let dropped = DropFlag::default();
        let probe = dropped.probe();
        scope
            .spawn("stubborn", async move {
                let _probe = probe;
                std::future::pending::<()>().await;
            })
            .expect("open");
        let (tx, rx) = tokio::sync::oneshot::channel();
        scope
            .on_shutdown("notify", move || async move {
                let _ = tx.send(());
            })
            .expect("open");
        drop(scope.shutdown(Duration::from_secs(5)));
        drop(scope);

        rx.await
            .expect("the hook ran although nobody awaited the shutdown");
        assert!(
            dropped.dropped(),
            "the stubborn task was aborted, not detached"
        );
        drop(app);
    });
}

// Asserts: a task may shut down the scope it belongs to: it is not waited for, aborted or
// counted, and the shutdown still runs its hooks and stores its report.
#[test]
fn a_task_can_shut_down_its_own_scope() {
    paused().run(|app| async move {
        let admin = app.clone();
        app.task("worker")
            .spawn_with(|ctx| async move { ctx.cancelled().await })
            .expect("open");
        app.on_shutdown("flush", || async {}).expect("open");
        let report = app
            .spawn("admin", async move {
                Ok::<_, std::convert::Infallible>(admin.shutdown(Duration::from_secs(5)).await)
            })
            .expect("open")
            .await
            .expect("the admin task was not aborted")
            .expect("infallible");
        assert_eq!(report.phase, Phase::Grace, "{report}");
        assert_eq!(
            report.counts.cancelled, 1,
            "the worker; the admin task is not counted"
        );
        assert_eq!(report.hooks.len(), 1);
        assert_eq!(
            app.shutdown(Duration::ZERO).await,
            report,
            "stored as the scope's report"
        );
    });
}

// Asserts: shutting down an already shut down scope returns the first report unchanged.
#[test]
fn shutting_down_twice_returns_the_first_report() {
    paused().run(|app| async move {
        app.task("worker")
            .spawn_with(|ctx| async move { ctx.cancelled().await })
            .expect("open");
        let first = app.shutdown(Duration::from_secs(1)).await;
        tokio::time::advance(Duration::from_secs(3)).await;
        let again = app.shutdown(Duration::ZERO).await;
        assert_eq!(first, again);
        assert_eq!(again.counts.cancelled, 1);
    });
}

// Asserts: a scope that is shutting down refuses tasks, children and hooks with an error
// naming it, and does not panic.
#[test]
fn shutting_down_scope_refuses_new_work() {
    paused().run(|app| async move {
        let http = app.child("http").expect("open");
        let _ = app.shutdown(Duration::from_secs(1)).await;

        let err = http.spawn("late", async {}).expect_err("closed");
        assert_eq!(
            err,
            SpawnError::ShuttingDown {
                scope: "test/http".into(),
                task: "late".into()
            }
        );
        assert!(err.to_string().contains("test/http"), "{err}");
        assert!(app.child("late-child").is_err());
        assert!(app.on_shutdown("late-hook", || async {}).is_err());
    });
}

// Asserts: the parent's shutdown stops the tasks of its children, and their report rows
// carry the child's path.
#[test]
fn parent_shutdown_covers_the_subtree() {
    paused().run(|app| async move {
        let http = app.child("http").expect("open");
        let conn = http.child("conn-1").expect("open");
        conn.task("reader")
            .spawn_with(|ctx| async move { ctx.cancelled().await })
            .expect("open");
        conn.spawn("writer", std::future::pending::<()>())
            .expect("open");
        assert_eq!(app.live_tasks(), 2);

        let report = app.shutdown(Duration::from_secs(1)).await;

        assert_eq!(report.counts.cancelled, 1);
        assert_eq!(report.counts.aborted, 1);
        assert_eq!(report.tasks[0].scope, "test/http/conn-1");
        assert_eq!(http.live_tasks(), 0);
    });
}

// Asserts: tasks dropped because their runtime shut down are counted aborted, not lost.
#[test]
fn runtime_drop_counts_tasks_as_aborted() {
    let app = taskward::Scope::root("orphaned");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        app.spawn("idle", std::future::pending::<()>())
            .expect("open");
    });
    assert_eq!(app.live_tasks(), 1);
    drop(runtime);
    assert_eq!(
        app.live_tasks(),
        0,
        "the runtime dropped the task and its guard counted it out"
    );
    let report = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(app.shutdown(Duration::ZERO));
    assert_eq!(report.counts.aborted, 1);
    assert_eq!(report.tasks[0].name, "idle");
}

/// Sleeps on its thread when dropped, as a value whose `Drop` flushes synchronously.
struct BlockingDrop(Duration);

impl Drop for BlockingDrop {
    fn drop(&mut self) {
        std::thread::sleep(self.0);
    }
}

/// Spawns `tasks` tasks that ignore cancellation and hold a [`BlockingDrop`] of `each`,
/// shuts them down, and checks that the shutdown returned by its deadline plus the
/// documented margin however long dropping them all takes.
fn shutdown_is_bounded_under_blocking_drops(harness: Harness, threads: u32) {
    const TASKS: u32 = 100;
    const EACH: Duration = Duration::from_millis(30);
    let deadline = Duration::from_millis(100);
    let abort_wait = Duration::from_millis(10);
    harness.run(|app| async move {
        for n in 0..TASKS {
            let held = BlockingDrop(EACH);
            app.spawn(format!("holder-{n}"), async move {
                let _held = held;
                std::future::pending::<()>().await;
            })
            .expect("open");
        }
        let policy = ShutdownPolicy::new(deadline).abort_wait(abort_wait);
        let started = std::time::Instant::now();
        let report = app.shutdown_with(policy).await;
        let elapsed = started.elapsed();

        // The documented bound: the deadline, plus ABORT_ROUNDS abort waits, plus on a
        // current-thread runtime the drop that was running.
        let bound = deadline + abort_wait * ShutdownPolicy::ABORT_ROUNDS + EACH;
        // Dropping every task takes this long on the runtime's threads; a shutdown that
        // waits for the drops cannot return before it. The test only asks that the
        // shutdown return well before that: halfway between the bound and it, generous
        // for a loaded machine, and still red when the drops are waited for.
        let all_drops = EACH * TASKS / threads;
        let patience = bound + (all_drops - bound) / 2;
        assert!(
            elapsed < patience,
            "shutdown took {elapsed:?}: over {patience:?} (bound {bound:?}, all drops \
             {all_drops:?})\n{report}"
        );
        assert!(
            report.counts.stuck > 0,
            "some tasks were still dropping: {report}"
        );
        assert_eq!(report.phase, Phase::Stuck);
        assert_eq!(
            report.counts.aborted + report.counts.stuck,
            u64::from(TASKS),
            "{report}"
        );
        assert_eq!(
            report.straggler_tasks().len(),
            TASKS as usize,
            "every straggler named"
        );
        // The rest finish dropping after the report; let them, so nothing is left.
        app.wait().await;
    });
}

// Asserts: on a current-thread runtime, where the drops run on the very thread that
// drives the shutdown, 100 tasks whose drops block 30 ms each do not hold the shutdown
// past its deadline plus the margin (before: it returned after all 3 s of drops).
#[test]
fn blocking_drops_do_not_hold_shutdown_current_thread() {
    shutdown_is_bounded_under_blocking_drops(Harness::current_thread(), 1);
}

// Asserts: the same on a multi-thread runtime with 2 workers, where the drops keep both
// workers busy (before: the abort wait's timer was not seen until the drops were done).
#[test]
fn blocking_drops_do_not_hold_shutdown_multi_thread() {
    shutdown_is_bounded_under_blocking_drops(Harness::multi_thread(2), 2);
}
