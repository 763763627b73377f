//! Liveness and readiness over HTTP: `/healthz` and `/readyz`, for load balancers and
//! orchestrators. (The live task list, `/debug/tasks`, is in `debug.rs`, served only on
//! request.)
//!
//! Read [`Health`] first: one shared switchboard, flipped to ready when the application's
//! startup is done and to draining when its server starts to shut down, and served by
//! [`Health::router`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use taskward::{Scope, SpawnError};

/// Where the health endpoints are mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthPaths {
    /// Liveness: 200 while the process serves at all.
    pub live: String,
    /// Readiness: 200 once started and until draining, 503 otherwise.
    pub ready: String,
    /// The process-wide snapshot of live tasks, as bounded JSON; not part of
    /// [`Health::router_at`], served only where asked for (see
    /// [`Worker::debug_tasks`](crate::Worker::debug_tasks) and
    /// [`debug::tasks_router`](crate::debug::tasks_router)).
    pub tasks: String,
}

impl Default for HealthPaths {
    fn default() -> Self {
        Self {
            live: "/healthz".to_owned(),
            ready: "/readyz".to_owned(),
            tasks: "/debug/tasks".to_owned(),
        }
    }
}

/// Whether the service is ready for traffic: started, and not shutting down.
///
/// A cheap `Clone` handle; every clone sees the same state.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use taskward::Scope;
/// use taskward_http::Health;
///
/// let app = Scope::root("app");
/// let startup = app.child("startup").expect("open");
/// startup.spawn("warm_cache", async {}).expect("open");
///
/// let health = Health::new();
/// health.ready_after(&app, &startup).expect("open");
/// startup.wait().await;
/// tokio::task::yield_now().await;
/// assert!(health.is_ready());
///
/// health.set_draining();
/// assert!(!health.is_ready());
/// # let _ = app.shutdown(std::time::Duration::ZERO).await;
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Health {
    inner: Arc<State>,
}

#[derive(Debug, Default)]
struct State {
    started: AtomicBool,
    draining: AtomicBool,
}

impl Health {
    /// Not started, not draining.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks startup as done.
    pub fn set_started(&self) {
        // Release/Acquire: a reader that sees "started" sees what startup did before.
        self.inner.started.store(true, Ordering::Release);
    }

    /// Marks the service as draining: not ready any more, for good.
    pub fn set_draining(&self) {
        self.inner.draining.store(true, Ordering::Release);
    }

    /// Whether the service is ready: started and not draining.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.inner.started.load(Ordering::Acquire) && !self.inner.draining.load(Ordering::Acquire)
    }

    /// Whether the service is draining.
    #[must_use]
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Acquire)
    }

    /// Marks startup as done once every task of `startup` has ended, watched by a task
    /// spawned into `owner` (which must not be `startup` itself or a scope inside it).
    ///
    /// # Errors
    ///
    /// See [`Scope::spawn`].
    pub fn ready_after(&self, owner: &Scope, startup: &Scope) -> Result<(), SpawnError> {
        let health = self.clone();
        let startup = startup.clone();
        owner.task("readiness").spawn_with(move |ctx| async move {
            tokio::select! {
                () = startup.wait() => health.set_started(),
                () = ctx.cancelled() => {}
            }
        })?;
        Ok(())
    }

    /// A router serving liveness and readiness at the default [`HealthPaths`], to `merge`
    /// into the application's router or serve on its own. The task list is not in it:
    /// see [`debug::tasks_router`](crate::debug::tasks_router).
    pub fn router(&self) -> Router {
        self.router_at(&HealthPaths::default())
    }

    /// A router serving liveness and readiness at `paths` (`paths.tasks` is not served).
    pub fn router_at(&self, paths: &HealthPaths) -> Router {
        let health = self.clone();
        Router::new()
            .route(&paths.live, get(|| async { (StatusCode::OK, "ok\n") }))
            .route(
                &paths.ready,
                get(move || {
                    let ready = health.is_ready();
                    async move {
                        if ready {
                            (StatusCode::OK, "ready\n")
                        } else {
                            (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                        }
                    }
                }),
            )
    }
}
