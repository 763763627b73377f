//! The startup and shutdown of seed 000's service, rebuilt on taskward.
//!
//! The Python service launched `init_db` and `warm_cache` with bare `asyncio.create_task`,
//! kept the tasks in a global list, and cancelled them with a timeout at shutdown; workers
//! still died with "Task was destroyed but it is pending!". Here every task has an owner,
//! a name and a spawn site, shutdown is bounded, and the report names whatever did not stop.
//!
//! ```text
//! cargo run -p taskward --example seed_startup          # Ctrl-C (twice to hurry it)
//! cargo run -p taskward --example seed_startup -- 3     # stops itself after 3 s
//! ```
#![expect(
    clippy::print_stdout,
    reason = "an example prints its report for the reader"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use taskward::signal::{Signals, shutdown_on_signals};
use taskward::{RestartPolicy, Scope, ShutdownPolicy, TaskContext};
use tokio::time::{interval, sleep};

/// Opens the database. The first attempt fails, as a locked SQLite file would.
async fn init_db(attempt: u32) -> anyhow::Result<()> {
    sleep(Duration::from_millis(150)).await;
    if attempt == 0 {
        bail!("database is locked");
    }
    tracing::info!(attempt, "database ready");
    Ok(())
}

/// Loads the hot items into memory.
async fn warm_cache(cache: Arc<AtomicUsize>) -> anyhow::Result<()> {
    sleep(Duration::from_millis(300)).await;
    cache.store(1_000, Ordering::SeqCst);
    tracing::info!(items = 1_000, "cache warm");
    Ok(())
}

/// Refreshes cache statistics every second until asked to stop.
async fn refresh_stats(ctx: TaskContext, cache: Arc<AtomicUsize>) {
    let mut tick = interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = ctx.cancelled() => break,
            _ = tick.tick() => tracing::info!(items = cache.load(Ordering::SeqCst), "cache stats"),
        }
    }
    tracing::info!("stats job stopped");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let run_for = std::env::args()
        .nth(1)
        .map(|s| {
            s.parse::<u64>()
                .context("the argument is a number of seconds")
        })
        .transpose()?;

    let app = Scope::root("app");
    let startup = app.child("startup")?;
    let cache = Arc::new(AtomicUsize::new(0));

    // Startup runs in the background: the listener would be up at once.
    let attempts = Arc::new(AtomicU32::new(0));
    startup
        .task("init_db")
        .restart(RestartPolicy::default().intensity(3, Duration::from_secs(30)))
        .spawn(move |_ctx| init_db(attempts.fetch_add(1, Ordering::SeqCst)))?;
    startup.spawn("warm_cache", warm_cache(cache.clone()))?;
    app.task("refresh_stats")
        .spawn_with(move |ctx| refresh_stats(ctx, cache))?;
    // A task written without cancellation in mind: shutdown aborts it and says so.
    app.spawn("legacy_poller", async {
        loop {
            sleep(Duration::from_millis(500)).await;
        }
    })?;
    app.on_shutdown("flush_metrics", || async {
        tracing::info!("metrics flushed");
    })?;

    let policy = ShutdownPolicy::new(Duration::from_secs(2));
    let report = match run_for {
        Some(secs) => {
            sleep(Duration::from_secs(secs)).await;
            app.shutdown_with(policy).await
        }
        None => shutdown_on_signals(&app, &mut Signals::new()?, policy).await,
    };
    println!("{report}");
    Ok(())
}
