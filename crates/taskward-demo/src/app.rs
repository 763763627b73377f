//! The service assembled: startup tasks (`init_db`, `warm_cache`), the periodic job, the
//! writer, the client, the routes, all in one app scope, run as a `taskward serve` worker.
//!
//! Read [`run`].

use std::path::PathBuf;
use std::time::Duration;

use taskward::{RestartPolicy, Scope, ShutdownReport, TaskContext};
use taskward_http::{Client, Worker};

use crate::cache::Cache;
use crate::db::{Db, SharedDb, off_thread};
use crate::routes::{AppState, router};
use crate::writer::{Mode, channel, run_writer};

/// What the service is told.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) db: PathBuf,
    pub(crate) upstream: Option<String>,
    pub(crate) upstream_timeout: Duration,
    pub(crate) report_dir: Option<PathBuf>,
    /// Whether /debug/tasks is served on the service's port (`--debug-tasks`).
    pub(crate) debug_tasks: bool,
    pub(crate) writer: Mode,
}

/// Items `warm_cache` loads.
const WARM_ITEMS: usize = 10_000;
const _: () = assert!(WARM_ITEMS <= crate::cache::CAPACITY, "what is warmed fits");

/// Runs the service until a stop signal; returns the app's shutdown report.
pub(crate) async fn run(
    settings: Settings,
    worker: Worker,
) -> Result<ShutdownReport, Box<dyn std::error::Error>> {
    let app = Scope::root("demo");
    let startup = app.child("startup")?;
    let db = SharedDb::default();
    let cache = Cache::default();

    // init_db: retried with a growing delay until it works; meanwhile /readyz says 503.
    let path = settings.db.clone();
    let opened = db.clone();
    startup
        .task("init_db")
        .restart(
            RestartPolicy::default()
                .backoff(Duration::from_millis(200), Duration::from_secs(5))
                .intensity(u32::MAX, Duration::from_secs(60)),
        )
        .spawn(move |_ctx| {
            let (path, opened) = (path.clone(), opened.clone());
            async move {
                let db = off_thread(move || Db::open(&path)).await?;
                opened.set(db);
                Ok::<_, String>(())
            }
        })?;
    // warm_cache: a failure is logged (the default policy) and leaves the cache cold; the
    // service still turns ready once it ends, reads going to the database meanwhile.
    let (warm_db, warm_cache) = (db.clone(), cache.clone());
    startup
        .task("warm_cache")
        .spawn_with(move |ctx| warm(ctx, warm_db, warm_cache))?;

    let stats = cache.clone();
    app.task("cache_stats").spawn_with(move |ctx| async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                () = ctx.cancelled() => break,
                _ = tick.tick() => stats.refresh_stats(),
            }
        }
    })?;

    let mode = settings.writer;
    let (writer, jobs) = channel(mode);
    let (writer_db, writer_cache) = (db.clone(), cache.clone());
    app.task("writer")
        .spawn_with(move |ctx| run_writer(ctx, writer_db, writer_cache, jobs, mode))?;

    let state = AppState {
        db,
        cache,
        writer,
        client: Client::new(&app, settings.upstream_timeout)?,
        upstream: upstream_url(&settings, &worker),
    };
    // The task list names client addresses and source paths: served only when asked.
    let report = worker
        .debug_tasks(settings.debug_tasks)
        .run(&app, &startup, router(state))
        .await?;
    if report.is_clean() {
        tracing::info!(%report, "stopped cleanly");
    } else {
        tracing::warn!(%report, "stopped, not cleanly");
    }
    if let Some(dir) = &settings.report_dir {
        write_report(dir, &report)?;
    }
    Ok(report)
}

/// Where `GET /upstream` goes: the configured upstream, else this worker's own `/builtin`
/// on the first TCP address it serves.
fn upstream_url(settings: &Settings, worker: &Worker) -> Option<String> {
    if let Some(url) = &settings.upstream {
        return Some(url.clone());
    }
    let url = match worker.local_addrs().first() {
        Some(addr) if addr.ip().is_unspecified() => {
            // Bound to every interface: loopback reaches it.
            let loopback: std::net::IpAddr = if addr.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            };
            format!(
                "http://{}/builtin",
                std::net::SocketAddr::new(loopback, addr.port())
            )
        }
        Some(addr) => format!("http://{addr}/builtin"),
        None => return None,
    };
    Some(url)
}

/// Loads the newest items into the cache once the database is open.
async fn warm(ctx: TaskContext, db: SharedDb, cache: Cache) -> Result<(), String> {
    let db = tokio::select! {
        db = db.wait() => db,
        () = ctx.cancelled() => return Ok(()),
    };
    let items = off_thread(move || db.latest(WARM_ITEMS)).await?;
    tracing::info!(items = items.len(), "cache warmed");
    cache.put(items);
    Ok(())
}

/// Writes the report as `<dir>/<pid>.json`, for whoever checks that shutdowns were clean.
fn write_report(dir: &std::path::Path, report: &ShutdownReport) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{}.json", std::process::id()));
    let json = serde_json::to_vec_pretty(report).map_err(std::io::Error::other)?;
    std::fs::write(path, json)
}
