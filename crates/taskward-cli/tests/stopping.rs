//! How `taskward serve` ends, where only real processes and sockets can show it: new
//! connections refused (not accepted then reset) once a graceful stop's workers no longer
//! accept, while sockets passed in by a supervisor stay open for the next start; and a
//! worker that finds its configuration bad (exit code 78) stopping the master with exit
//! code 2 instead of a restart loop.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use command_fds::{CommandFdExt, FdMapping};
use common::http1::{Reply, read_reply};
use common::{HELLO, PATIENCE, Serve, TASKWARD, signal_pid, test_dir};
use rustix::process::Signal;
use taskward::testing::Harness;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Sends `GET /slow/{ms}` on a new connection; the task ends with the reply.
fn slow_request(addr: SocketAddr, ms: u64) -> tokio::task::JoinHandle<Reply> {
    tokio::spawn(async move {
        let mut conn = TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET /slow/{ms} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        conn.write_all(request.as_bytes()).await.expect("sent");
        let mut buf = Vec::new();
        read_reply(&mut conn, &mut buf).await
    })
}

// Asserts: during a graceful stop, once the worker no longer accepts, a new connection is
// refused (ECONNREFUSED: the master closed the socket it bound) rather than accepted by
// the kernel and reset when the master exits, while the request in flight is answered.
// Without the fix the master's copy keeps the socket listening until it exits: every
// connect below succeeds until the slow request is over.
#[test]
fn a_graceful_stop_refuses_new_connections_while_a_request_finishes() {
    Harness::multi_thread(2).run(|_| async move {
        let mut serve = Serve::start("refuse", &["-w", "1", "--", HELLO]);
        let addr = serve.addr;
        let slow = slow_request(addr, 3000);
        serve
            .wait_status("the slow request in flight", |s| {
                s.workers.iter().map(|w| w.requests).sum::<u64>() >= 1
            })
            .await;
        serve.signal(Signal::TERM);
        serve.wait_log("listening sockets closed");
        serve.wait_log("stopped accepting");
        // The worker drops its socket just after it logs: a connect may still land in
        // that instant, and is retried.
        loop {
            match TcpStream::connect(addr).await {
                Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => break,
                Err(error) => panic!("connect failed otherwise: {error}"),
                Ok(_) => {
                    assert!(
                        !slow.is_finished(),
                        "connections were still accepted after the worker stopped accepting:\n{}",
                        serve.log()
                    );
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        assert!(
            !slow.is_finished(),
            "refused while the request was in flight"
        );
        let reply = slow.await.expect("the slow request");
        assert!(
            matches!(reply, Reply::Done { status: 200, .. }),
            "the request in flight was not answered:\n{}",
            serve.log()
        );
        let (exit, serve) = tokio::task::spawn_blocking(move || (serve.wait(), serve))
            .await
            .expect("joined");
        assert_eq!(exit.code(), Some(0), "{}", serve.log());
    });
}

/// The inode of a socket, as `/proc/PID/fd` shows it (`socket:[INODE]`).
fn socket_link(socket: &impl AsRawFd) -> PathBuf {
    std::fs::read_link(format!("/proc/self/fd/{}", socket.as_raw_fd()))
        .expect("the socket's identity")
}

/// Whether process `pid` holds a descriptor on the socket `link`.
fn holds(pid: u32, link: &Path) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
        fds.filter_map(Result::ok)
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == link))
    })
}

// Asserts: a socket passed in by the master's supervisor (systemd socket activation) stays
// open through a graceful stop: once the worker has closed its copy, a new connection is
// still accepted by the kernel, queued for the next start. (Closing it too would refuse
// it: the test holds no copy of its own.)
#[test]
fn a_socket_passed_in_by_the_supervisor_stays_open_during_a_stop() {
    Harness::multi_thread(2).run(|_| async move {
        let dir = test_dir("passed-in-stop");
        let listener = TcpListener::bind("127.0.0.1:0").expect("the supervisor binds");
        let addr = listener.local_addr().expect("address");
        let link = socket_link(&listener);
        let mut command = Command::new("/bin/sh");
        command
            .current_dir(&dir)
            .args(["-c", r#"LISTEN_PID=$$ exec "$0" "$@""#, TASKWARD])
            .args(["serve", "-w", "1", "--", HELLO])
            .env("LISTEN_FDS", "1")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
            .fd_mappings(vec![FdMapping {
                parent_fd: OwnedFd::from(listener),
                child_fd: 3,
            }])
            .expect("fd 3 is free");
        let mut master = command.spawn().expect("the master starts");
        let log = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = log.clone();
        let stderr = master.stderr.take().expect("piped");
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().expect("log").push(line);
            }
        });
        let socket = dir.join("taskward.sock");
        let deadline = Instant::now() + PATIENCE;
        let worker = loop {
            if let Ok(status) = taskward_cli::admin::query(&socket).await
                && let Some(w) = status.workers.iter().find(|w| w.state == "ready")
            {
                break w.pid;
            }
            assert!(Instant::now() < deadline, "never ready: {:?}", log.lock());
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let slow = slow_request(addr, 2000);
        while taskward_cli::admin::query(&socket)
            .await
            .map_or(0, |s| s.workers.iter().map(|w| w.requests).sum::<u64>())
            == 0
        {
            assert!(
                Instant::now() < deadline,
                "never in flight: {:?}",
                log.lock()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        signal_pid(master.id(), Signal::TERM);
        while holds(worker, &link) {
            assert!(Instant::now() < deadline, "the worker kept its socket");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(holds(master.id(), &link), "the master keeps its copy");
        let queued = TcpStream::connect(addr).await;
        assert!(
            queued.is_ok(),
            "a connection during the stop was refused: {queued:?}\n{:?}",
            log.lock()
        );
        let reply = slow.await.expect("the slow request");
        assert!(
            matches!(reply, Reply::Done { status: 200, .. }),
            "the request in flight was not answered: {:?}",
            log.lock()
        );
        let exit = tokio::task::spawn_blocking(move || master.wait())
            .await
            .expect("joined")
            .expect("waited");
        reader.join().expect("log reader");
        assert_eq!(exit.code(), Some(0), "{:?}", log.lock());
        let _ = std::fs::remove_dir_all(&dir);
    });
}

// Asserts: a worker that exits with code 78 (EX_CONFIG) before READY, saying why on its
// stderr, stops the master with exit code 2 and a one-line error naming it; no worker is
// started again. Without the fix the master restarts the program forever.
#[test]
fn a_worker_exiting_with_ex_config_stops_the_master_with_exit_code_2() {
    Harness::multi_thread(2).run(|_| async move {
        let mut serve = Serve::spawn(
            "ex-config",
            &["-w", "2", "--", "sh", "-c", "echo bad setting >&2; exit 78"],
            |_| {},
        );
        let exit = tokio::task::spawn_blocking(move || (serve.wait(), serve));
        let (exit, serve) = exit.await.expect("joined");
        assert_eq!(exit.code(), Some(2), "{}", serve.log());
        serve.wait_log("bad setting");
        let errors = serve.lines("taskward: ");
        assert_eq!(errors.len(), 1, "{}", serve.log());
        assert!(
            errors[0].contains("exited with code 78 (EX_CONFIG) before it was ready"),
            "{}",
            errors[0]
        );
        assert_eq!(serve.lines("worker started").len(), 2, "{}", serve.log());
    });
}
