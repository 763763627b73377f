//! The demo run alone (no process manager): a database that cannot be opened yet keeps
//! it not ready while `init_db` retries, an upstream that does not answer in time is a
//! 504 with a JSON error, and bad requests are 400s naming what was wrong.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Log, PATIENCE};

const DEMO: &str = env!("CARGO_BIN_EXE_taskward-demo");

/// The demo process, killed when the test ends, and its log.
struct Demo(Child, Log);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 GET; the status and the body.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    request(addr, "GET", path, None)
}

/// Sends `text` as is; the whole response (panics if none comes within `PATIENCE`).
fn raw(addr: SocketAddr, text: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connects");
    // A request left unanswered fails the test rather than hangs it.
    stream
        .set_read_timeout(Some(PATIENCE))
        .expect("read timeout");
    stream.write_all(text.as_bytes()).expect("sent");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("an answer within PATIENCE");
    response
}

/// One HTTP/1.1 request, with a JSON body if given; the status and the body.
fn request(addr: SocketAddr, method: &str, path: &str, json: Option<&str>) -> (u16, String) {
    let body = json.unwrap_or_default();
    let content = if json.is_some() {
        format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        )
    } else {
        String::new()
    };
    let response = raw(
        addr,
        &format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{content}Connection: close\r\n\r\n{body}"
        ),
    );
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

impl Demo {
    /// Starts the demo on `127.0.0.1:0` with `args`, its log captured; waits for its
    /// address.
    fn start(args: &[&std::ffi::OsStr]) -> (Self, SocketAddr) {
        let mut child = Command::new(DEMO)
            .args(["--bind", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("the demo starts");
        let log = Log::capture(&mut child);
        let demo = Demo(child, log);
        let addr: SocketAddr = demo
            .wait_log("worker serving")
            .split("addr=")
            .nth(1)
            .and_then(|a| a.trim().parse().ok())
            .expect("the demo logs its address");
        (demo, addr)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn wait_log(&self, needle: &str) -> String {
        self.1.wait_for(needle)
    }

    /// Waits until `/readyz` answers 200.
    fn wait_ready(&self, addr: SocketAddr) {
        let deadline = Instant::now() + PATIENCE;
        while get(addr, "/readyz").0 != 200 {
            assert!(Instant::now() < deadline, "never ready:\n{}", self.1.text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A fresh temporary directory for one test.
fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("taskward-demo-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

// Asserts: while the database's directory is missing, init_db fails, is retried (logged
// with its cause) and /readyz answers 503; once the directory exists, the service turns
// ready; an upstream that accepts but never answers gives 504 with a JSON error.
#[test]
fn not_ready_until_the_database_opens_and_a_slow_upstream_is_a_504() {
    let dir = temp_dir("alone");
    let silent = TcpListener::bind("127.0.0.1:0").expect("an upstream that never answers");
    let upstream = format!("http://{}/", silent.local_addr().expect("address"));
    let db = dir.join("later").join("demo.sqlite3");
    let (demo, addr) = Demo::start(&[
        "--upstream".as_ref(),
        upstream.as_ref(),
        "--upstream-timeout-ms".as_ref(),
        "200".as_ref(),
        "--db".as_ref(),
        db.as_os_str(),
    ]);
    let child_pid = demo.pid();

    let failure = demo.wait_log("cannot open");
    assert!(
        failure.contains("init_db"),
        "the failure names the task: {failure}"
    );
    assert_eq!(get(addr, "/readyz").0, 503, "not ready while init_db fails");
    let (status, body) = request(addr, "POST", "/items", Some("{\"name\": \"early\"}"));
    assert_eq!(
        status, 503,
        "a write is refused, not held, before the database opens: {body}"
    );

    std::fs::create_dir_all(db.parent().expect("a parent")).expect("the directory appears");
    demo.wait_ready(addr);

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

// Asserts: bad requests are 400s whose JSON body names what was wrong (and create
// nothing), unknown routes and methods JSON 404/405s, a too long `/builtin` delay
// refused; `/upstream` calls this worker's own `/builtin` whatever the Host header says;
// the liveness endpoint answers; the task list is not served unless asked for
// (`--debug-tasks`, red when always on), and then names the long-lived tasks.
#[test]
fn bad_requests_are_400s_with_a_json_error() {
    let dir = temp_dir("bad-requests");
    let db = dir.join("demo.sqlite3");
    let (demo, addr) = Demo::start(&["--db".as_ref(), db.as_os_str()]);
    demo.wait_ready(addr);

    let cases = [
        ("POST", "/items", Some("{\"name\": "), "EOF"),
        (
            "POST",
            "/items",
            Some("{\"nam\": \"apple\"}"),
            "missing field `name`",
        ),
        ("POST", "/items", Some("[1, 2]"), "invalid type"),
        ("GET", "/items/apple", None, "apple"),
        ("GET", "/items?limit=many", None, "limit"),
        ("GET", "/items?limit=100000", None, "1 to 1000"),
    ];
    for (method, path, body, named) in cases {
        let (status, answer) = request(addr, method, path, body);
        assert_eq!(status, 400, "{method} {path} {body:?}: {answer}");
        let error: serde_json::Value = serde_json::from_str(&answer).expect("a JSON body");
        assert!(
            error["error"].as_str().is_some_and(|e| e.contains(named)),
            "{method} {path} {body:?}: {answer} should name {named:?}"
        );
    }
    let (status, answer) = get(addr, "/items?limit=10");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&answer).expect("JSON")["items"],
        serde_json::json!([]),
        "no bad request created an item"
    );
    let (created, answer) = request(addr, "POST", "/items", Some("{\"name\": \"pear\"}"));
    assert!((200..300).contains(&created), "{answer}");

    for (method, path, status) in [
        ("GET", "/nowhere", 404),
        ("DELETE", "/items", 405),
        ("GET", "/builtin?ms=60000", 400),
    ] {
        let (got, answer) = request(addr, method, path, None);
        assert_eq!(got, status, "{method} {path}: {answer}");
        let error: serde_json::Value = serde_json::from_str(&answer).expect("a JSON body");
        assert!(error["error"].is_string(), "{method} {path}: {answer}");
    }
    // The default upstream is this worker's own /builtin, whatever the request says its
    // host is.
    let forged = raw(
        addr,
        "GET /upstream HTTP/1.1\r\nHost: example.invalid\r\nConnection: close\r\n\r\n",
    );
    assert!(
        forged.starts_with("HTTP/1.1 200") && forged.ends_with("upstream answered 200 OK: ok"),
        "{forged}"
    );

    assert_eq!(get(addr, "/healthz").0, 200);
    let (status, tasks) = get(addr, "/debug/tasks");
    assert_eq!(status, 404, "off by default: {tasks}");
    drop(demo);

    let (demo, addr) = Demo::start(&["--db".as_ref(), db.as_os_str(), "--debug-tasks".as_ref()]);
    demo.wait_ready(addr);
    let (status, tasks) = get(addr, "/debug/tasks");
    assert_eq!(status, 200, "{tasks}");
    for task in ["writer", "cache_stats"] {
        assert!(tasks.contains(task), "{task} listed: {tasks}");
    }
    drop(demo);
    let _ = std::fs::remove_dir_all(&dir);
}
