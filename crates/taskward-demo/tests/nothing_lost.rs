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
    /// Set when the test sends SIGTERM: failures from then on are the ones it cuts.
    stopping: AtomicBool,
    cut: AtomicU64,
}

impl Seen {
    fn fail(&self, what: String) {
        if self.stopping.load(Ordering::Relaxed) {
            self.cut.fetch_add(1, Ordering::Relaxed);
        } else {
            self.failed.lock().expect("lock").push(what);
        }
    }
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
            Ok(response) => seen.fail(format!("POST {name}: {}", response.status())),
            Err(error) => seen.fail(format!("POST {name}: {error:?}")),
        }
        if n % 2 == 0 {
            let request = http::Request::get(format!("http://{addr}/items?limit=5"))
                .body(Body::empty())
                .expect("request");
            match client.request(request).await {
                Ok(response) if response.status() == 200 => {
                    seen.reads.fetch_add(1, Ordering::Relaxed);
                }
                Ok(response) => seen.fail(format!("GET: {}", response.status())),
                Err(error) => seen.fail(format!("GET: {error:?}")),
            }
        }
    }
}

/// What a scenario ends with.
struct Outcome {
    /// Names answered 201.
    acked: HashSet<String>,
    /// Requests that failed before the test's SIGTERM.
    failed: Vec<String>,
    /// Requests that failed after it (the test cut them).
    cut: u64,
    /// Names in the database after the master exited.
    rows: HashSet<String>,
    /// The workers' shutdown reports.
    reports: Vec<serde_json::Value>,
    /// Workers the master started, less those killed by the SIGTERM before they were
    /// ready: started an instant before it, they had not installed their handlers yet
    /// (nor served anything), so they died of it without a report.
    reporting: usize,
    /// The master's log.
    log: String,
}

/// Workers the master saw "killed by SIGTERM" that had never said READY=1.
fn killed_before_ready(log: &str) -> usize {
    let pid = |line: &str| {
        line.split("pid=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_owned)
    };
    let ready: HashSet<String> = log
        .lines()
        .filter(|l| l.contains("worker ready"))
        .filter_map(pid)
        .collect();
    log.lines()
        .filter(|l| l.contains("worker stopped") && l.contains("killed by SIGTERM"))
        .filter_map(pid)
        .filter(|p| !ready.contains(p))
        .count()
}

/// Runs the scenario: a mixed load through three reloads with `max_requests` recycling,
/// then SIGTERM while the load still runs.
async fn scenario(app: &Scope, name: &str, unsafe_writer: bool) -> Outcome {
    let dir = std::env::temp_dir().join(format!("taskward-demo-e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let master = Master::start(&dir, unsafe_writer);
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

    // Three reloads, each waited for until its two old workers are being stopped, with
    // max_requests recycling going on meanwhile.
    let replaced = |master: &Master| {
        master
            .log()
            .lines()
            .filter(|l| l.contains("stopping a replaced worker") && l.contains("reload (SIGHUP)"))
            .count()
    };
    for reload in 1..=3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        master.signal(Signal::HUP);
        let deadline = Instant::now() + PATIENCE;
        while replaced(&master) < 2 * reload {
            assert!(
                Instant::now() < deadline,
                "reload {reload} never finished:\n{}",
                master.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // SIGTERM under load: requests in flight are answered (writes committed first); once
    // the workers stop accepting, the loops' requests fail, as the test means them to.
    seen.stopping.store(true, Ordering::Relaxed);
    master.signal(Signal::TERM);
    let exit = tokio::task::spawn_blocking(move || {
        let mut master = master;
        let exit = master.child.wait().expect("waited");
        (exit, master)
    });
    let (exit, master) = exit.await.expect("joined");
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.expect("writer loop");
    }
    let _ = client.close(Duration::from_secs(5)).await;
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
    assert!(seen.reads.load(Ordering::Relaxed) > 0, "reads were made");
    let _ = std::fs::remove_dir_all(&dir);
    Outcome {
        acked: std::mem::take(&mut *seen.acked.lock().expect("lock")),
        failed: std::mem::take(&mut *seen.failed.lock().expect("lock")),
        cut: seen.cut.load(Ordering::Relaxed),
        rows,
        reports,
        reporting: master.count("worker started") - killed_before_ready(&master.log()),
        log: master.log(),
    }
}

// Asserts: through three rolling reloads, max_requests recycling and a SIGTERM under a
// mixed read/write load, every acknowledged write is a row, no request failed before the
// SIGTERM, and every worker wrote a clean shutdown report (no task aborted or stuck, none
// killed).
#[test]
#[expect(
    clippy::print_stderr,
    reason = "the count of cut requests, for the record"
)]
fn no_acknowledged_write_is_lost_and_every_shutdown_is_clean() {
    Harness::multi_thread(2).run(|app| async move {
        let outcome = scenario(&app, "safe", false).await;
        assert!(
            outcome.acked.len() > 100,
            "the load wrote: {}",
            outcome.acked.len()
        );
        let lost: Vec<_> = outcome.acked.difference(&outcome.rows).collect();
        assert!(
            lost.is_empty(),
            "{} acknowledged writes lost: {lost:?}",
            lost.len()
        );
        assert!(
            outcome.failed.is_empty(),
            "{} requests failed: {:?}",
            outcome.failed.len(),
            outcome.failed
        );
        eprintln!("requests cut by the final SIGTERM: {}", outcome.cut);
        assert_eq!(
            outcome.reports.len(),
            outcome.reporting,
            "every worker that got to run wrote its report:\n{}",
            outcome.log
        );
        assert!(!outcome.log.contains("SIGKILL"), "{}", outcome.log);
        for report in &outcome.reports {
            assert_eq!(report["counts"]["aborted"], 0, "{report}");
            assert_eq!(report["counts"]["stuck"], 0, "{report}");
        }
        let _ = app.shutdown(Duration::from_secs(1)).await;
    });
}

// Asserts: the same run with the seed's fire-and-forget writer (acknowledge when queued,
// drop the queue at shutdown) loses acknowledged writes: the check above can fail. (The
// drain alone is tested in `writer.rs`: with writes acknowledged after their commit, a
// writer without it loses no acknowledged write, it fails the requests instead.)
#[test]
fn the_fire_and_forget_writer_loses_acknowledged_writes() {
    Harness::multi_thread(2).run(|app| async move {
        let outcome = scenario(&app, "unsafe", true).await;
        let lost = outcome.acked.difference(&outcome.rows).count();
        assert!(
            lost > 0,
            "fire-and-forget lost nothing of {} writes",
            outcome.acked.len()
        );
        let _ = app.shutdown(Duration::from_secs(1)).await;
    });
}
