//! The demo run alone (no process manager): a database that cannot be opened yet keeps
//! it not ready while `init_db` retries, and an upstream that does not answer in time is
//! a 504 with a JSON error.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DEMO: &str = env!("CARGO_BIN_EXE_taskward-demo");
const PATIENCE: Duration = Duration::from_secs(60);

/// The demo process, killed when the test ends.
struct Demo(Child, Arc<Mutex<Vec<String>>>);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 GET; the status and the body.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connects");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("sent");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    (status, body)
}

// Asserts: while the database's directory is missing, init_db fails, is retried (logged
// with its cause) and /readyz answers 503; once the directory exists, the service turns
// ready; an upstream that accepts but never answers gives 504 with a JSON error.
#[test]
fn not_ready_until_the_database_opens_and_a_slow_upstream_is_a_504() {
    let dir = std::env::temp_dir().join(format!("taskward-demo-alone-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let silent = TcpListener::bind("127.0.0.1:0").expect("an upstream that never answers");
    let upstream = format!("http://{}/", silent.local_addr().expect("address"));
    let db = dir.join("later").join("demo.sqlite3");
    let mut child = Command::new(DEMO)
        .args([
            "--bind",
            "127.0.0.1:0",
            "--upstream",
            &upstream,
            "--upstream-timeout-ms",
            "200",
        ])
        .arg("--db")
        .arg(&db)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("the demo starts");
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = log.clone();
    let stderr = child.stderr.take().expect("piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().expect("log").push(line);
        }
    });
    let child_pid = child.id();
    let demo = Demo(child, log);
    let wait_log = |needle: &str| -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(line) = demo
                .1
                .lock()
                .expect("log")
                .iter()
                .find(|l| l.contains(needle))
            {
                return line.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?}: {:?}",
                demo.1.lock().expect("log")
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let addr: SocketAddr = wait_log("worker serving")
        .split("addr=")
        .nth(1)
        .and_then(|a| a.trim().parse().ok())
        .expect("the demo logs its address");

    let failure = wait_log("cannot open");
    assert!(
        failure.contains("init_db"),
        "the failure names the task: {failure}"
    );
    assert_eq!(get(addr, "/readyz").0, 503, "not ready while init_db fails");

    std::fs::create_dir_all(db.parent().expect("a parent")).expect("the directory appears");
    let deadline = Instant::now() + PATIENCE;
    while get(addr, "/readyz").0 != 200 {
        assert!(
            Instant::now() < deadline,
            "never ready: {:?}",
            demo.1.lock().expect("log")
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let (status, body) = get(addr, "/upstream");
    assert_eq!(status, 504, "{body}");
    let error: serde_json::Value = serde_json::from_str(&body).expect("a JSON body");
    assert!(
        error["error"]
            .as_str()
            .is_some_and(|e| e.contains("no answer within")),
        "{body}"
    );

    // The periodic job refreshes this worker's statistics, and says whose they are.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, body) = get(addr, "/stats");
        assert_eq!(status, 200, "{body}");
        let stats: serde_json::Value = serde_json::from_str(&body).expect("a JSON body");
        assert_eq!(stats["pid"], child_pid, "{body}");
        if stats["cache"]["refreshed"].as_u64().is_some_and(|n| n >= 2) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "statistics never refreshed: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(demo);
    let _ = std::fs::remove_dir_all(&dir);
}
