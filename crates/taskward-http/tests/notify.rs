//! The notify socket is opened once: a worker whose descriptors are all taken still
//! reaches its supervisor. (One test in this binary: it lowers the process's descriptor
//! limit and fills it.)

use std::os::unix::net::UnixDatagram;

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use taskward_http::Notifier;

/// A directory removed when the test ends, failed or not.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// Asserts: with every descriptor of the process taken, heartbeats still arrive. Red with
// a socket opened per message (as `sd_notify::notify` does): EMFILE.
#[test]
fn notifications_need_no_descriptor_once_opened() {
    let dir = std::env::temp_dir().join(format!("taskward-notify-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let dir = TempDir(dir);
    let path = dir.0.join("notify.sock");
    let supervisor = UnixDatagram::bind(&path).expect("supervisor socket");
    let notifier = Notifier::connect(&path).expect("notifier");

    let before = getrlimit(Resource::Nofile);
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(64),
            maximum: before.maximum,
        },
    )
    .expect("lower the soft limit");
    let mut hoard = Vec::new();
    let exhausted = loop {
        match std::fs::File::open("/dev/null") {
            Ok(file) => hoard.push(file),
            Err(error) => break error,
        }
    };
    let sent: Vec<_> = (0..10)
        .map(|n| notifier.send(&format!("WATCHDOG=1\nX_N={n}\n")))
        .collect();
    drop(hoard);
    setrlimit(Resource::Nofile, before).expect("restore the limit");

    assert_eq!(
        exhausted.raw_os_error(),
        Some(rustix::io::Errno::MFILE.raw_os_error())
    );
    for (n, result) in sent.iter().enumerate() {
        assert!(result.is_ok(), "notification {n}: {result:?}");
    }
    let mut buf = [0u8; 64];
    for n in 0..10 {
        let len = supervisor.recv(&mut buf).expect("a datagram");
        assert_eq!(
            std::str::from_utf8(&buf[..len]).expect("text"),
            format!("WATCHDOG=1\nX_N={n}\n")
        );
    }
    drop((supervisor, dir));
}
