//! How `taskward serve` supervises workers that misbehave, or that are not written with
//! taskward, where only real processes can show it: a worker ignoring SIGTERM, a failed
//! reload, a program that cannot be executed, foreign datagrams, a standard-library
//! Python worker. Real processes, signals and sockets on 127.0.0.1. The policy's side of
//! each case (and heartbeats, crash backoff, stuck replacements) is unit-tested in
//! `src/lifecycle/tests.rs` under an injected clock.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

use common::http1::get_over_unix;
use common::load::Load;
use common::{Serve, ready_pids};
use rustix::process::Signal;
use taskward::testing::Harness;

fn fixture(name: &str) -> String {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "fixtures", name]
        .iter()
        .collect();
    path.to_string_lossy().into_owned()
}

// Asserts: a worker that ignores SIGTERM is killed at --graceful-timeout, the master
// says so, and exits with code 3 (stopped, but a worker had to be killed).
#[test]
fn a_worker_ignoring_sigterm_is_killed_and_the_exit_code_says_so() {
    Harness::multi_thread(2).run(|_| async move {
        let stubborn = fixture("stubborn_worker.py");
        let mut serve = Serve::start(
            "stubborn",
            &[
                "-w",
                "1",
                "--graceful-timeout",
                "1",
                "--",
                "python3",
                &stubborn,
            ],
        );
        serve.signal(Signal::TERM);
        let exit = serve.wait();
        assert_eq!(exit.code(), Some(3), "{}", serve.log());
        serve.wait_log("worker did not stop in time: SIGKILL");
    });
}

// Asserts: a reload whose new worker exits before READY (a bad deploy) is abandoned, the
// old workers keep serving, and the master says so.
#[test]
fn a_failed_reload_keeps_the_old_workers() {
    Harness::multi_thread(2).run(|_| async move {
        let worker = fixture("stdlib_worker.py");
        let serve = Serve::spawn(
            "failed-reload",
            &["-w", "2", "--", "python3", &worker],
            |command| {
                command.env("BREAK_IF_EXISTS", "broken");
            },
        );
        serve.wait_log("all workers ready");
        let before = ready_pids(&serve.status().await);
        std::fs::write(serve.dir().join("broken"), b"").expect("mark the deploy broken");
        serve.signal(Signal::HUP);
        serve.wait_log("replacement worker exited before it was ready");
        let load = Load::start(serve.addr, 4, "/");
        load.run_for(100).await;
        let counts = load.stop().await;
        assert_eq!(counts.failed, 0, "{counts:?}");
        let after = ready_pids(&serve.status().await);
        assert_eq!(after, before, "the old workers still serve");
    });
}

// Asserts: a reload whose program cannot even be executed (a deploy caught halfway, its
// file not executable) is abandoned with the old workers serving, and the next SIGHUP,
// once the program is fixed, replaces every worker: nothing stays marked as replaced.
#[test]
fn a_reload_that_cannot_execute_the_program_can_be_retried() {
    use std::os::unix::fs::PermissionsExt;

    Harness::multi_thread(2).run(|_| async move {
        let program =
            std::env::temp_dir().join(format!("taskward-e2e-{}-hello-copy", std::process::id()));
        std::fs::copy(common::HELLO, &program).expect("a copy of taskward-hello");
        let mode = |bits| {
            std::fs::set_permissions(&program, std::fs::Permissions::from_mode(bits))
                .expect("chmod");
        };
        let path = program.to_str().expect("a UTF-8 temp path");
        let serve = Serve::start("unexecutable", &["-w", "2", "--", path]);
        let before = ready_pids(&serve.status().await);
        mode(0o644);
        serve.signal(Signal::HUP);
        serve.wait_log("replacement abandoned");
        assert_eq!(
            ready_pids(&serve.status().await),
            before,
            "the old workers still serve"
        );
        mode(0o755);
        serve.signal(Signal::HUP);
        let status = serve
            .wait_status("every worker replaced", |s| {
                let ready = ready_pids(s);
                ready.len() == 2
                    && s.workers.len() == 2
                    && ready.iter().all(|p| !before.contains(p))
            })
            .await;
        drop(serve);
        let _ = std::fs::remove_file(&program);
        assert_eq!(status.target, 2);
    });
}

// Asserts: each worker gets its own pid in LISTEN_PID (socket activation requires it) and
// nothing of the master's own bookkeeping in its environment.
#[test]
fn each_worker_gets_its_own_pid_in_listen_pid() {
    Harness::multi_thread(2).run(|_| async move {
        let serve = Serve::start("listen-pid", &["-w", "2", "--", common::HELLO]);
        let status = serve.status().await;
        assert_eq!(status.workers.len(), 2, "{status}");
        for worker in &status.workers {
            let environ = std::fs::read(format!("/proc/{}/environ", worker.pid))
                .expect("the worker's environment");
            let vars: Vec<String> = environ
                .split(|&b| b == 0)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .collect();
            let listen_pid: Vec<&String> = vars
                .iter()
                .filter(|v| v.starts_with("LISTEN_PID="))
                .collect();
            assert_eq!(
                listen_pid,
                [&format!("LISTEN_PID={}", worker.pid)],
                "worker {}: {vars:?}",
                worker.pid
            );
            assert!(
                vars.iter().any(|v| v == "LISTEN_FDS=1"),
                "worker {}: {vars:?}",
                worker.pid
            );
            assert!(
                !vars.iter().any(|v| v.starts_with("TASKWARD_MASTER_PID=")),
                "worker {}: {vars:?}",
                worker.pid
            );
        }
    });
}

// Asserts: SIGTTIN adds a worker and SIGTTOU removes one (gracefully), and `taskward
// status` lists the workers by pid.
#[test]
fn ttin_and_ttou_change_the_worker_count() {
    Harness::multi_thread(2).run(|_| async move {
        let serve = Serve::start("ttin", &["-w", "2", "--", common::HELLO]);
        serve.signal(Signal::TTIN);
        let three = serve
            .wait_status("three workers", |s| {
                s.target == 3 && ready_pids(s).len() == 3
            })
            .await;
        let output = std::process::Command::new(common::TASKWARD)
            .args(["status", "--admin-socket"])
            .arg(serve.dir().join("taskward.sock"))
            .output()
            .expect("taskward status runs");
        let shown = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{shown}");
        for pid in ready_pids(&three) {
            assert!(shown.contains(&pid.to_string()), "{pid} listed:\n{shown}");
        }
        serve.signal(Signal::TTOU);
        serve
            .wait_status("two workers", |s| s.target == 2 && s.workers.len() == 2)
            .await;
        serve.wait_log("worker stopped");
    });
}

// Asserts: `taskward top` shows the status again at each refresh, with the requests per
// second served between two (positive under load), stops after `-n` refreshes, and says
// clearly when no master answers.
#[test]
fn top_refreshes_the_status_with_requests_per_second() {
    Harness::multi_thread(2).run(|_| async move {
        let serve = Serve::start("top", &["-w", "2", "--", common::HELLO]);
        let load = Load::start(serve.addr, 4, "/");
        let socket = serve.dir().join("taskward.sock");
        let top = tokio::process::Command::new(common::TASKWARD)
            .args(["top", "-n", "3", "-d", "1.2", "--admin-socket"])
            .arg(&socket)
            .output();
        let output = tokio::time::timeout(common::PATIENCE, top)
            .await
            .expect("top stops after three refreshes")
            .expect("taskward top runs");
        load.stop().await;
        let shown = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{shown}");
        let master = format!("master {} running", serve.pid());
        assert_eq!(shown.matches(&master).count(), 3, "three frames:\n{shown}");
        let rates: Vec<f64> = shown
            .lines()
            .filter_map(|l| l.strip_suffix(" requests/s")?.parse().ok())
            .collect();
        assert_eq!(rates.len(), 2, "a rate from the second frame on:\n{shown}");
        assert!(
            rates.iter().any(|&r| r > 0.0),
            "served under load:\n{shown}"
        );

        let missing = std::process::Command::new(common::TASKWARD)
            .args(["top", "-n", "1", "--admin-socket"])
            .arg(serve.dir().join("nobody.sock"))
            .output()
            .expect("taskward top runs");
        let error = String::from_utf8_lossy(&missing.stderr);
        assert_eq!(missing.status.code(), Some(1), "{error}");
        assert!(error.contains("no taskward serve answers at"), "{error}");
    });
}

// Asserts: a descriptor the master inherited without close-on-exec (a supervisor's pipe,
// say) does not reach its workers, while the master does hold it (so the check is not
// vacuous).
#[test]
fn workers_get_no_descriptor_the_master_inherited() {
    use command_fds::{CommandFdExt, FdMapping};
    use std::os::fd::{AsRawFd, OwnedFd};

    Harness::multi_thread(2).run(|_| async move {
        let (reader, writer) = std::io::pipe().expect("a pipe");
        let pipe = std::fs::read_link(format!("/proc/self/fd/{}", reader.as_raw_fd()))
            .expect("the pipe's identity");
        let serve = Serve::spawn("stray-fd", &["-w", "2", "--", common::HELLO], |command| {
            command
                .fd_mappings(vec![FdMapping {
                    parent_fd: OwnedFd::from(writer),
                    child_fd: 9,
                }])
                .expect("fd 9 is free");
        });
        serve.wait_log("all workers ready");
        let holds = |pid: u32| {
            std::fs::read_dir(format!("/proc/{pid}/fd"))
                .expect("its descriptors")
                .filter_map(Result::ok)
                .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == pipe))
        };
        assert!(holds(serve.pid()), "the master inherited the pipe");
        let status = serve.status().await;
        assert_eq!(status.workers.len(), 2, "{status}");
        for worker in &status.workers {
            assert!(
                !holds(worker.pid),
                "worker {} holds the master's pipe",
                worker.pid
            );
        }
    });
}

// Asserts: SIGINT is a fast stop: requests that would take 30 s are not waited for (they
// fail), the workers exit by themselves (no SIGKILL needed) and the master exits 0.
#[test]
fn sigint_stops_fast_without_waiting_for_requests() {
    Harness::multi_thread(2).run(|_| async move {
        let mut serve = Serve::start(
            "fast-stop",
            &["-w", "2", "--graceful-timeout", "60", "--", common::HELLO],
        );
        let load = Load::start(serve.addr, 4, "/slow/30000");
        serve
            .wait_status("requests in flight", |s| {
                s.workers.iter().map(|w| w.requests).sum::<u64>() >= 4
            })
            .await;
        serve.signal(Signal::INT);
        let (exit, serve) = tokio::task::spawn_blocking(move || (serve.wait(), serve))
            .await
            .expect("joined");
        let counts = load.stop().await;
        assert_eq!(exit.code(), Some(0), "{}", serve.log());
        assert_eq!(counts.ok, 0, "no 30 s request was waited for: {counts:?}");
        assert!(serve.lines("SIGKILL").is_empty(), "{}", serve.log());
    });
}

// Asserts: `-b unix:PATH` serves on a unix socket, replacing a stale socket file left by
// a process that died; a path where a process still accepts is refused with a clear error.
#[test]
fn a_unix_socket_is_bound_and_a_stale_one_replaced() {
    Harness::multi_thread(2).run(|_| async move {
        let dir = common::test_dir("unix-socket");
        let path = dir.join("app.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).expect("a stale socket file"));
        let bind = format!("unix:{}", path.display());
        let worker = fixture("stdlib_worker.py");
        let serve = Serve::start("unix", &["-b", &bind, "-w", "1", "--", "python3", &worker]);
        let response = get_over_unix(&path).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");

        let output = std::process::Command::new(common::TASKWARD)
            .current_dir(&dir)
            .args(["serve", "-b", &bind, "--", "python3", &worker])
            .output()
            .expect("taskward runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("another process is accepting there"),
            "{stderr}"
        );
        drop(serve);
        let _ = std::fs::remove_dir_all(&dir);
    });
}

// Asserts: a taskward-http worker takes the unix socket the master passes as fd 3 (it
// does not fail with "not a TCP listener"), becomes ready, and answers on the path.
#[test]
fn a_taskward_worker_serves_a_passed_unix_socket() {
    Harness::multi_thread(2).run(|_| async move {
        let dir = common::test_dir("unix-hello");
        let path = dir.join("app.sock");
        let bind = format!("unix:{}", path.display());
        let serve = Serve::start("unix-hello", &["-b", &bind, "-w", "1", "--", common::HELLO]);
        let pids = ready_pids(&serve.status().await);
        let response = get_over_unix(&path).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(
            pids.iter()
                .any(|pid| response.trim_end().ends_with(&format!("hello from {pid}"))),
            "{response} (ready: {pids:?})"
        );
        drop(serve);
        let _ = std::fs::remove_dir_all(&dir);
    });
}

// Asserts: datagrams on the notify socket from a process that is not a worker, or that
// are not notifications, are logged and ignored; the master goes on serving. Repeated
// ones are logged once per interval (the two malformed ones here: one line; unit test
// `datagrams_from_strangers_are_logged_once_per_interval` counts the summary).
#[test]
fn foreign_and_malformed_datagrams_are_ignored() {
    Harness::multi_thread(2).run(|_| async move {
        let serve = Serve::start("foreign", &["-w", "2", "--", common::HELLO]);
        let started = serve.wait_log("master started");
        let socket = started
            .split("notify_socket=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .map(PathBuf::from)
            .expect("the master logs its notify socket");
        let sender = UnixDatagram::unbound().expect("a datagram socket");
        sender
            .send_to(b"READY=1\nX_TASKWARD_REQUESTS=99", &socket)
            .expect("sent");
        sender.send_to(b"\xff\xfe not text", &socket).expect("sent");
        sender.send_to(b"READY=2", &socket).expect("sent");
        serve.wait_log("not a worker ignored");
        serve.wait_log("notify datagram ignored");
        let load = Load::start(serve.addr, 4, "/");
        load.run_for(100).await;
        let counts = load.stop().await;
        assert_eq!(counts.failed, 0, "{counts:?}");
        let status = serve.status().await;
        assert_eq!(ready_pids(&status).len(), 2, "{status}");
        assert!(status.workers.iter().all(|w| w.requests != 99), "{status}");
        assert_eq!(
            serve.lines("notify datagram ignored").len(),
            1,
            "the second malformed datagram, inside the interval, is only counted"
        );
    });
}

// Asserts: a worker written with Python's standard library alone (socket activation and
// sd_notify by hand) is served by `taskward serve`, reloaded on SIGHUP, and stopped by
// SIGTERM with exit code 0.
#[test]
fn a_stdlib_python_worker_runs_under_taskward_serve() {
    Harness::multi_thread(2).run(|_| async move {
        let worker = fixture("stdlib_worker.py");
        let mut serve = Serve::start("python", &["-w", "2", "-t", "5", "--", "python3", &worker]);
        let load = Load::start(serve.addr, 2, "/");
        load.run_for(100).await;
        let before = ready_pids(&serve.status().await);
        serve.signal(Signal::HUP);
        serve
            .wait_status("both python workers replaced", |s| {
                let now = ready_pids(s);
                s.workers.len() == 2 && now.len() == 2 && now.iter().all(|p| !before.contains(p))
            })
            .await;
        load.run_for(100).await;
        let counts = load.stop().await;
        assert!(counts.ok >= 200, "{counts:?}");
        serve.signal(Signal::TERM);
        let exit = serve.wait();
        assert_eq!(exit.code(), Some(0), "{}", serve.log());
    });
}
