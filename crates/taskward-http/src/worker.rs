//! A service run as a worker of a process manager (`taskward serve`, or systemd), or
//! alone: the listening sockets it is handed, readiness and heartbeats it reports, and the
//! signals that stop it.
//!
//! Read [`Worker`]. The protocol, systemd's with taskward's extensions, is described
//! and parsed in [`protocol`](crate::protocol): sockets arrive as `LISTEN_FDS` /
//! `LISTEN_PID` (fd 3 on), settings as `TASKWARD_*` variables, and state goes out as
//! datagrams to `NOTIFY_SOCKET`.

use std::net::{SocketAddr, TcpListener as StdListener, ToSocketAddrs};
use std::num::NonZeroU64;
use std::os::unix::net::UnixListener as StdUnixListener;
use std::time::Duration;

use axum::Router;
use sd_notify::NotifyState;
use taskward::signal::{Signals, UnixSignal};
use taskward::{Scope, ShutdownReport, TaskContext};

use crate::error::WorkerError;
use crate::health::{Health, HealthPaths};
use crate::limits::{self, ConnectionLimit};
use crate::listener::ListenAddr;
use crate::notify::Notifier;
use crate::protocol::{WorkerEnv, early_report_at, requests_field};
use crate::requests::RequestCount;
use crate::server::{Server, ServerHandle};
use crate::timeouts::Timeouts;

/// How often the requests served are reported when they change, at most.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// An HTTP service run as a worker: serves on the sockets a supervisor passed (or binds
/// its own when run alone), says `READY=1` once the app's startup tasks are done, sends
/// heartbeats and request counts from a tracked task, and turns SIGTERM into a graceful
/// shutdown of the server and the app (`STOPPING=1` first). SIGINT or SIGQUIT skip to the
/// abort, at any time; a repeated SIGTERM does not (a supervisor may send it twice: systemd
/// to the whole group, then the manager to its worker). SIGHUP is ignored: the manager
/// reloads by replacing workers.
///
/// # Examples
///
/// ```no_run
/// # #[tokio::main]
/// # async fn main() -> Result<(), taskward_http::WorkerError> {
/// use axum::{Router, routing::get};
/// use taskward::Scope;
/// use taskward_http::Worker;
///
/// let app = Scope::root("app");
/// let startup = app.child("startup")?;
/// startup.spawn("warm_cache", async { /* ... */ })?;
/// let router = Router::new().route("/", get(|| async { "hello" }));
/// let report = Worker::listen("127.0.0.1:8000")?.run(&app, &startup, router).await?;
/// assert!(report.is_clean(), "{report}");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Worker {
    listeners: Vec<Socket>,
    /// The sockets were passed by a supervisor, and other workers accept on them too:
    /// accept only once ready, or a starting worker takes requests it cannot answer yet.
    shared: bool,
    deadline: Duration,
    drain_delay: Duration,
    max_requests: Option<u64>,
    watchdog: Option<Duration>,
    timeouts: Timeouts,
    max_connections: Option<usize>,
    debug_tasks: bool,
}

impl Worker {
    /// The shutdown deadline when no supervisor says otherwise: Gunicorn's default
    /// graceful timeout.
    pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);

    /// Takes the listeners a supervisor passed (`LISTEN_FDS`, checked against
    /// `LISTEN_PID`), TCP or unix stream sockets, or, when none were passed, binds `addr`
    /// (TCP).
    ///
    /// The variables are read and unset, as `sd_listen_fds(1)` does, so that programs
    /// this one starts do not take the sockets for theirs: call it at the start of
    /// `main`, before other threads read the environment.
    ///
    /// # Errors
    ///
    /// [`WorkerError::Inherit`] if a passed socket is neither a TCP nor a unix stream
    /// listener;
    /// [`WorkerError::NotPassed`] if started by `taskward serve` without a socket;
    /// [`WorkerError::Bind`] if `addr` cannot be bound; [`WorkerError::Env`] if a
    /// variable of the [protocol](crate::protocol) holds a bad value (`TASKWARD_*`,
    /// `LISTEN_FDS`, `WATCHDOG_USEC`…). For the last two, exit with
    /// [`WorkerError::exit_code`]: a process manager stops rather than restarts a worker
    /// that cannot use its settings.
    pub fn listen(addr: impl ToSocketAddrs + std::fmt::Debug) -> Result<Self, WorkerError> {
        // Checked before `listenfd` reads them: it would take a malformed count for
        // none, and a huge one for as many descriptors.
        let read = WorkerEnv::from_process()?;
        let mut passed = listenfd::ListenFd::from_env();
        let mut listeners = Vec::with_capacity(read.listen_fds.min(passed.len()));
        for index in 0..passed.len() {
            let taken = match passed.take_tcp_listener(index) {
                Ok(tcp) => tcp.map(Socket::Tcp),
                // On a type mismatch listenfd leaves the fd in its place, so the same
                // index can be tried as a unix socket.
                Err(source) => match passed.take_unix_listener(index) {
                    Ok(unix) => unix.map(Socket::Unix),
                    Err(_) => {
                        return Err(WorkerError::Inherit {
                            fd: crate::protocol::LISTEN_FDS_START as usize + index,
                            source,
                        });
                    }
                },
            };
            listeners.extend(taken);
        }
        if listeners.is_empty() && read.worker_id.is_some() {
            return Err(WorkerError::NotPassed);
        }
        let shared = !listeners.is_empty();
        if listeners.is_empty() {
            let shown = format!("{addr:?}");
            let listener = StdListener::bind(addr).map_err(|source| WorkerError::Bind {
                addr: shown,
                source,
            })?;
            listeners.push(Socket::Tcp(listener));
        }
        // Nine tenths, so that the worker reports before the manager's SIGKILL.
        let deadline = read
            .graceful_timeout
            .map_or(Self::DEFAULT_DEADLINE, |timeout| timeout - timeout / 10);
        let drain_delay = read.drain_delay.unwrap_or(Duration::ZERO);
        let max_requests = read.max_requests.map(NonZeroU64::get);
        let watchdog = read.watchdog;
        Ok(Self {
            listeners,
            shared,
            deadline,
            drain_delay,
            max_requests,
            watchdog,
            timeouts: Timeouts::default(),
            max_connections: None,
            debug_tasks: false,
        })
    }

    /// The graceful shutdown's deadline (by default nine tenths of the supervisor's
    /// graceful timeout, or [`DEFAULT_DEADLINE`](Self::DEFAULT_DEADLINE)).
    #[must_use]
    pub fn shutdown_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// How long to keep accepting after readiness flips (see [`Server::drain_delay`]);
    /// by default the value of
    /// [`TASKWARD_DRAIN_DELAY`](crate::protocol::env::DRAIN_DELAY), or zero. Behind a load balancer that
    /// polls `/readyz` (Kubernetes), set it above the time the balancer takes to notice.
    /// For reloads under `taskward serve` zero is right: the manager stops a worker only
    /// once another accepts on the same socket.
    #[must_use]
    pub fn drain_delay(mut self, delay: Duration) -> Self {
        self.drain_delay = delay;
        self
    }

    /// The timeouts every connection is held to (see [`Timeouts`]; on by default).
    #[must_use]
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// The connections this worker keeps open at most, over all its sockets; at the cap
    /// it stops accepting until one closes (the others wait in the listen queue, for this
    /// worker or another). By default derived from the descriptor limit, once raised (see
    /// [`limits::connections_for`]).
    #[must_use]
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = Some(max);
        self
    }

    /// Serves the live task list at `/debug/tasks` (bounded JSON, see
    /// [`debug::tasks_router`](crate::debug::tasks_router)) next to the application's
    /// routes. Off by default: it names every client's address and the code's source
    /// paths, so turn it on only where clients are trusted (a private network, a
    /// development machine). Elsewhere serve [`debug::tasks_router`](crate::debug::tasks_router)
    /// on a listener of its own bound to `127.0.0.1`, and reach it with
    /// `kubectl port-forward` or ssh.
    #[must_use]
    pub fn debug_tasks(mut self, serve: bool) -> Self {
        self.debug_tasks = serve;
        self
    }

    /// The TCP addresses served; unix sockets are left out (see
    /// [`listen_addrs`](Self::listen_addrs)).
    #[must_use]
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| match l {
                Socket::Tcp(l) => l.local_addr().ok(),
                Socket::Unix(_) => None,
            })
            .collect()
    }

    /// Every address served, TCP or unix.
    #[must_use]
    pub fn listen_addrs(&self) -> Vec<ListenAddr> {
        self.listeners
            .iter()
            .filter_map(|l| match l {
                Socket::Tcp(l) => l.local_addr().ok().map(ListenAddr::Tcp),
                Socket::Unix(l) => l
                    .local_addr()
                    .ok()
                    .map(|a| ListenAddr::unix(a.as_pathname())),
            })
            .collect()
    }

    /// Serves `router` (with `/healthz` and `/readyz` merged in, and `/debug/tasks` if
    /// [asked for](Self::debug_tasks)) in
    /// `app` until a stop signal, then shuts the servers and `app` down within the
    /// deadline: the servers drain first, within nine tenths of it at most, and `app`'s
    /// own tasks get what is left, never less than a tenth (a request that never ends
    /// cannot leave a writer no time to drain its queue).
    ///
    /// `/readyz` turns ready, and `READY=1` is sent, once every task of `startup` has
    /// ended. On sockets a supervisor passed (shared with other workers), accepting
    /// starts only then: the ready workers take the queued connections meanwhile. On a
    /// socket of its own the worker accepts at once and `/readyz` says 503 until ready.
    ///
    /// # Return Value
    ///
    /// The report of `app`'s shutdown.
    ///
    /// # Errors
    ///
    /// [`WorkerError`] if the signal handlers, the servers or the worker's own tasks
    /// cannot start.
    ///
    /// # Cancel safety
    ///
    /// Dropped before a signal, the servers keep serving in `app`; dropped during the
    /// shutdown, the shutdown goes on (see [`taskward::ShutdownFuture`]).
    pub async fn run(
        self,
        app: &Scope,
        startup: &Scope,
        router: Router,
    ) -> Result<ShutdownReport, WorkerError> {
        // Opened first, while descriptors are plenty: every later notification reuses it.
        let notifier = Notifier::from_env();
        let limit = connection_limit(self.max_connections);
        let mut signals = StopSignals::new()?;
        if self.shared {
            // Connections wait in the shared queue, taken by the ready workers, until
            // this one's startup is done. (Alone, or behind a load balancer that polls
            // /readyz, serving at once is right: the listener is up, readiness says 503.)
            tokio::select! {
                () = startup.wait() => {}
                stop = signals.recv() => {
                    notify(&notifier, &[NotifyState::Stopping]);
                    return Ok(match stop {
                        Stop::Now => app.abort_now().await,
                        Stop::Graceful => app.shutdown(self.deadline).await,
                    });
                }
            }
        }
        let health = Health::new();
        health.ready_after(app, startup)?;
        let requests = RequestCount::new();
        let mut router = router.merge(health.router());
        if self.debug_tasks {
            router = router.merge(crate::debug::tasks_router(&HealthPaths::default().tasks));
        }
        let mut servers = Vec::with_capacity(self.listeners.len());
        for listener in self.listeners {
            let server = match listener {
                Socket::Tcp(listener) => Server::from_std(listener)?,
                Socket::Unix(listener) => Server::from_std_unix(listener)?,
            };
            let server = server
                .health(health.clone())
                .requests(requests.clone())
                .drain_delay(self.drain_delay)
                .timeouts(self.timeouts)
                .connection_limit(limit.clone())
                .serve(app, router.clone())?;
            tracing::info!(addr = %server.listen_addr(), "worker serving");
            servers.push(server);
        }
        let report = Reporter {
            notifier: notifier.clone(),
            startup: startup.clone(),
            requests,
            watchdog: self.watchdog,
            max_requests: self.max_requests,
        };
        app.task("notify").spawn_with(move |ctx| report.run(ctx))?;

        tokio::select! {
            stop = signals.recv() => if stop == Stop::Now {
                notify(&notifier, &[NotifyState::Stopping]);
                return Ok(app.abort_now().await);
            },
            () = app.cancelled() => {}
        }
        notify(&notifier, &[NotifyState::Stopping]);
        Ok(stop(app, servers, self.deadline, &mut signals).await)
    }
}

/// A listening socket a worker serves: passed by its supervisor, or bound.
#[derive(Debug)]
enum Socket {
    Tcp(StdListener),
    Unix(StdUnixListener),
}

/// The graceful stop: every server drains, then the app's own tasks stop, all within
/// `deadline`; a second stop signal skips to the abort. The servers get nine tenths of
/// it at most, so that a request that never ends cannot leave the app's tasks (a writer
/// draining its queue, say) no time at all.
async fn stop(
    app: &Scope,
    servers: Vec<ServerHandle>,
    deadline: Duration,
    signals: &mut StopSignals,
) -> ShutdownReport {
    let started = tokio::time::Instant::now();
    let for_servers = deadline - deadline / 10;
    let drained =
        futures_util::future::join_all(servers.into_iter().map(|s| s.shutdown(for_servers)));
    let graceful = async move {
        for report in drained.await {
            tracing::info!(%report, "server stopped");
        }
        app.shutdown(deadline.saturating_sub(started.elapsed()))
            .await
    };
    tokio::pin!(graceful);
    loop {
        tokio::select! {
            report = &mut graceful => return report,
            stop = signals.recv() => if stop == Stop::Now {
                // The shutdown above is the same one: it ends at once.
                drop(app.abort_now());
            },
        }
    }
}

/// How a worker is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// SIGTERM: drain.
    Graceful,
    /// SIGINT or SIGQUIT: abort.
    Now,
}

/// A worker's stop signals: [`Signals`] with a worker's mapping. Unlike
/// [`Signals::recv`], SIGTERM never escalates (under a manager it may arrive twice for one
/// stop), SIGINT is a fast stop, and SIGHUP is ignored.
struct StopSignals(Signals);

impl StopSignals {
    fn new() -> Result<Self, WorkerError> {
        Signals::new()
            .map(Self)
            .map_err(|error| WorkerError::Signal {
                signal: error.signal,
                source: error.source,
            })
    }

    /// The next stop request; SIGHUP is logged and waited past.
    async fn recv(&mut self) -> Stop {
        loop {
            match self.0.next().await {
                UnixSignal::Term => {
                    tracing::info!(signal = "SIGTERM", "graceful stop requested");
                    return Stop::Graceful;
                }
                UnixSignal::Int => {
                    tracing::warn!(signal = "SIGINT", "immediate stop requested");
                    return Stop::Now;
                }
                UnixSignal::Quit => {
                    tracing::warn!(signal = "SIGQUIT", "immediate stop requested");
                    return Stop::Now;
                }
                UnixSignal::Hup => {
                    tracing::info!(
                        "SIGHUP ignored: the process manager reloads by replacing workers"
                    );
                }
                // `UnixSignal` may grow; an unknown signal asks for nothing here.
                _ => {}
            }
        }
    }
}

/// What the worker tells its supervisor, from a task of the app's.
struct Reporter {
    notifier: Notifier,
    startup: Scope,
    requests: RequestCount,
    watchdog: Option<Duration>,
    max_requests: Option<u64>,
}

impl Reporter {
    async fn run(self, ctx: TaskContext) {
        tokio::select! {
            () = self.startup.wait() => notify(&self.notifier, &[NotifyState::Ready, NotifyState::Status("serving")]),
            () = ctx.cancelled() => return,
        }
        // systemd's advice: heartbeat at half the watchdog interval.
        let every = self
            .watchdog
            .map_or(REPORT_EVERY, |w| (w / 2).min(REPORT_EVERY));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reported = 0;
        // Counts reported the moment they are reached rather than at the next tick, so
        // that the manager starts the replacement, and stops this worker, on time.
        let mut marks = self
            .max_requests
            .map(|limit| [early_report_at(limit), limit])
            .into_iter()
            .flatten();
        let mut mark = marks.next();
        loop {
            tokio::select! {
                () = ctx.cancelled() => return,
                _ = tick.tick() => {}
                () = self.requests.reached(mark.unwrap_or(0)), if mark.is_some() => {
                    mark = marks.next();
                }
            }
            let served = self.requests.get();
            let count = requests_field(served);
            let mut states = Vec::with_capacity(2);
            if self.watchdog.is_some() {
                states.push(NotifyState::Watchdog);
            }
            if served != reported {
                states.push(NotifyState::Custom(&count));
                reported = served;
            }
            if !states.is_empty() {
                notify(&self.notifier, &states);
            }
        }
    }
}

/// Sends `states` to the supervisor, if there is one; a failure is logged, not fatal (the
/// supervisor acts on missing heartbeats itself).
fn notify(notifier: &Notifier, states: &[NotifyState<'_>]) {
    if !notifier.is_enabled() {
        return;
    }
    let mut message = String::new();
    for state in states {
        message.push_str(&state.to_string());
        message.push('\n');
    }
    notifier.send_or_warn(&message);
}

/// The worker's cap on open connections: `max` if given, else derived from the
/// descriptor limit, raised to its hard maximum first (and both said in the log).
fn connection_limit(max: Option<usize>) -> ConnectionLimit {
    limits::raise_nofile_and_log();
    let nofile = limits::nofile();
    let limit = ConnectionLimit::new(max.unwrap_or_else(|| limits::connections_for(nofile)));
    tracing::info!(max_connections = limit.max(), nofile = ?nofile, "connection limit");
    limit
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use axum::Router;
    use axum::routing::get;
    use taskward::Scope;
    use tokio::io::AsyncWriteExt;

    use super::{StopSignals, stop};
    use crate::server::Server;

    // Asserts: a request that never ends holds the servers' drain only to nine tenths of
    // the deadline; an app task that needs 10 ms after cancellation still finishes in the
    // tenth left (with the whole deadline given to the servers it was aborted at once).
    #[tokio::test]
    async fn the_app_keeps_a_tenth_of_the_deadline() {
        let app = Scope::root("app");
        let flushed = Arc::new(AtomicBool::new(false));
        let done = flushed.clone();
        app.task("flush")
            .spawn_with(move |ctx| async move {
                ctx.cancelled().await;
                tokio::time::sleep(Duration::from_millis(10)).await;
                done.store(true, Ordering::Release);
            })
            .expect("spawned");
        let entered = Arc::new(tokio::sync::Notify::new());
        let handler = entered.clone();
        let router = Router::new().route(
            "/hang",
            get(move || async move {
                handler.notify_one();
                std::future::pending::<&'static str>().await
            }),
        );
        let server = Server::bind("127.0.0.1:0")
            .await
            .expect("bound")
            .serve(&app, router)
            .expect("serving");
        let mut client = tokio::net::TcpStream::connect(server.local_addr())
            .await
            .expect("connected");
        client
            .write_all(b"GET /hang HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .expect("sent");
        entered.notified().await;

        // 5 s: the servers get 4.5 s, the app 0.5 s for a task that needs 10 ms.
        let mut signals = StopSignals::new().expect("signal handlers");
        let report = stop(&app, vec![server], Duration::from_secs(5), &mut signals).await;
        assert!(
            flushed.load(Ordering::Acquire),
            "the app task was not given time: {report}"
        );
        drop(client);
    }
}
