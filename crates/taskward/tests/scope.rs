//! Ownership: dropping a scope, snapshots, the ambient scope, task spans.

mod common;

use std::time::Duration;

use common::{DropFlag, Logs};
use taskward::testing::Harness;
use taskward::{Scope, SpawnError, TaskContext, TaskState};

fn paused() -> Harness {
    Harness::current_thread().start_paused(true)
}

// Asserts: dropping the last handle of a scope that still owns tasks aborts them (their
// futures are dropped) and logs exactly one warning naming each of them. The same tasks on
// plain `tokio::spawn` would still be alive: that is the leak this prevents.
#[test]
fn dropping_a_scope_aborts_its_tasks_with_one_warning() {
    let (logs, _guard) = Logs::capture();
    paused().run(|_test| async move {
        // Without taskward: dropping the JoinHandle detaches the task; it stays alive.
        let metrics = tokio::runtime::Handle::current().metrics();
        let detached = tokio::spawn(std::future::pending::<()>());
        let stop_detached = detached.abort_handle();
        drop(detached);
        tokio::task::yield_now().await;
        assert_eq!(
            metrics.num_alive_tasks(),
            1,
            "the detached task is still alive"
        );

        let scope = Scope::root("jobs");
        let child = scope.child("sub").expect("open");
        let (a, b) = (DropFlag::default(), DropFlag::default());
        let (pa, pb) = (a.probe(), b.probe());
        scope
            .spawn("poller", async move {
                let _p = pa;
                std::future::pending::<()>().await;
            })
            .expect("open");
        child
            .spawn("uploader", async move {
                let _p = pb;
                std::future::pending::<()>().await;
            })
            .expect("open");

        drop(child);
        // The aborts land when the runtime next runs the tasks.
        tokio::task::yield_now().await;
        assert!(
            b.dropped(),
            "the child's task was aborted with the child's last handle"
        );
        assert!(!a.dropped(), "the parent's task is untouched");

        drop(scope);
        tokio::task::yield_now().await;
        assert!(
            a.dropped(),
            "the root's task was aborted with the root's last handle"
        );
        assert_eq!(
            metrics.num_alive_tasks(),
            1,
            "only the detached tokio task is left"
        );
        stop_detached.abort();
    });
    let warnings = logs.lines_with("scope dropped without shutdown");
    assert_eq!(warnings.len(), 2, "one per dropped scope:\n{}", logs.text());
    assert!(
        warnings[0].contains("uploader (jobs/sub, spawned at"),
        "{}",
        warnings[0]
    );
    assert!(
        warnings[1].contains("poller (jobs, spawned at"),
        "{}",
        warnings[1]
    );
    assert!(
        warnings
            .iter()
            .all(|w| w.contains("WARN") && w.contains("count=1"))
    );
}

// Asserts: the drop warning names every task live when the scope was dropped, even one
// that would stop by itself as soon as it is cancelled: the names are collected before
// anything is cancelled. The cooperative task spins on another worker watching for the
// cancellation and ends as soon as it sees it. The scope's token has many child tokens,
// so the dropping thread, after marking the token cancelled, spends a while waking
// their (absent) waiters: with the names collected after the cancellation, the task had
// always ended by then and was missing from the warning.
#[test]
fn drop_warning_names_tasks_live_at_the_drop() {
    const ROUNDS: usize = 5;
    const CHILD_TOKENS: usize = 20_000;
    let (logs, _guard) = Logs::capture();
    Harness::multi_thread(2).run(|_test| async move {
        for round in 0..ROUNDS {
            let scope = Scope::root(format!("race-{round}"));
            let children: Vec<_> = (0..CHILD_TOKENS).map(|_| scope.token()).collect();
            let entered = std::sync::Arc::new(tokio::sync::Notify::new());
            let seen = entered.clone();
            scope
                .task("cooperative")
                .spawn_with(|ctx| async move {
                    seen.notify_one();
                    while !ctx.is_cancelled() {
                        std::hint::spin_loop();
                    }
                })
                .expect("open");
            entered.notified().await;
            drop(scope);
            assert!(children.iter().all(|t| t.is_cancelled()));
        }
    });
    let warnings = logs.lines_with("scope dropped without shutdown");
    let named = warnings
        .iter()
        .filter(|w| w.contains("cooperative (race-"))
        .count();
    assert_eq!(named, ROUNDS, "{}", logs.text());
}

// Asserts: dropping a scope whose tasks all finished logs nothing.
#[test]
fn dropping_an_idle_scope_is_silent() {
    let (logs, _guard) = Logs::capture();
    paused().run(|_test| async move {
        let scope = Scope::root("quiet");
        scope.spawn("quick", async {}).expect("open");
        scope.wait().await;
        drop(scope);
    });
    assert!(logs.lines_with("WARN").is_empty(), "{}", logs.text());
}

// Asserts: a snapshot lists live tasks of a subtree with name, scope path, spawn site and
// state, and the process-wide snapshot includes every root.
#[test]
fn snapshots_list_live_tasks_with_their_records() {
    paused().run(|app| async move {
        let http = app.child("http").expect("open");
        let token = http.token();
        let line = line!() + 1;
        http.spawn("accept", async move { token.cancelled().await })
            .expect("open");
        app.spawn("done", async {}).expect("open");
        tokio::time::advance(Duration::from_secs(2)).await;

        let snap = app.snapshot();
        assert_eq!(snap.names(), ["accept"], "finished tasks are not listed");
        let t = &snap.tasks[0];
        assert_eq!(t.scope, "test/http");
        assert!(
            t.spawned_at.starts_with(&format!("{}:{line}:", file!())),
            "{}",
            t.spawned_at
        );
        assert_eq!(t.state, TaskState::Running);
        assert_eq!(t.age, Duration::from_secs(2));

        let everywhere = taskward::snapshot();
        assert!(everywhere.tasks.iter().any(|t| t.id == snap.tasks[0].id));

        let json = serde_json::to_value(&snap).expect("serializable");
        assert_eq!(json["tasks"][0]["name"], "accept");
        assert_eq!(json["tasks"][0]["age_ms"], 2000.0);

        let shutdown = app.shutdown(Duration::from_secs(1));
        assert_eq!(app.snapshot().tasks[0].state, TaskState::Cancelling);
        assert!(shutdown.await.is_clean());
        assert!(app.snapshot().is_empty());
    });
}

// Asserts: `taskward::spawn` inside a tracked task is owned by that task's scope (listed,
// cancelled with it); outside any tracked task it is an error, not a panic.
#[test]
fn ambient_spawn_is_owned_by_the_callers_scope() {
    /// Library code that knows nothing about scopes.
    async fn library_start_heartbeat() {
        taskward::spawn("heartbeat", async {
            let ctx = TaskContext::current().expect("tracked");
            ctx.cancelled().await;
        })
        .expect("inside a tracked task");
    }

    paused().run(|app| async move {
        let http = app.child("http").expect("open");
        http.spawn("server", library_start_heartbeat())
            .expect("open")
            .await
            .expect("server ran");
        let snap = app.snapshot();
        assert_eq!(snap.names(), ["heartbeat"]);
        assert_eq!(snap.tasks[0].scope, "test/http");

        let report = app.shutdown(Duration::from_secs(1)).await;
        assert_eq!(
            report.counts.cancelled, 1,
            "the library's task stopped with the app"
        );

        let err = taskward::spawn("orphan", async {}).expect_err("no ambient scope");
        assert_eq!(
            err,
            SpawnError::NoCurrentScope {
                task: "orphan".into()
            }
        );
    });
}

// Asserts: a log line written inside a task carries the task's name and scope path.
#[test]
fn logs_inside_a_task_name_the_task() {
    let (logs, _guard) = Logs::capture();
    paused().run(|app| async move {
        let db = app.child("db").expect("open");
        db.spawn("vacuum", async { tracing::info!("reclaimed 3 pages") })
            .expect("open")
            .await
            .expect("ran");
        let _ = app.shutdown(Duration::ZERO).await;
    });
    let lines = logs.lines_with("reclaimed 3 pages");
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].contains("task{task=vacuum scope=test/db"),
        "{}",
        lines[0]
    );
}

// Asserts: spawning outside a runtime is an error naming the task, not a panic.
#[test]
fn spawn_outside_a_runtime_is_an_error() {
    let scope = Scope::root("no-runtime");
    let err = scope.spawn("early", async {}).expect_err("no runtime");
    assert_eq!(
        err,
        SpawnError::NoRuntime {
            task: "early".into()
        }
    );
}

// Asserts: dropping a root and then its child, with no yield between, names each task once.
#[test]
fn dropping_root_then_child_warns_once() {
    let (logs, _guard) = Logs::capture();
    paused().run(|_test| async move {
        let root = Scope::root("jobs");
        let child = root.child("sub").expect("open");
        child
            .spawn("uploader", std::future::pending::<()>())
            .expect("open");
        drop(root);
        drop(child);
        tokio::task::yield_now().await;
    });
    let warnings = logs.lines_with("scope dropped without shutdown");
    assert_eq!(warnings.len(), 1, "{}", logs.text());
    assert!(warnings[0].contains("uploader"));
}

// Asserts: dropping a child's last handle while its parent shuts down neither aborts the
// child's cooperative tasks nor warns: the parent's shutdown owns them.
#[test]
fn child_dropped_during_parent_shutdown_is_left_to_it() {
    let (logs, _guard) = Logs::capture();
    paused().run(|app| async move {
        let conn = app.child("conn-1").expect("open");
        conn.task("reader")
            .spawn_with(|ctx| async move {
                ctx.cancelled().await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            })
            .expect("open");
        let shutdown = app.shutdown(Duration::from_secs(5));
        drop(conn);
        let report = shutdown.await;
        assert_eq!(report.counts.cancelled, 1, "{report}");
        assert_eq!(report.counts.aborted, 0, "{report}");
    });
    assert!(
        logs.lines_with("WARN")
            .iter()
            .all(|l| !l.contains("dropped without shutdown"))
    );
}

// Asserts: cancelling a token handed out by the scope affects its holders only.
#[test]
fn handed_out_tokens_cannot_cancel_the_scope() {
    paused().run(|app| async move {
        let token = app.token();
        token.cancel();
        let ctx_token = app
            .task("peek")
            .spawn_with(|ctx| async move { Ok::<_, std::convert::Infallible>(ctx.token()) })
            .expect("open")
            .await
            .expect("ran")
            .expect("infallible");
        ctx_token.cancel();
        assert!(!app.is_cancelled());
        app.spawn("still-open", async {})
            .expect("the scope accepts work")
            .await
            .expect("ran");
        let report = app.shutdown(Duration::from_secs(1)).await;
        assert_eq!(report.counts.completed, 2);
    });
}
