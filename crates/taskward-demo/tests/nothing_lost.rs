//! The whole lifecycle, end to end: the demo under `taskward serve`, a mixed read/write
//! load through the taskward client, SIGHUP reloads and `--max-requests` recycling under
//! it, then SIGTERM; then the count: every acknowledged write is a row, no request
//! failed, every worker's shutdown report is clean. And the same run with the seed's
//! fire-and-forget writer, which must lose rows: the test can fail.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Log, PATIENCE};
use rustix::process::{Pid, Signal, kill_process};
use taskward::Scope;
use taskward::testing::Harness;
use taskward_http::{Body, Client};

/// How long the test waits for what should happen before it fails rather than hangs.
const DEMO: &str = env!("CARGO_BIN_EXE_taskward-demo");

/// `taskward`, built beside the demo by `cargo test --workspace` (scripts/test).
fn taskward() -> PathBuf {
    let path = Path::new(DEMO).with_file_name("taskward");
    assert!(
        path.exists(),
        "{} is missing: build it first (cargo build -p taskward-cli), or run scripts/test",
        path.display()
    );
    path
}

/// The master, killed (with its workers, by PDEATHSIG) if the test ends early.
struct Master {
    child: Child,
    log: Log,
    addr: SocketAddr,
}

impl Master {
    fn start(dir: &Path, unsafe_writer: bool) -> Self {
        let mut command = Command::new(taskward());
        command
            .current_dir(dir)
            .args([
                "serve",
                "-w",
                "2",
                "-b",
                "127.0.0.1:0",
                "--max-requests",
                "100",
            ])
            .args(["--max-requests-jitter", "20", "--"])
            .arg(DEMO)
            .args(["--db", "demo.sqlite3", "--report-dir", "reports"])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if unsafe_writer {
            command.env("DEMO_UNSAFE_FIRE_AND_FORGET", "1");
        }
        let mut child = command.spawn().expect("taskward starts");
        let log = Log::capture(&mut child);
        let mut master = Self {
            child,
            log,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let listening = master.wait_log("listening");
        master.addr = listening
            .split("addr=")
            .nth(1)
            .and_then(|a| a.trim().parse().ok())
            .expect("the master logs its address");
        master.wait_log("all workers ready");
        master
    }

    fn wait_log(&self, needle: &str) -> String {
        self.log.wait_for(needle)
    }

    fn count(&self, needle: &str) -> usize {
        self.log.count(needle)
    }

    fn log(&self) -> String {
        self.log.text()
    }

    fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).expect("pid")).expect("pid");
        kill_process(pid, signal).expect("signal delivered");
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the load saw.
#[derive(Debug, Default)]
struct Seen {
    acked: Mutex<HashSet<String>>,
    failed: Mutex<Vec<String>>,
    reads: AtomicU64,
}

/// One writer loop: POSTs unique names until `stop`, noting each acknowledged one, and
/// reading back the item it just wrote every other time.
async fn write_loop(
    client: Client,
    addr: SocketAddr,
    who: usize,
    stop: Arc<AtomicBool>,
    seen: Arc<Seen>,
) {
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let name = format!("w{who}-{n}");
        let request = http::Request::post(format!("http://{addr}/items"))
            .header("content-type", "application/json")
            .body(Body::from(format!("{{\"name\":\"{name}\"}}")))
            .expect("request");
        match client.request(request).await {
            Ok(response) if response.status() == 201 => {
                seen.acked.lock().expect("lock").insert(name);
            }
            Ok(response) => seen
                .failed
                .lock()
                .expect("lock")
                .push(format!("POST {name}: {}", response.status())),
            Err(error) => seen
                .failed
                .lock()
                .expect("lock")
                .push(format!("POST {name}: {error:?}")),
        }
        if n % 2 == 0 {
            let request = http::Request::get(format!("http://{addr}/items?limit=5"))
                .body(Body::empty())
                .expect("request");
            match client.request(request).await {
                Ok(response) if response.status() == 200 => {
                    seen.reads.fetch_add(1, Ordering::Relaxed);
                }
                Ok(response) => seen
                    .failed
                    .lock()
                    .expect("lock")
                    .push(format!("GET: {}", response.status())),
                Err(error) => seen
                    .failed
                    .lock()
                    .expect("lock")
                    .push(format!("GET: {error:?}")),
            }
        }
    }
}

/// Runs the scenario; returns (acknowledged names, failures, rows in the database, the
/// master's log, the report files).
async fn scenario(
    app: &Scope,
    name: &str,
    unsafe_writer: bool,
) -> (
    HashSet<String>,
    Vec<String>,
    HashSet<String>,
    Vec<serde_json::Value>,
) {
    let dir = std::env::temp_dir().join(format!("taskward-demo-e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut master = Master::start(&dir, unsafe_writer);
    let client = Client::new(app, Duration::from_secs(10)).expect("client");
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Seen::default());
    let writers: Vec<_> = (0..4)
        .map(|who| {
            tokio::spawn(write_loop(
                client.clone(),
                master.addr,
                who,
                stop.clone(),
                seen.clone(),
            ))
        })
        .collect();

    // Three reloads, each waited for, with max_requests recycling going on meanwhile.
    for reload in 1..=3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        master.signal(Signal::HUP);
        let deadline = Instant::now() + PATIENCE;
        while master.count("reload (SIGHUP)") < 2 * reload {
            assert!(
                Instant::now() < deadline,
                "reload {reload} never finished:\n{}",
                master.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.expect("writer loop");
    }
    let _ = client.close(Duration::from_secs(5)).await;
    master.signal(Signal::TERM);
    let exit = tokio::task::spawn_blocking(move || {
        let exit = master.child.wait().expect("waited");
        (exit, master)
    });
    let (exit, master) = exit.await.expect("joined");
    assert_eq!(exit.code(), Some(0), "{}", master.log());
    assert!(
        master.count("recycling a worker") >= 1,
        "max_requests recycled none:\n{}",
        master.log()
    );

    let rows: HashSet<String> = {
        let conn = rusqlite::Connection::open(dir.join("demo.sqlite3")).expect("the database");
        let mut query = conn.prepare("SELECT name FROM items").expect("query");
        query
            .query_map([], |row| row.get(0))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("names")
    };
    let reports = std::fs::read_dir(dir.join("reports"))
        .expect("report files")
        .map(|entry| {
            let text = std::fs::read(entry.expect("entry").path()).expect("report");
            serde_json::from_slice(&text).expect("a JSON report")
        })
        .collect();
    let acked = std::mem::take(&mut *seen.acked.lock().expect("lock"));
    let failed = std::mem::take(&mut *seen.failed.lock().expect("lock"));
    assert!(seen.reads.load(Ordering::Relaxed) > 0, "reads were made");
    let _ = std::fs::remove_dir_all(&dir);
    (acked, failed, rows, reports)
}

// Asserts: through three rolling reloads, max_requests recycling and a SIGTERM under a
// mixed read/write load, every acknowledged write is a row, no request failed, and every
// worker's shutdown report is clean (no task aborted or stuck).
#[test]
fn no_acknowledged_write_is_lost_and_every_shutdown_is_clean() {
    Harness::multi_thread(2).run(|app| async move {
        let (acked, failed, rows, reports) = scenario(&app, "safe", false).await;
        assert!(acked.len() > 100, "the load wrote: {}", acked.len());
        let lost: Vec<_> = acked.difference(&rows).collect();
        assert!(
            lost.is_empty(),
            "{} acknowledged writes lost: {lost:?}",
            lost.len()
        );
        assert!(
            failed.is_empty(),
            "{} requests failed: {failed:?}",
            failed.len()
        );
        assert!(
            reports.len() >= 8,
            "2 workers + 6 reload replacements reported: {}",
            reports.len()
        );
        for report in &reports {
            assert_eq!(report["counts"]["aborted"], 0, "{report}");
            assert_eq!(report["counts"]["stuck"], 0, "{report}");
        }
        let _ = app.shutdown(Duration::from_secs(1)).await;
    });
}

// Asserts: the same run with the seed's fire-and-forget writer (acknowledge when queued,
// drop the queue at shutdown) loses acknowledged writes: the check above can fail.
#[test]
fn the_fire_and_forget_writer_loses_acknowledged_writes() {
    Harness::multi_thread(2).run(|app| async move {
        let (acked, _failed, rows, _reports) = scenario(&app, "unsafe", true).await;
        let lost = acked.difference(&rows).count();
        assert!(
            lost > 0,
            "fire-and-forget lost nothing of {} writes",
            acked.len()
        );
        let _ = app.shutdown(Duration::from_secs(1)).await;
    });
}
