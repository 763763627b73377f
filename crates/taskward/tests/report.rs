//! What a report names: every straggler before anything else, a bounded window of recent
//! failures, one escalation per scope, the failed attempts of restarted tasks.

mod common;

use std::time::Duration;

use common::Logs;
use taskward::testing::Harness;
use taskward::{FailurePolicy, RestartPolicy, ShutdownReport, TaskOutcome};

fn paused() -> Harness {
    Harness::current_thread().start_paused(true)
}

// Asserts: the smallest case. 256 tasks fail and end, then one task never stops:
// the shutdown aborts it and the report names it (before the fix, the 256 failures had
// taken every slot and no row named it).
#[test]
fn straggler_is_named_after_256_failures() {
    paused().run(|app| async move {
        for n in 0..ShutdownReport::MAX_LISTED {
            app.spawn(format!("failing-{n}"), async { Err::<(), _>("no") })
                .expect("open");
        }
        app.wait().await;
        app.spawn("straggler", std::future::pending::<()>())
            .expect("open");

        let report = app.shutdown(Duration::from_millis(200)).await;

        assert_eq!(report.counts.aborted, 1, "{report}");
        assert_eq!(report.counts.failed, ShutdownReport::MAX_LISTED as u64);
        let named: Vec<_> = report
            .tasks
            .iter()
            .filter(|t| t.outcome == TaskOutcome::Aborted)
            .map(|t| t.name.as_str())
            .collect();
        assert_eq!(named, ["straggler"], "{report}");
        assert_eq!(report.tasks[0].name, "straggler", "stragglers come first");
    });
}

// Asserts: a service that has seen thousands of failures (errors, panics, tasks aborted by
// their handle, in two scopes) still names every one of its 300 stragglers, in both
// scopes; the past failures are counted, and listed only as a window of the most recent
// ones, newest first, the rest counted as omitted.
#[test]
fn every_straggler_is_named_after_thousands_of_failures() {
    const FAILURES: usize = 3_000;
    paused().run(|app| async move {
        let http = app.child("http").expect("open");
        for n in 0..FAILURES {
            let scope = if n % 2 == 0 { &app } else { &http };
            let name = format!("failure-{n}");
            match n % 3 {
                0 => drop(scope.spawn(name, async { Err::<(), _>("refused") })),
                1 => drop(scope.spawn(name, async { panic!("bad state") })),
                _ => scope
                    .spawn(name, std::future::pending::<()>())
                    .expect("open")
                    .abort(),
            }
            // One at a time, so that "most recent" has a meaning under paused time.
            scope.wait().await;
            tokio::time::advance(Duration::from_millis(1)).await;
        }
        let mut expected = Vec::new();
        for n in 0..300 {
            let scope = if n % 3 == 0 { &http } else { &app };
            let name = format!("straggler-{n}");
            scope
                .spawn(name.clone(), std::future::pending::<()>())
                .expect("open");
            expected.push(name);
        }

        let report = app.shutdown(Duration::from_secs(1)).await;

        assert_eq!(report.counts.aborted, 300 + FAILURES as u64 / 3, "{report}");
        let mut named: Vec<_> = report
            .straggler_tasks()
            .iter()
            .map(|t| t.name.clone())
            .collect();
        named.sort();
        expected.sort();
        assert_eq!(named, expected, "every straggler, and only them");
        assert!(
            report
                .straggler_tasks()
                .iter()
                .all(|t| t.outcome == TaskOutcome::Aborted)
        );
        let recent = report.recent_failures();
        assert_eq!(recent.len(), ShutdownReport::MAX_LISTED);
        assert_eq!(
            recent[0].name,
            format!("failure-{}", FAILURES - 1),
            "newest first"
        );
        assert_eq!(
            report.omitted,
            (FAILURES - ShutdownReport::MAX_LISTED) as u64
        );
        let text = report.to_string();
        let separator = text
            .find("recent failures, newest first")
            .expect("the table separates the recent failures");
        assert!(
            text.find("straggler-").is_some_and(|at| at < separator),
            "stragglers are printed first"
        );
    });
}

// Asserts: the log line naming an aborted task is a WARN, with its name and spawn site.
#[test]
fn aborted_task_is_logged_at_warn() {
    let (logs, _guard) = Logs::capture();
    paused().run(|app| async move {
        app.spawn("stubborn", std::future::pending::<()>())
            .expect("open");
        let report = app.shutdown(Duration::from_secs(1)).await;
        assert_eq!(report.counts.aborted, 1);
    });
    let lines = logs.lines_with("task aborted");
    assert_eq!(lines.len(), 1, "{}", logs.text());
    assert!(lines[0].contains("WARN"), "{}", lines[0]);
    assert!(lines[0].contains("stubborn"), "{}", lines[0]);
    assert!(lines[0].contains("spawned_at="), "{}", lines[0]);
}

// Asserts: two scopes that escalated each keep their cause in the parent's report, a
// dropped one included (before, the report carried only the first cause found).
#[test]
fn one_escalation_per_scope_is_kept() {
    paused().run(|app| async move {
        for name in ["db", "cache"] {
            let scope = app.child(name).expect("open");
            scope
                .task("init")
                .on_failure(FailurePolicy::Escalate)
                .spawn(async move { Err::<(), _>(format!("{name} unavailable")) })
                .expect("open");
            scope.cancelled().await;
            let report = scope.shutdown(Duration::ZERO).await;
            assert_eq!(report.escalations.len(), 1, "{report}");
            if name == "cache" {
                // Dropped: its cause must survive in its parent.
                drop(scope);
            } else {
                std::mem::forget(scope.clone());
                drop(scope);
            }
        }

        let report = app.shutdown(Duration::from_secs(1)).await;

        let mut reasons: Vec<_> = report
            .escalations
            .iter()
            .map(|e| (e.scope.as_str(), e.reason.as_str()))
            .collect();
        reasons.sort_unstable();
        assert_eq!(
            reasons,
            [
                ("test/cache", "cache unavailable"),
                ("test/db", "db unavailable")
            ],
            "{report}"
        );
        assert_eq!(report.cause.as_ref(), report.escalations.first());
        let text = report.to_string();
        assert!(
            text.contains("db unavailable") && text.contains("cache unavailable"),
            "{text}"
        );
    });
}

// Asserts: a restarted task's failures are in the report, one row per restart with the
// failure, and counted; the task itself recovered, so the report stays clean.
#[test]
fn restarted_failures_are_listed() {
    paused().run(|app| async move {
        let mut attempt = 0;
        let task = app
            .task("flaky")
            .restart(RestartPolicy::default())
            .spawn(move |_ctx| {
                attempt += 1;
                let now = attempt;
                async move {
                    if now < 3 {
                        Err(format!("attempt {now} refused"))
                    } else {
                        Ok(())
                    }
                }
            })
            .expect("open");
        assert_eq!(task.await, Ok(Ok(())));

        let report = app.shutdown(Duration::from_secs(1)).await;

        assert_eq!(report.counts.restarted, 2, "{report}");
        assert_eq!(report.counts.completed, 1);
        let rows: Vec<_> = report
            .tasks_with(TaskOutcome::Restarted)
            .map(|t| {
                (
                    t.name.as_str(),
                    t.restarts,
                    t.detail.as_deref().unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("flaky", 2, "failed: attempt 2 refused"),
                ("flaky", 1, "failed: attempt 1 refused")
            ]
        );
        assert!(report.is_clean(), "it recovered: {report}");
    });
}
