//! A task on its own: cancelled alone, its result not nested, its context wherever it was
//! spawned from, its id and name printed in columns, outputs that need no wrapping.

use std::convert::Infallible;
use std::time::Duration;

use taskward::testing::Harness;
use taskward::{JoinError, TaskError, TaskName, TaskOutcome};

fn paused() -> Harness {
    Harness::current_thread().start_paused(true)
}

// Asserts: `TaskHandle::cancel` stops one cooperative task: its `cancelled()` completes,
// its token is cancelled, it counts as cancelled; its sibling and its scope carry on; a
// second call says it was already asked.
#[test]
fn handle_cancel_stops_one_task() {
    paused().run(|app| async move {
        let (token_tx, token_rx) = tokio::sync::oneshot::channel();
        let one = app
            .task("one")
            .spawn_with(|ctx| async move {
                let _ = token_tx.send(ctx.token());
                ctx.cancelled().await;
                Ok::<_, Infallible>(ctx.is_cancelled())
            })
            .expect("open");
        let sibling = app
            .task("sibling")
            .spawn_with(|ctx| async move { ctx.cancelled().await })
            .expect("open");
        let token = token_rx.await.expect("the task sent its token");
        assert!(!token.is_cancelled());

        assert!(one.cancel(), "live and not asked before");
        assert!(!one.cancel(), "asked already");
        assert_eq!(one.flatten().await, Ok(true), "it saw its own cancellation");
        assert!(token.is_cancelled(), "its tokens are cancelled too");
        assert!(!app.is_cancelled(), "the scope carries on");
        assert!(!sibling.is_finished(), "the sibling carries on");
        assert_eq!(app.snapshot().names(), ["sibling"]);

        let report = app.shutdown(Duration::from_secs(1)).await;
        assert_eq!(report.counts.cancelled, 2, "{report}");
        assert_eq!(report.counts.completed, 0, "{report}");
    });
}

// Asserts: a task waiting in `cancelled()` inside a select is woken by `cancel`, and a
// task that ignores it is unaffected until its scope stops it.
#[test]
fn handle_cancel_wakes_a_waiting_task_and_spares_one_that_ignores_it() {
    paused().run(|app| async move {
        let waiting = app
            .task("waiting")
            .spawn_with(|ctx| async move {
                Ok::<_, Infallible>(tokio::select! {
                    () = ctx.cancelled() => "cancelled",
                    () = tokio::time::sleep(Duration::from_secs(3600)) => "slept",
                })
            })
            .expect("open");
        let deaf = app
            .spawn("deaf", std::future::pending::<()>())
            .expect("open");
        tokio::task::yield_now().await;
        assert!(waiting.cancel());
        assert!(deaf.cancel());
        assert_eq!(waiting.flatten().await, Ok("cancelled"));
        let report = app.shutdown(Duration::from_secs(1)).await;
        assert_eq!(report.counts.aborted, 1, "{report}");
        assert_eq!(report.tasks[0].name, "deaf");
    });
}

// Asserts: `flatten` gives a `Result` task's value or error unnested, and a panic as a
// join error.
#[test]
fn flatten_does_not_nest() {
    paused().run(|app| async move {
        let ok = app
            .spawn("ok", async { Ok::<u32, String>(1000) })
            .expect("open");
        assert_eq!(ok.flatten().await, Ok(1000));
        let failed = app
            .spawn("failed", async { Err::<u32, _>("disk full") })
            .expect("open");
        assert_eq!(failed.flatten().await, Err(TaskError::Failed("disk full")));
        let panicked = app
            .spawn("panicked", async {
                if true {
                    panic!("boom");
                }
                Ok::<u32, String>(1)
            })
            .expect("open");
        assert_eq!(
            panicked.flatten().await,
            Err(TaskError::Join(JoinError::Panicked("boom".into())))
        );
        let _ = app.shutdown(Duration::ZERO).await;
    });
}

// Asserts: a future spawned with the ambient `taskward::spawn_with` gets its own context:
// it is owned by the caller's scope, and stops when that scope asks it to.
#[test]
fn ambient_spawn_with_gets_a_context() {
    paused().run(|app| async move {
        let (tx, rx) = tokio::sync::oneshot::channel();
        app.spawn("caller", async move {
            taskward::spawn_with("helper", |ctx| async move {
                let _ = tx.send(ctx.scope_path().to_owned());
                ctx.cancelled().await;
            })
            .map(drop)
        })
        .expect("open");
        assert_eq!(rx.await.expect("the helper ran"), "test");
        let report = app.shutdown(Duration::from_secs(1)).await;
        assert_eq!(report.counts.cancelled, 1, "{report}");
        assert_eq!(report.counts.aborted, 0, "{report}");
        assert!(
            taskward::spawn_with("outside", |_ctx| async {}).is_err(),
            "no ambient scope outside a tracked task"
        );
    });
}

// Asserts: `TaskId` and `TaskName` honour width and alignment, so tables line up.
#[test]
fn id_and_name_pad_in_columns() {
    paused().run(|app| async move {
        let handle = app.spawn("t", async {}).expect("open");
        let id = handle.id();
        assert_eq!(format!("{id:>8}|"), format!("{:>8}|", id.as_u64()));
        assert_eq!(format!("{id:<8}|"), format!("{:<8}|", id.as_u64()));
        assert_eq!(format!("{:<6}|", TaskName::from("ab")), "ab    |");
        assert_eq!(format!("{:>6}|", TaskName::from("ab")), "    ab|");
        handle.await.expect("ran");
        let _ = app.shutdown(Duration::ZERO).await;
    });
}

// Asserts: a task typed as never returning (`Infallible`) is accepted, and is stopped like
// any other.
#[test]
fn infallible_output_is_accepted() {
    paused().run(|app| async move {
        app.spawn("forever", std::future::pending::<Infallible>())
            .expect("open");
        let report = app.shutdown(Duration::from_secs(1)).await;
        assert_eq!(report.tasks_with(TaskOutcome::Aborted).count(), 1);
    });
}
