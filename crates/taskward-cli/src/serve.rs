//! `taskward serve` from start to exit: check the program, take or bind the sockets, make
//! the private directory of the notify socket, run the [`Master`], clean up.
//!
//! Read [`run`]; [`ExitCode`s](EXIT_KILLED) say how it ended.

use std::ffi::OsStr;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use taskward_http::protocol::EnvError;

use crate::config::ServeConfig;
use crate::listen::{ListenError, bind_all, inherited};
use crate::master::{Master, Outcome};
use crate::runtime_dir::RuntimeDir;

/// Exit code: every worker stopped in time.
pub const EXIT_CLEAN: u8 = 0;
/// Exit code: the master could not start (program, sockets, directories).
pub const EXIT_START: u8 = 1;
/// Exit code: bad flags or configuration (as clap's own usage errors).
pub const EXIT_CONFIG: u8 = 2;
/// Exit code: stopped, but a worker had to be killed at the stop deadline.
pub const EXIT_KILLED: u8 = 3;

/// Where the admin socket is when the configuration names none: in the working
/// directory, where `taskward status` run from the same place finds it.
pub const DEFAULT_ADMIN_SOCKET: &str = "taskward.sock";

/// `taskward serve` could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The program is not there.
    #[error("program not found: {}", .0.display())]
    ProgramNotFound(PathBuf),
    /// The program is there but cannot be run.
    #[error("program is not executable: {}", .0.display())]
    NotExecutable(PathBuf),
    /// A listening socket could not be bound.
    #[error(transparent)]
    Listen(#[from] ListenError),
    /// A variable of the socket activation protocol in the master's own environment
    /// (`LISTEN_FDS`, `LISTEN_PID`) holds a bad value.
    #[error("environment variable {}: expected {}, found {}", .0.var, .0.expected, .0.found)]
    Env(EnvError),
    /// Another process accepts on the admin socket's path (another master in the same
    /// directory?): running beside it, `taskward status` would show its data.
    #[error(
        "admin socket {}: another process accepts there; stop it, or give this master its own with --admin-socket",
        .0.display()
    )]
    AdminInUse(PathBuf),
    /// A socket passed by this master's own supervisor is unusable.
    #[error("the sockets passed in LISTEN_FDS are unusable")]
    Inherit(#[source] io::Error),
    /// The runtime, its directory or the master's sockets could not be set up.
    #[error("cannot set up")]
    Setup(#[source] io::Error),
}

/// Runs `taskward serve` with `config` until it is stopped by a signal.
///
/// Call it from `main` before any other thread starts: socket activation variables are
/// read and unset here.
///
/// # Errors
///
/// [`ServeError`] if anything needed to start is missing; once workers run, failures are
/// logged and handled, not returned.
pub fn run(config: ServeConfig) -> Result<Outcome, ServeError> {
    check_program(&config.program)?;
    // Checked before `listenfd` reads them: it takes a malformed count for none, and a
    // huge one for as many descriptors.
    taskward_http::protocol::listen_fds(|name| std::env::var_os(name), std::process::id())
        .map_err(ServeError::Env)?;
    // Before anything is opened, and so that every worker inherits it: a master at the
    // soft limit (1,024 under systemd) cannot accept an admin connection or start a worker.
    taskward_http::limits::raise_nofile_and_log();
    let passed = inherited().map_err(ServeError::Inherit)?;
    let passed_in = !passed.is_empty();
    // Descriptors this process inherited without close-on-exec (a parent's pipe, say) are
    // not the workers'; the sockets they get are placed at fd 3 on for each of them.
    crate::os::close_on_exec_from(3);
    let listeners = if passed.is_empty() {
        let backlog = i32::try_from(config.backlog).unwrap_or(i32::MAX);
        let bound = bind_all(&config.bind, backlog)?;
        for (addr, socket) in config.bind.iter().zip(&bound) {
            // The address bound, which for port 0 is not the one asked for.
            match rustix::net::getsockname(socket).map(std::net::SocketAddr::try_from) {
                Ok(Ok(actual)) => tracing::info!(addr = %actual, "listening"),
                _ => tracing::info!(%addr, "listening"),
            }
        }
        bound
    } else {
        tracing::info!(
            sockets = passed.len(),
            "using the sockets passed by the supervisor (LISTEN_FDS); --bind ignored"
        );
        passed
    };
    let dir = RuntimeDir::create().map_err(ServeError::Setup)?;
    // One thread, this one: workers get SIGTERM when the thread that started them exits
    // (PR_SET_PDEATHSIG), which must therefore be the master's main thread.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ServeError::Setup)?;
    runtime.block_on(async {
        let admin = admin_socket(&config)?;
        let master =
            Master::new(config, listeners, dir.path(), admin).map_err(ServeError::Setup)?;
        let master = master.sockets_passed_in(passed_in);
        master.run().await.map_err(ServeError::Setup)
    })
}

/// The admin socket: the configured one (failing to bind it is an error), or the default
/// in the working directory. Another process accepting on either is an error. Failing to
/// bind the default for another reason (a read-only directory) is only a warning: a
/// service must not fail to start for want of its status socket.
fn admin_socket(
    config: &ServeConfig,
) -> Result<Option<(tokio::net::UnixListener, PathBuf)>, ServeError> {
    let (path, configured) = match &config.admin_socket {
        Some(path) => (path.clone(), true),
        None => (PathBuf::from(DEFAULT_ADMIN_SOCKET), false),
    };
    match crate::admin::bind(&path) {
        Ok(listener) => Ok(Some((listener, path))),
        Err(error) if error.kind() == io::ErrorKind::AddrInUse => Err(ServeError::AdminInUse(path)),
        Err(error) if configured => Err(ServeError::Setup(error)),
        Err(error) => {
            tracing::warn!(%error, "running without an admin socket (set --admin-socket)");
            Ok(None)
        }
    }
}

impl ServeError {
    /// The exit code for this error: [`EXIT_CONFIG`] for a bad setting, [`EXIT_START`]
    /// otherwise.
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        match self {
            // An unresolvable `bind` host was a configuration error when names were
            // resolved at load; it stays one now that they are resolved at bind.
            Self::Env(_) | Self::Listen(ListenError::Resolve { .. }) => EXIT_CONFIG,
            _ => EXIT_START,
        }
    }
}

/// Checks that `program` exists and is executable, searching `PATH` for a bare name, so
/// that a typo is one clear error rather than N crashing workers.
///
/// # Errors
///
/// [`ServeError::ProgramNotFound`] or [`ServeError::NotExecutable`].
pub fn check_program(program: &OsStr) -> Result<PathBuf, ServeError> {
    let path = Path::new(program);
    let candidates: Vec<PathBuf> = if path.components().count() > 1 || path.is_absolute() {
        vec![path.to_owned()]
    } else {
        std::env::var_os("PATH")
            .map(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join(path))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut found = None;
    for candidate in candidates {
        if let Ok(meta) = std::fs::metadata(&candidate) {
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return Ok(candidate);
            }
            found.get_or_insert(candidate);
        }
    }
    match found {
        Some(candidate) => Err(ServeError::NotExecutable(candidate)),
        None => Err(ServeError::ProgramNotFound(path.to_owned())),
    }
}
