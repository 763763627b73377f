//! `taskward serve` under load, end to end: real processes, real signals, a shared socket
//! on 127.0.0.1, and a bounded load generator counting every request.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::http1::{Reply, read_reply};
use common::load::Load;
use common::{HELLO, Serve, ready_pids, signal_pid};
use rustix::process::Signal;
use taskward::testing::Harness;
use taskward_cli::admin::Status;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Keep-alive connections of the load.
const CONNECTIONS: usize = 8;

// Asserts: ten SIGHUP reloads under load each replace every worker, and no request fails
// (none dropped, none unaccepted, none cut); `taskward status` lists the replacements;
// SIGTERM then stops everything and the master exits 0.
#[test]
fn ten_reloads_under_load_fail_no_request() {
    Harness::multi_thread(2).run(|_| async move {
        let mut serve = Serve::start("reload", &["-w", "2", "--", HELLO]);
        let load = Load::start(serve.addr, CONNECTIONS, "/");
        load.run_for(200).await;
        for _ in 0..10 {
            let before = ready_pids(&serve.status().await);
            serve.signal(Signal::HUP);
            serve
                .wait_status("every worker replaced", |s| {
                    let now = ready_pids(s);
                    s.workers.len() == 2
                        && now.len() == 2
                        && now.iter().all(|p| !before.contains(p))
                })
                .await;
            // Requests flow through the new workers before the next reload.
            load.run_for(100).await;
        }
        let counts = load.stop().await;
        assert_eq!(counts.failed, 0, "{counts:?}\n{}", serve.log());
        assert!(counts.ok >= 1_200, "{counts:?}");
        let status = serve.status().await;
        let reloads = status
            .restarts
            .iter()
            .filter(|r| r.reason == "reload (SIGHUP)")
            .count();
        assert_eq!(reloads, 20, "two workers replaced per reload:\n{status}");

        serve.signal(Signal::TERM);
        let exit = serve.wait();
        assert_eq!(exit.code(), Some(0), "{}", serve.log());
    });
}

// Asserts: with `--max-requests 200`, workers are recycled under load (at least two
// replacements each) and no request fails.
#[test]
fn max_requests_recycles_under_load_without_failures() {
    Harness::multi_thread(2).run(|_| async move {
        let serve = Serve::start(
            "max-requests",
            &[
                "-w",
                "2",
                "--max-requests",
                "200",
                "--max-requests-jitter",
                "20",
                "--",
                HELLO,
            ],
        );
        let load = Load::start(serve.addr, CONNECTIONS, "/");
        serve
            .wait_status("four recyclings", |s| {
                s.restarts
                    .iter()
                    .filter(|r| r.reason.starts_with("max_requests"))
                    .count()
                    >= 4
            })
            .await;
        let counts = load.stop().await;
        assert_eq!(counts.failed, 0, "{counts:?}\n{}", serve.log());
        assert!(
            counts.ok >= 800,
            "four recyclings take 800 requests: {counts:?}"
        );
    });
}

// Asserts: a recycled worker serves its `--max-requests` and hardly more (at most the one
// request its keep-alive connection sends before it reads `Connection: close`, and one
// more for a report on its way), and never fewer: its replacement is started at three
// quarters of the limit, and the worker is stopped only at the limit. The replacement
// takes 100 ms to start and the load sends at most one request per 15 ms, so a
// replacement started only at the limit (the way without the early start) lets its old
// worker serve at least 6 more.
#[test]
fn recycled_workers_serve_their_limit_not_more() {
    const LIMIT: u64 = 100;
    Harness::multi_thread(2).run(|_| async move {
        let serve = Serve::start_slow(
            "max-requests-exact",
            &["-w", "2", "--max-requests", "100", "--", HELLO],
            100,
        );
        let (status, served) = paced_until(&serve, "three recyclings", |s| {
            s.restarts
                .iter()
                .filter(|r| r.reason.starts_with("max_requests"))
                .count()
                >= 3
        })
        .await;
        let recycled: Vec<u32> = status
            .restarts
            .iter()
            .filter(|r| r.reason.starts_with("max_requests"))
            .map(|r| r.pid)
            .collect();
        let mut unique = recycled.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(
            unique.len(),
            recycled.len(),
            "each recycling recorded once: {status}"
        );
        for restart in status
            .restarts
            .iter()
            .filter(|r| r.reason.starts_with("max_requests"))
        {
            let count = served.get(&restart.pid).copied().unwrap_or(0);
            assert!(
                (LIMIT..=LIMIT + 2).contains(&count),
                "worker {} served {count} requests with --max-requests {LIMIT} \
                 ({}); all: {served:?}\n{}",
                restart.pid,
                restart.reason,
                serve.log()
            );
        }
    });
}

/// Runs [`paced_by_pid`] (a request per 15 ms at most) until the status satisfies
/// `done`; that status, and the answers per pid.
async fn paced_until(
    serve: &Serve,
    what: &str,
    done: impl Fn(&Status) -> bool,
) -> (Status, HashMap<u32, u64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let paced = tokio::spawn(paced_by_pid(
        serve.addr,
        Duration::from_millis(15),
        stop.clone(),
    ));
    let status = serve.wait_status(what, done).await;
    stop.store(true, Ordering::Relaxed);
    (status, paced.await.expect("paced load"))
}

/// One keep-alive connection sending `GET /` to `taskward-hello` every `pace` at most,
/// until `stop`; how many answers each pid gave ("hello from PID"). Panics on a failed
/// request.
async fn paced_by_pid(
    addr: SocketAddr,
    pace: Duration,
    stop: Arc<AtomicBool>,
) -> HashMap<u32, u64> {
    let mut served = HashMap::new();
    let mut conn: Option<TcpStream> = None;
    let mut buf = Vec::new();
    let request = format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    while !stop.load(Ordering::Relaxed) {
        let stream = match conn.as_mut() {
            Some(stream) => stream,
            None => conn.insert(TcpStream::connect(addr).await.expect("connect")),
        };
        stream
            .write_all(request.as_bytes())
            .await
            .expect("request sent");
        let Reply::Done {
            status: 200,
            body,
            close,
        } = read_reply(stream, &mut buf).await
        else {
            panic!("a request failed; served so far: {served:?}");
        };
        let text = String::from_utf8_lossy(&buf[body]);
        let pid: u32 = text
            .trim()
            .strip_prefix("hello from ")
            .and_then(|pid| pid.parse().ok())
            .unwrap_or_else(|| panic!("unexpected body {text:?}"));
        *served.entry(pid).or_insert(0) += 1;
        if close {
            conn = None;
        }
        tokio::time::sleep(pace).await;
    }
    served
}

// Asserts: a worker killed with SIGKILL under load is replaced, the master logs how it
// died, and only requests in flight on the killed worker fail: at most one per
// connection.
#[test]
#[expect(
    clippy::print_stderr,
    reason = "the count of failed requests is the figure asked for"
)]
fn a_killed_worker_is_replaced_and_costs_only_its_requests() {
    Harness::multi_thread(2).run(|_| async move {
        let serve = Serve::start("kill", &["-w", "2", "--", HELLO]);
        let load = Load::start(serve.addr, CONNECTIONS, "/");
        load.run_for(200).await;
        let victim = ready_pids(&serve.status().await)[0];
        signal_pid(victim, Signal::KILL);
        let status = serve
            .wait_status("the killed worker replaced", |s| {
                let now = ready_pids(s);
                now.len() == 2 && !now.contains(&victim)
            })
            .await;
        load.run_for(200).await;
        let counts = load.stop().await;
        assert!(
            counts.failed <= CONNECTIONS as u64,
            "at most the killed worker's in-flight requests: {counts:?}"
        );
        assert_eq!(counts.cut + counts.status, 0, "{counts:?}");
        let reason = status
            .restarts
            .iter()
            .find(|r| r.pid == victim)
            .map(|r| r.reason.clone());
        assert_eq!(
            reason.as_deref(),
            Some("crashed: killed by SIGKILL"),
            "{status}"
        );
        eprintln!(
            "kill -9 under load: {} of {} requests failed",
            counts.failed,
            counts.ok + counts.failed
        );
    });
}

// Asserts: SIGTERM under load stops every worker gracefully and the master exits 0; no
// request is dropped on an open connection or cut mid-response (new connections may be
// refused once the workers have stopped accepting).
#[test]
fn sigterm_under_load_answers_every_accepted_request() {
    Harness::multi_thread(2).run(|_| async move {
        let mut serve = Serve::start("term", &["-w", "2", "--", HELLO]);
        let load = Load::start(serve.addr, CONNECTIONS, "/slow/20");
        load.run_for(100).await;
        serve.signal(Signal::TERM);
        let exit = tokio::task::spawn_blocking(move || {
            let exit = serve.wait();
            (exit, serve)
        });
        let (exit, serve) = exit.await.expect("waited");
        let counts = load.stop().await;
        assert_eq!(exit.code(), Some(0), "{}", serve.log());
        assert_eq!(
            counts.dropped + counts.cut + counts.status,
            0,
            "{counts:?}\n{}",
            serve.log()
        );
        assert_eq!(serve.lines("worker stopped").len(), 2, "{}", serve.log());
        assert!(serve.lines("exit code 0").len() >= 2, "{}", serve.log());
    });
}

// Asserts: during a rolling reload of workers that take 300 ms to start, the number of
// ready workers never drops below the two wanted (each old worker is stopped only once
// its replacement is ready), and under load no request fails: a starting worker does
// not take connections from the shared socket before it is ready (its `/` would answer
// 503 until then).
#[test]
fn capacity_never_dips_during_a_reload() {
    Harness::multi_thread(2).run(|_| async move {
        let serve = Serve::start_slow("capacity", &["-w", "2", "--", HELLO], 300);
        let load = Load::start(serve.addr, CONNECTIONS, "/");
        // New connections all the time: any worker accepting could take them.
        let fresh = Load::start_closing(serve.addr, 2, "/");
        load.run_for(100).await;
        let before = ready_pids(&serve.status().await);
        serve.signal(Signal::HUP);
        let mut polls = 0;
        loop {
            let status = serve.status().await;
            let ready = ready_pids(&status);
            assert!(ready.len() >= 2, "capacity dipped:\n{status}");
            polls += 1;
            if ready.len() == 2
                && status.workers.len() == 2
                && ready.iter().all(|p| !before.contains(p))
            {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(
            polls > 10,
            "the reload was watched while it ran ({polls} polls)"
        );
        load.run_for(100).await;
        let counts = load.stop().await;
        let fresh = fresh.stop().await;
        assert_eq!(counts.failed, 0, "{counts:?}");
        assert_eq!(fresh.failed, 0, "a starting worker answered: {fresh:?}");
        assert!(
            fresh.connections >= 10,
            "new connections were made: {fresh:?}"
        );
    });
}

// Asserts: a SIGTERM to the master just after a reload, while the old worker still drains
// slow requests, does not cut them: the master does not signal a stopping worker again,
// and a repeated SIGTERM would not abort a taskward worker anyway.
#[test]
fn sigterm_during_a_drain_cuts_nothing() {
    Harness::multi_thread(2).run(|_| async move {
        let mut serve = Serve::start("term-during-drain", &["-w", "1", "--", HELLO]);
        let load = Load::start(serve.addr, 4, "/slow/1500");
        serve
            .wait_status("slow requests in flight", |s| {
                s.workers.iter().map(|w| w.requests).sum::<u64>() >= 4
            })
            .await;
        let before = ready_pids(&serve.status().await);
        serve.signal(Signal::HUP);
        serve
            .wait_status("the old worker draining", |s| {
                s.workers
                    .iter()
                    .any(|w| before.contains(&w.pid) && w.state == "stopping")
            })
            .await;
        serve.signal(Signal::TERM);
        let (exit, serve) = tokio::task::spawn_blocking(move || (serve.wait(), serve))
            .await
            .expect("joined");
        let counts = load.stop().await;
        assert_eq!(exit.code(), Some(0), "{}", serve.log());
        assert!(
            counts.ok >= 4,
            "the slow requests in flight were answered: {counts:?}"
        );
        assert_eq!(
            counts.dropped + counts.cut + counts.status,
            0,
            "{counts:?}\n{}",
            serve.log()
        );
    });
}

// Asserts: when the master is killed outright (SIGKILL, nothing it can do), its workers
// get SIGTERM from the kernel and stop: none is left serving unsupervised.
#[test]
fn workers_stop_when_the_master_dies() {
    Harness::multi_thread(2).run(|_| async move {
        let serve = Serve::start("master-dies", &["-w", "2", "--", HELLO]);
        let workers = ready_pids(&serve.status().await);
        serve.signal(Signal::KILL);
        let deadline = std::time::Instant::now() + common::PATIENCE;
        for pid in workers {
            // Gone, or a zombie waiting for the init process to reap it.
            let alive = || {
                std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                    !stat
                        .split(") ")
                        .nth(1)
                        .is_some_and(|rest| rest.starts_with('Z'))
                })
            };
            while alive() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "worker {pid} outlived its master"
                );
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    });
}
