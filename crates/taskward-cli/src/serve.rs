//! `taskward serve` from start to exit: check the program, take or bind the sockets, make
//! the private directory of the notify socket, run the [`Master`], clean up.
//!
//! Read [`run`]; [`ExitCode`s](EXIT_KILLED) say how it ended.

use std::ffi::OsStr;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::config::ServeConfig;
use crate::listen::{ListenError, bind_all, inherited};
use crate::master::{Master, Outcome};

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
    /// A socket passed by this master's own supervisor is unusable.
    #[error("the sockets passed in LISTEN_FDS are unusable")]
    Inherit(#[source] io::Error),
    /// The runtime, its directory or the master's sockets could not be set up.
    #[error("cannot set up: {0}")]
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
        let admin = admin_socket(&config).map_err(ServeError::Setup)?;
        let master =
            Master::new(config, listeners, dir.path(), admin).map_err(ServeError::Setup)?;
        let master = master.sockets_passed_in(passed_in);
        master.run().await.map_err(ServeError::Setup)
    })
}

/// The admin socket: the configured one (failing to bind it is an error), or the default
/// in the working directory (failing to bind it, read-only or taken, only a warning: a
/// service must not fail to start for want of its status socket).
fn admin_socket(config: &ServeConfig) -> io::Result<Option<(tokio::net::UnixListener, PathBuf)>> {
    if let Some(path) = &config.admin_socket {
        return crate::admin::bind(path).map(|listener| Some((listener, path.clone())));
    }
    let path = PathBuf::from(DEFAULT_ADMIN_SOCKET);
    match crate::admin::bind(&path) {
        Ok(listener) => Ok(Some((listener, path))),
        Err(error) => {
            tracing::warn!(%error, "running without an admin socket (set --admin-socket)");
            Ok(None)
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

/// A directory only this user can enter, for the notify socket; removed when dropped.
struct RuntimeDir(PathBuf);

impl RuntimeDir {
    /// Under `$XDG_RUNTIME_DIR` when set (private to the user already), else the temp
    /// dir; the name has the master's pid (tests and operators find the notify socket by
    /// it) and a random part, so that another user cannot create it first and stop the
    /// master from starting. `create` refuses a path that exists: no one else's directory
    /// is ever used.
    fn create() -> io::Result<Self> {
        use std::hash::{BuildHasher, RandomState};
        let base = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|dir| dir.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        let mut last = None;
        for attempt in 0..8_u32 {
            let random = RandomState::new().hash_one(attempt) & 0xffff_ffff;
            let path = base.join(format!("taskward-{}-{random:08x}", std::process::id()));
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(Self(path)),
                Err(error) => last = Some(error),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no runtime directory")))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for RuntimeDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
