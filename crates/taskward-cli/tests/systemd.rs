//! `taskward serve` under a supervisor that speaks systemd's protocols, played for real by
//! this test: it binds the socket itself, passes it as fd 3 (`LISTEN_FDS`, `LISTEN_PID`),
//! gives its own `NOTIFY_SOCKET`, and reads what the master tells it.

mod common;

use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};

use command_fds::{CommandFdExt, FdMapping};
use common::load::Load;
use common::{HELLO, PATIENCE, TASKWARD, signal_pid, test_dir};
use rustix::process::Signal;
use taskward::testing::Harness;
use taskward_cli::notify::{Notification, NotifySocket};

/// Waits for a notification from `pid` that satisfies `wanted`.
async fn expect_from(
    socket: &NotifySocket,
    pid: u32,
    what: &str,
    wanted: impl Fn(&Notification) -> bool,
) {
    let waiting = async {
        loop {
            let Ok(datagram) = socket.recv().await else {
                continue;
            };
            let from = datagram.pid.map(|p| p.as_raw_nonzero().get());
            if from == i32::try_from(pid).ok() && wanted(&datagram.message) {
                return;
            }
        }
    };
    tokio::time::timeout(PATIENCE, waiting)
        .await
        .unwrap_or_else(|_| panic!("the master never said {what}"));
}

/// The master, killed if the test fails before it exits (its workers follow: PDEATHSIG).
struct KillOnDrop(Option<std::process::Child>);

impl KillOnDrop {
    fn id(&self) -> u32 {
        self.0.as_ref().map_or(0, std::process::Child::id)
    }

    fn wait(mut self) -> std::process::ExitStatus {
        self.0
            .take()
            .expect("not waited yet")
            .wait()
            .expect("waited")
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
            common::remove_runtime_dirs(child.id());
        }
    }
}

// Asserts: with a socket passed by its supervisor, the master serves on it (binding
// nothing), says READY=1 once its workers are ready, RELOADING=1 then READY=1 around a
// SIGHUP reload, and STOPPING=1 at SIGTERM, then exits 0.
#[test]
fn plays_well_with_a_systemd_like_supervisor() {
    Harness::multi_thread(2).run(|_| async move {
        let dir = test_dir("systemd");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("the supervisor binds");
        let addr = listener.local_addr().expect("address");
        let notify =
            NotifySocket::bind(dir.join("supervisor.sock")).expect("supervisor's notify socket");

        // LISTEN_PID must be the pid of the process that reads it: a shell sets it to
        // its own and execs the master in its place.
        let mut command = Command::new("/bin/sh");
        command
            .current_dir(&dir)
            .args(["-c", r#"LISTEN_PID=$$ exec "$0" "$@""#, TASKWARD])
            .args(["serve", "-w", "2", "--", HELLO])
            .env("LISTEN_FDS", "1")
            .env("NOTIFY_SOCKET", notify.path())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
            .fd_mappings(vec![FdMapping {
                parent_fd: OwnedFd::from(listener),
                child_fd: 3,
            }])
            .expect("fd 3 is free");
        let master = KillOnDrop(Some(command.spawn().expect("the master starts")));
        let pid = master.id();

        expect_from(&notify, pid, "READY=1", |m| m.ready).await;
        let load = Load::start(addr, 4, "/");
        load.run_for(200).await;

        signal_pid(pid, Signal::HUP);
        expect_from(&notify, pid, "RELOADING=1", |m| m.reloading).await;
        expect_from(&notify, pid, "READY=1 after the reload", |m| m.ready).await;
        load.run_for(100).await;
        let counts = load.stop().await;
        assert_eq!(counts.failed, 0, "{counts:?}");

        signal_pid(pid, Signal::TERM);
        expect_from(&notify, pid, "STOPPING=1", |m| m.stopping).await;
        let exit = tokio::task::spawn_blocking(move || master.wait())
            .await
            .expect("joined");
        assert_eq!(exit.code(), Some(0));
        drop(notify);
        let _ = std::fs::remove_dir_all(&dir);
    });
}
