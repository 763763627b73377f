//! Signals at odd moments: a burst of SIGHUPs under load, a SIGHUP before the workers are
//! first ready, a SIGTERM while they are still starting. Each must end in a clean state:
//! the wanted workers ready, nothing failed, no process left behind.

mod common;

use std::time::Duration;

use common::load::Load;
use common::{HELLO, Serve, ready_pids};
use rustix::process::Signal;
use taskward::testing::Harness;

/// The pids of every worker the master logged as started.
fn started_pids(serve: &Serve) -> Vec<u32> {
    serve
        .lines("worker started")
        .iter()
        .filter_map(|l| {
            l.split("pid=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// Whether `pid` is still a process (not even a zombie counts: the master reaps its own).
fn exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

// Asserts: twenty SIGHUPs sent back to back under load become rolling reloads that
// end with exactly the two wanted workers, all newer than the burst, ready; no request
// fails, and SIGTERM then stops everything with exit 0 and no worker left.
#[test]
fn a_burst_of_sighups_under_load_settles_cleanly() {
    Harness::multi_thread(2).run(|_| async move {
        let mut serve = Serve::start("hup-burst", &["-w", "2", "--", HELLO]);
        let load = Load::start(serve.addr, 8, "/");
        load.run_for(100).await;
        let before = ready_pids(&serve.status().await);
        for _ in 0..20 {
            serve.signal(Signal::HUP);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // Signals sent faster than handled coalesce (the kernel keeps one pending): at
        // least one reload, as many as the master saw.
        serve.wait_log("SIGHUP: rolling reload");
        // Settled: two workers, both ready, none from before the burst, and the last HUP's
        // replacements done (every worker started so far either serving or gone).
        serve
            .wait_status("the burst settled", |s| {
                let ready = ready_pids(s);
                ready.len() == 2
                    && s.workers.len() == 2
                    && ready.iter().all(|p| !before.contains(p))
                    && started_pids(&serve)
                        .iter()
                        .all(|p| ready.contains(p) || !exists(*p))
            })
            .await;
        load.run_for(100).await;
        let counts = load.stop().await;
        assert_eq!(counts.failed, 0, "{counts:?}\n{}", serve.log());
        serve.signal(Signal::TERM);
        let (exit, serve) = tokio::task::spawn_blocking(move || (serve.wait(), serve))
            .await
            .expect("joined");
        assert_eq!(exit.code(), Some(0), "{}", serve.log());
        for pid in started_pids(&serve) {
            assert!(!exists(pid), "worker {pid} left behind");
        }
    });
}

// Asserts: a SIGHUP while the first workers are still starting is not lost and breaks
// nothing: the master ends with the two wanted workers ready, started after the HUP.
#[test]
fn a_sighup_before_the_first_ready_is_honoured() {
    Harness::multi_thread(2).run(|_| async move {
        let serve = Serve::spawn("hup-early", &["-w", "2", "--", HELLO], |command| {
            command.env("HELLO_STARTUP_MS", "500");
        });
        serve.wait_lines("worker started", 2);
        let first = started_pids(&serve);
        serve.signal(Signal::HUP);
        serve.wait_log("SIGHUP: rolling reload");
        serve
            .wait_status("two new workers ready", |s| {
                let ready = ready_pids(s);
                ready.len() == 2 && s.workers.len() == 2 && ready.iter().all(|p| !first.contains(p))
            })
            .await;
    });
}

// Asserts: a SIGTERM while the workers are still starting (not yet ready) stops them and
// the master exits 0, leaving no worker behind.
#[test]
fn sigterm_while_workers_start_stops_them_all() {
    Harness::multi_thread(2).run(|_| async move {
        let mut serve = Serve::spawn("term-early", &["-w", "2", "--", HELLO], |command| {
            command.env("HELLO_STARTUP_MS", "2000");
        });
        serve.wait_lines("worker started", 2);
        serve.signal(Signal::TERM);
        let (exit, serve) = tokio::task::spawn_blocking(move || (serve.wait(), serve))
            .await
            .expect("joined");
        assert_eq!(exit.code(), Some(0), "{}", serve.log());
        assert!(
            serve.lines("all workers ready").is_empty(),
            "stopped before ready"
        );
        let started = started_pids(&serve);
        assert_eq!(started.len(), 2, "{}", serve.log());
        for pid in started {
            assert!(!exists(pid), "worker {pid} left behind");
        }
    });
}
