//! Nothing a worker starts outlives it: the master adopts what its workers leave behind
//! (child subreaper), names it, stops it, and reaps every orphan, also as PID 1 of a PID
//! namespace, the way it runs as a container's entrypoint. Real processes, `unshare`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{HELLO, PATIENCE, Serve, TASKWARD, ready_pids, signal_pid, test_dir};
use rustix::process::Signal;
use taskward::testing::Harness;
use taskward_cli::admin::Status;

/// `(pid, state letter)` of every child of `parent`, from `/proc`.
fn children(parent: u32) -> Vec<(u32, char)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let rest = &stat[stat.rfind(')')? + 1..];
            let mut fields = rest.split_whitespace();
            let state = fields.next()?.chars().next()?;
            let ppid: u32 = fields.next()?.parse().ok()?;
            (ppid == parent).then_some((pid, state))
        })
        .collect()
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim_end()
        .to_owned()
}

/// Kills a process when dropped, should the test fail before the master stopped it.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if std::path::Path::new(&format!("/proc/{}", self.0)).exists() {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(i32::try_from(self.0).unwrap_or(0)).expect("a pid"),
                Signal::KILL,
            );
        }
    }
}

// Asserts: a process a worker started and left running when it was replaced (here a
// `sleep 1000` its shell started) is adopted by the master, named with its pid and command
// line in the log and in `taskward status`, and stopped: gone, reaped. Without it the
// sleep is reparented to init and runs on.
#[test]
fn a_process_left_by_a_replaced_worker_is_named_and_stopped() {
    Harness::multi_thread(2).run(|_| async move {
        let program = format!("sleep 1000 & exec {HELLO}");
        let mut serve = Serve::start("leftover", &["-w", "1", "--", "sh", "-c", &program]);
        let worker = ready_pids(&serve.status().await)[0];
        let deadline = Instant::now() + PATIENCE;
        let sleep = sleep_of(worker, deadline).await;
        let _guard = KillOnDrop(sleep);
        serve.signal(Signal::HUP);
        let status = serve
            .wait_status("the leftover named", |s: &Status| {
                s.restarts.iter().any(|r| r.pid == sleep)
            })
            .await;
        let reason = status
            .restarts
            .iter()
            .find(|r| r.pid == sleep)
            .map(|r| r.reason.clone());
        assert_eq!(
            reason.as_deref(),
            Some("leftover of worker 1: sleep 1000"),
            "{status}"
        );
        let line = serve.wait_log("outlived it: stopping it");
        assert!(line.contains(&format!("pid={sleep}")), "{line}");
        while std::path::Path::new(&format!("/proc/{sleep}")).exists() {
            assert!(
                Instant::now() < deadline,
                "the leftover {sleep} still runs (or is an unreaped zombie):\n{}",
                serve.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        serve.wait_log("leftover process gone");

        // A stop waits for what the last worker leaves, too.
        let worker = ready_pids(&serve.status().await)[0];
        let last = sleep_of(worker, deadline).await;
        let _guard = KillOnDrop(last);
        serve.signal(Signal::TERM);
        let (exit, serve) = tokio::task::spawn_blocking(move || (serve.wait(), serve))
            .await
            .expect("joined");
        assert_eq!(exit.code(), Some(0), "{}", serve.log());
        assert!(
            !std::path::Path::new(&format!("/proc/{last}")).exists(),
            "the last worker's sleep outlived the master:\n{}",
            serve.log()
        );
    });
}

/// The `sleep` child of `worker`, once it has started.
async fn sleep_of(worker: u32, deadline: Instant) -> u32 {
    loop {
        if let Some(&(pid, _)) = children(worker).iter().find(|(p, _)| comm(*p) == "sleep") {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "the worker's sleep never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `unshare` with a new PID namespace (and `/proc` for it), as root or, failing that, in
/// a user namespace of its own.
fn unshare() -> Command {
    let plain = ["--pid", "--fork", "--mount-proc"];
    let works = |args: &[&str]| {
        Command::new("unshare")
            .args(args)
            .arg("true")
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let mut command = Command::new("unshare");
    if works(&plain) {
        command.args(plain);
    } else {
        let user = [
            "--user",
            "--map-root-user",
            "--pid",
            "--fork",
            "--mount-proc",
        ];
        assert!(works(&user), "unshare cannot make a PID namespace here");
        command.args(user);
    }
    command
}

/// The master run by `unshare`, killed with its namespace if the test fails.
struct Namespaced {
    unshare: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Namespaced {
    fn drop(&mut self) {
        // PID 1 of the namespace dies with `unshare`'s SIGKILL... only if sent to it:
        // `unshare --fork` forwards nothing, so kill the master (its child) first.
        for (pid, _) in children(self.unshare.id()) {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(i32::try_from(pid).unwrap_or(0)).expect("pid"),
                Signal::KILL,
            );
        }
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
    }
}

// Asserts: as PID 1 of its PID namespace (a container's entrypoint), the master reaps the
// orphans its workers leave (each worker start leaves two short-lived ones, reparented to
// PID 1): after 20 reloads no zombie is left among its children. Without the reaping
// they pile up, two per worker start. And each replaced worker's `sleep 1000` is named
// as its leftover and stopped: none is left running.
#[test]
fn as_pid_1_no_zombie_survives_twenty_reloads() {
    Harness::multi_thread(2).run(|_| async move {
        let dir = test_dir("pid-1");
        let program = format!("(sleep 0.05 &); (sleep 0.05 &); sleep 1000 & exec {HELLO}");
        let mut command = unshare();
        command
            .arg(TASKWARD)
            .args([
                "serve",
                "-b",
                "127.0.0.1:0",
                "-w",
                "1",
                "--",
                "sh",
                "-c",
                &program,
            ])
            .current_dir(&dir)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut unshare = command.spawn().expect("unshare starts");
        let stderr = unshare.stderr.take().expect("piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().expect("log").push(line);
            }
        });
        let ns = Namespaced { unshare, log };
        let socket = dir.join("taskward.sock");
        let deadline = Instant::now() + PATIENCE;
        let status = |what: &'static str| {
            let socket = socket.clone();
            let log = ns.log.clone();
            async move {
                loop {
                    if let Ok(status) = taskward_cli::admin::query(&socket).await {
                        return status;
                    }
                    assert!(Instant::now() < deadline, "never {what}: {:?}", log.lock());
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        let first = status("answering").await;
        assert_eq!(first.master_pid, 1, "the master is PID 1 of its namespace");
        let master = children(ns.unshare.id())
            .first()
            .map(|(pid, _)| *pid)
            .expect("unshare's child, the master");
        let mut before = ready_pids(&first);
        while before.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            before = ready_pids(&status("ready").await);
            assert!(
                Instant::now() < deadline,
                "never ready: {:?}",
                ns.log.lock()
            );
        }
        for _ in 0..20 {
            signal_pid(master, Signal::HUP);
            loop {
                let now = status("replaced").await;
                let ready = ready_pids(&now);
                if now.workers.len() == 1 && ready.len() == 1 && !before.contains(&ready[0]) {
                    before = ready;
                    break;
                }
                assert!(Instant::now() < deadline, "never replaced: {now}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let started = ns
            .log
            .lock()
            .expect("log")
            .iter()
            .filter(|l| l.contains("worker started"))
            .count();
        assert!(started >= 21, "{started} workers started");
        // Each start left two orphans that exit after 50 ms: all reaped, none left a zombie.
        loop {
            let zombies: Vec<(u32, char)> = children(master)
                .into_iter()
                .filter(|(_, state)| *state == 'Z')
                .collect();
            if zombies.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "zombies of PID 1 left: {zombies:?}\n{:?}",
                ns.log.lock()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        loop {
            let named = ns
                .log
                .lock()
                .expect("log")
                .iter()
                .filter(|l| l.contains("outlived it: stopping it") && l.contains("sleep 1000"))
                .count();
            let running: Vec<u32> = children(master)
                .into_iter()
                .filter(|(pid, state)| *state != 'Z' && comm(*pid) == "sleep")
                .map(|(pid, _)| pid)
                .collect();
            if named >= 20 && running.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{named} leftovers named, still running: {running:?}\n{:?}",
                ns.log.lock()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        signal_pid(master, Signal::TERM);
        let mut ns = ns;
        let exit = tokio::task::spawn_blocking(move || {
            let exit = ns.unshare.wait();
            (exit, ns)
        });
        let (exit, ns) = exit.await.expect("joined");
        assert_eq!(exit.expect("waited").code(), Some(0), "{:?}", ns.log.lock());
        drop(ns);
        let _ = std::fs::remove_dir_all(&dir);
    });
}
