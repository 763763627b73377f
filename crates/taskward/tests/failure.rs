//! Failure policies: log (errors and panics named, never fatal), restart with backoff up to
//! an intensity, escalate.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Logs;
use taskward::testing::Harness;
use taskward::{FailurePolicy, JoinError, Phase, RestartPolicy, TaskOutcome, TaskState};
use tokio::time::Instant;

const EXPLODE_LINE: u32 = line!() + 2;
async fn explode(code: u32) {
    panic!("invariant broken: {code}")
}

async fn corrupt_page() {
    panic!("corrupt page")
}

fn paused() -> Harness {
    Harness::current_thread().start_paused(true)
}

// Asserts: a panicking task is logged with its name, spawn site, message and panic
// location; a sibling keeps running and finishes its work after the panic.
#[test]
fn panic_is_logged_with_name_and_site_and_siblings_keep_running() {
    let (logs, _guard) = Logs::capture();
    paused().run(|app| async move {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let sibling = app
            .spawn("sibling", async move {
                rx.await.map_err(|_| "sender dropped")?;
                Ok::<_, &str>("carried on")
            })
            .expect("open");
        let doomed = app.spawn("doomed", explode(7)).expect("open");

        assert_eq!(
            doomed.await,
            Err(JoinError::Panicked("invariant broken: 7".into()))
        );
        tx.send(()).expect("sibling is still waiting");
        assert_eq!(sibling.await, Ok(Ok("carried on")));

        let report = app.shutdown(Duration::from_secs(1)).await;
        assert_eq!(report.counts.panicked, 1);
        assert_eq!(report.counts.completed, 1);
        let row = &report.tasks[0];
        assert_eq!(
            (row.name.as_str(), row.outcome),
            ("doomed", TaskOutcome::Panicked)
        );
        let detail = row.detail.as_deref().expect("panic detail");
        assert!(detail.contains("invariant broken: 7"), "{detail}");
        assert!(
            detail.contains(&format!("{}:{EXPLODE_LINE}:", file!())),
            "panic location in {detail}"
        );
    });
    let lines = logs.lines_with("task panicked");
    assert_eq!(lines.len(), 1, "{}", logs.text());
    for needle in ["doomed", "invariant broken: 7", "spawned_at=", file!()] {
        assert!(
            lines[0].contains(needle),
            "`{needle}` missing from {}",
            lines[0]
        );
    }
}

// Asserts: an `Err` output is a failure: logged with name and error, listed in the report,
// and returned to whoever awaits the handle.
#[test]
fn error_output_is_logged_and_reported() {
    let (logs, _guard) = Logs::capture();
    paused().run(|app| async move {
        let out = app
            .spawn("loader", async {
                Err::<(), _>(anyhow::anyhow!("disk full").context("loading items"))
            })
            .expect("open")
            .await;
        assert!(matches!(out, Ok(Err(_))));
        let report = app.shutdown(Duration::from_secs(1)).await;
        assert_eq!(report.counts.failed, 1);
        assert_eq!(
            report.tasks[0].detail.as_deref(),
            Some("loading items: disk full")
        );
        assert!(!report.is_clean());
    });
    let lines = logs.lines_with("task failed");
    assert_eq!(lines.len(), 1, "logs:\n{}", logs.text());
    assert!(lines[0].contains("loader") && lines[0].contains("loading items: disk full"));
}

// Asserts: a restarting task is started again after 100, 200, 400 ms (paused time), then,
// past its intensity, escalates: its scope is cancelled and the report names the cause.
#[test]
fn restart_backs_off_then_escalates_past_intensity() {
    paused().run(|app| async move {
        let starts = Arc::new(Mutex::new(Vec::new()));
        let seen = starts.clone();
        let policy = RestartPolicy::default()
            .backoff(Duration::from_millis(100), Duration::from_secs(10))
            .intensity(3, Duration::from_secs(60));
        app.task("flaky")
            .restart(policy)
            .spawn(move |_ctx| {
                seen.lock().expect("lock").push(Instant::now());
                async { Err::<(), _>("connection refused") }
            })
            .expect("open");

        app.cancelled().await;

        let starts = starts.lock().expect("lock").clone();
        let gaps: Vec<_> = starts.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(
            gaps,
            [100, 200, 400].map(Duration::from_millis),
            "one first attempt and three restarts with doubling delays"
        );
        let report = app.shutdown(Duration::from_secs(1)).await;
        let cause = report.cause.as_ref().expect("escalated");
        assert_eq!(cause.task, "flaky");
        assert!(
            cause.reason.contains("restart intensity exceeded"),
            "{}",
            cause.reason
        );
        assert!(
            cause.reason.contains("connection refused"),
            "{}",
            cause.reason
        );
        assert_eq!(report.tasks[0].restarts, 3);
        assert_eq!(report.counts.failed, 1, "one task, however many attempts");
    });
}

// Asserts: a restarting task is visible as `restarting` during its backoff, and a
// shutdown during the backoff ends it without another attempt.
#[test]
fn shutdown_during_backoff_stops_restarts() {
    paused().run(|app| async move {
        let attempts = Arc::new(Mutex::new(0));
        let seen = attempts.clone();
        app.task("flaky")
            .restart(
                RestartPolicy::default().backoff(Duration::from_secs(30), Duration::from_secs(30)),
            )
            .spawn(move |_ctx| {
                *seen.lock().expect("lock") += 1;
                async { Err::<(), _>("boom") }
            })
            .expect("open");
        tokio::task::yield_now().await;
        let snapshot = app.snapshot();
        assert_eq!(snapshot.tasks[0].state, TaskState::Restarting);
        assert_eq!(snapshot.tasks[0].restarts, 1);

        let report = app.shutdown(Duration::from_secs(1)).await;
        assert_eq!(*attempts.lock().expect("lock"), 1);
        assert_eq!(report.phase, Phase::Grace);
        assert_eq!(report.counts.failed, 1);
        assert!(report.cause.is_none());
    });
}

// Asserts: a restarting task that recovers returns its success, with no escalation.
#[test]
fn restart_recovers() {
    paused().run(|app| async move {
        let attempts = Arc::new(Mutex::new(0u32));
        let seen = attempts.clone();
        let task = app
            .task("eventually")
            .restart(RestartPolicy::default())
            .spawn(move |_ctx| {
                let mut n = seen.lock().expect("lock");
                *n += 1;
                let ok = *n >= 3;
                async move { if ok { Ok(()) } else { Err("not yet") } }
            })
            .expect("open");
        assert_eq!(task.await, Ok(Ok(())));
        let report = app.shutdown(Duration::from_secs(1)).await;
        assert!(report.is_clean(), "{report}");
        assert_eq!(report.counts.completed, 1);
    });
}

// Asserts: an escalating failure shuts the owning scope down: its siblings see
// cancellation, the report carries the cause; the parent scope is not cancelled.
#[test]
fn escalate_shuts_down_the_owning_scope() {
    paused().run(|app| async move {
        let db = app.child("db").expect("open");
        let sibling = db
            .task("pool")
            .spawn_with(|ctx| async move { ctx.cancelled().await })
            .expect("open");
        db.task("migrate")
            .on_failure(FailurePolicy::Escalate)
            .spawn(async { Err::<(), _>("schema version 7 is newer than this binary") })
            .expect("open");

        sibling.await.expect("the sibling stops cooperatively");
        assert!(db.is_cancelled());
        assert!(!app.is_cancelled(), "escalation stops at the owning scope");

        let report = db.shutdown(Duration::from_secs(1)).await;
        let cause = report.cause.as_ref().expect("cause");
        assert_eq!(
            (cause.task.as_str(), cause.scope.as_str()),
            ("migrate", "test/db")
        );
        assert!(cause.reason.contains("schema version 7"));
        assert_eq!(db.escalation().as_ref(), Some(cause));
        assert!(
            report.to_string().contains("escalated by task `migrate`"),
            "{report}"
        );
        let _ = app.shutdown(Duration::ZERO).await;
    });
}

// Asserts: a panic under the escalate policy escalates too.
#[test]
fn escalating_panic_cancels_scope() {
    paused().run(|app| async move {
        app.task("checker")
            .on_failure(FailurePolicy::Escalate)
            .spawn(corrupt_page())
            .expect("open");
        app.cancelled().await;
        let report = app.shutdown(Duration::from_secs(1)).await;
        assert!(report.cause.expect("cause").reason.contains("corrupt page"));
        assert_eq!(report.counts.panicked, 1);
    });
}

// Asserts: a restart factory that panics is a failed attempt: restarted, then reported as
// panicked (not as a mysterious abort).
#[test]
fn panicking_factory_is_a_failed_attempt() {
    paused().run(|app| async move {
        let task = app
            .task("builder")
            .restart(
                RestartPolicy::default()
                    .backoff(Duration::from_millis(10), Duration::from_millis(10))
                    .intensity(2, Duration::from_secs(60)),
            )
            .spawn(|_ctx| -> std::future::Ready<()> { panic!("no config") })
            .expect("open");
        assert_eq!(task.await, Err(JoinError::Panicked("no config".into())));
        let report = app.shutdown(Duration::from_secs(1)).await;
        assert_eq!(report.counts.panicked, 1, "{report}");
        assert_eq!(report.counts.aborted, 0, "{report}");
        assert_eq!(report.tasks[0].restarts, 2);
    });
}

// Asserts: a `spawn_with` closure that panics reaches its caller, and the report names
// the task as panicked while being built.
#[test]
fn panicking_spawn_with_closure_is_reported() {
    paused().run(|app| async move {
        let scope = app.clone();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _ = scope
                .task("half-built")
                .spawn_with(|_ctx| -> std::future::Ready<()> { panic!("bad argument") });
        }));
        assert!(caught.is_err(), "the panic reaches the caller");
        let report = app.shutdown(Duration::from_secs(1)).await;
        assert_eq!(report.counts.panicked, 1, "{report}");
        let detail = report.tasks[0].detail.as_deref().unwrap_or_default();
        assert!(detail.contains("while building the task"), "{detail}");
    });
}

// Asserts: an escalation shuts its scope down by itself: a task there that ignores
// cancellation is aborted after the escalation deadline even though nobody calls
// `shutdown`, and the stored report carries the cause.
#[test]
fn escalation_runs_a_shutdown_of_its_own() {
    paused().run(|app| async move {
        let db = app.child("db").expect("open");
        db.spawn("stubborn", std::future::pending::<()>())
            .expect("open");
        db.task("migrate")
            .on_failure(FailurePolicy::Escalate)
            .spawn(async { Err::<(), _>("bad schema") })
            .expect("open");
        db.wait().await;
        let report = db.shutdown(Duration::ZERO).await;
        assert_eq!(report.counts.aborted, 1, "{report}");
        assert_eq!(report.cause.expect("cause").task, "migrate");
        assert_eq!(
            report.elapsed,
            taskward::ShutdownPolicy::ESCALATION_DEADLINE,
            "the escalation's own deadline"
        );
        let _ = app.shutdown(Duration::ZERO).await;
    });
}
