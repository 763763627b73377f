//! `/debug/tasks`: off the public port of a worker unless asked for, and bounded whatever
//! the number of connections open.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use taskward::testing::Harness;
use taskward_http::{Server, Worker, debug};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// `GET path` on a connection of its own; the status and the body.
async fn get_once(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("sent");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("response");
    let text = String::from_utf8(raw).expect("text");
    let status = text[9..12].parse().expect("status");
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

// Asserts: with 120 connections open the list says how many tasks there are, counts
// them per scope, and lists one page of the oldest (50 by default, `limit` and `offset`
// as asked, capped at MAX_PAGE), with the offset of the next page; a bad query is a 400
// naming the parameter. (Before, every task was listed: 941 KB with 10,000 connections.)
#[test]
fn the_task_list_is_bounded_and_paged() {
    Harness::multi_thread(2).run(|app| async move {
        let (gate, entered) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let server = Server::bind("127.0.0.1:0")
            .await
            .expect("loopback port")
            .serve(
                &app,
                common::router(gate, entered).merge(debug::tasks_router("/debug/tasks")),
            )
            .expect("open");
        let addr = server.local_addr();
        let mut open = Vec::new();
        for _ in 0..120 {
            open.push(TcpStream::connect(addr).await.expect("connect"));
        }
        while server.scope().live_tasks() < 121 {
            tokio::task::yield_now().await;
        }

        let (status, body) = get_once(addr, "/debug/tasks").await;
        assert_eq!(status, 200, "{body}");
        let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        let total = json["total"].as_u64().expect("total");
        assert!(total >= 122, "120 idle, 1 asking, accept: {json}");
        let tasks = json["tasks"].as_array().expect("tasks");
        assert_eq!(tasks.len(), debug::DEFAULT_PAGE);
        let ages: Vec<f64> = tasks
            .iter()
            .map(|t| t["age_ms"].as_f64().expect("age"))
            .collect();
        assert!(
            ages.windows(2).all(|w| w[0] >= w[1]),
            "oldest first: {ages:?}"
        );
        let http = json["scopes"]
            .as_array()
            .expect("scopes")
            .iter()
            .find(|s| s["scope"] == "test/http")
            .expect("the server's scope counted");
        assert!(http["tasks"].as_u64().expect("count") >= 121, "{http}");
        assert_eq!(json["next_offset"], debug::DEFAULT_PAGE);

        let (_, body) = get_once(addr, "/debug/tasks?limit=7&offset=3").await;
        let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(json["tasks"].as_array().expect("tasks").len(), 7);
        assert_eq!(json["next_offset"], 10);

        let (_, body) = get_once(addr, "/debug/tasks?limit=100000").await;
        let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        let listed = json["tasks"].as_array().expect("tasks").len();
        assert_eq!(
            listed as u64,
            json["total"]
                .as_u64()
                .expect("total")
                .min(debug::MAX_PAGE as u64)
        );

        let (_, body) = get_once(addr, "/debug/tasks?offset=100000").await;
        let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert!(json["tasks"].as_array().expect("tasks").is_empty());
        assert!(json["next_offset"].is_null());

        let (status, body) = get_once(addr, "/debug/tasks?limit=all").await;
        assert_eq!(status, 400);
        assert!(body.contains("limit") && body.contains("all"), "{body}");

        drop(open);
        let report = server.shutdown(Duration::from_secs(5)).await;
        assert!(report.is_clean(), "{report}");
    });
}

// Asserts: a worker serves `/healthz` and `/readyz` on its port, and `/debug/tasks` only
// when the application asks for it. (Before, the task list was always public.)
#[test]
fn a_worker_serves_the_task_list_only_when_asked() {
    for asked in [false, true] {
        Harness::multi_thread(2).run(|app| async move {
            let startup = app.child("startup").expect("open");
            let worker = Worker::listen("127.0.0.1:0")
                .expect("bound")
                .debug_tasks(asked);
            let addr = worker.local_addrs()[0];
            let router = Router::new().route("/", get(|| async { "hello" }));
            let running = {
                let app = app.clone();
                tokio::spawn(async move { worker.run(&app, &startup, router).await })
            };
            while get_once(addr, "/readyz").await.0 != 200 {
                tokio::task::yield_now().await;
            }
            assert_eq!(get_once(addr, "/healthz").await.0, 200);
            let (status, body) = get_once(addr, "/debug/tasks?limit=500").await;
            if asked {
                assert_eq!(status, 200, "{body}");
                assert!(body.contains("\"notify\""), "the worker's own task: {body}");
            } else {
                assert_eq!(status, 404, "{body}");
            }
            let report = app.shutdown(Duration::from_secs(5)).await;
            let ran = running.await.expect("worker task").expect("worker ran");
            assert!(report.is_clean(), "{report}");
            assert!(ran.is_clean(), "{ran}");
        });
    }
}
