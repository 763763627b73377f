//! The master's private directory, where its notify socket lives: where it is made, whom
//! it trusts, and the leftovers of dead masters it removes. Read [`RuntimeDir::create`].
//!
//! The directory is `taskward-<pid>-<8 hex digits>` under `$XDG_RUNTIME_DIR` when that
//! belongs to this user and no one else may write to it, else under the temp dir. Who can
//! replace it can read every worker's `READY=1` and heartbeats, and make the master kill
//! them all: a directory writable by another user (`su` without `-`, `sudo -E`) is not
//! used.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

/// The variable naming the user's runtime directory (the XDG Base Directory spec).
const XDG_RUNTIME_DIR: &str = "XDG_RUNTIME_DIR";

/// The prefix of a master's directory name.
const PREFIX: &str = "taskward-";

/// A directory only this user can enter, for the notify socket; removed when dropped.
#[derive(Debug)]
pub(crate) struct RuntimeDir(PathBuf);

impl RuntimeDir {
    /// Makes the master's directory under [`base`], after removing the directories of
    /// dead masters of this user there. The name has the master's pid (tests and
    /// operators find the notify socket by it) and a random part, so that another user
    /// cannot create it first and stop the master from starting; a path that exists is
    /// never used.
    ///
    /// # Errors
    ///
    /// What creating the directory said, eight times.
    pub(crate) fn create() -> io::Result<Self> {
        use std::hash::{BuildHasher, RandomState};
        let base = base();
        remove_stale(&base);
        let mut last = None;
        for attempt in 0..8_u32 {
            let random = RandomState::new().hash_one(attempt) & 0xffff_ffff;
            let path = base.join(format!("{PREFIX}{}-{random:08x}", std::process::id()));
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(Self(path)),
                Err(error) => last = Some(error),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no runtime directory")))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for RuntimeDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `$XDG_RUNTIME_DIR` if it is [private](check_private), else the temp dir (with a
/// warning saying why, when it was set).
fn base() -> PathBuf {
    if let Some(dir) = std::env::var_os(XDG_RUNTIME_DIR).filter(|dir| !dir.is_empty()) {
        let dir = PathBuf::from(dir);
        match check_private(&dir, rustix::process::geteuid().as_raw()) {
            Ok(()) => return dir,
            Err(why) => tracing::warn!(
                dir = %dir.display(),
                %why,
                "XDG_RUNTIME_DIR not used: the runtime directory goes in the temp dir"
            ),
        }
    }
    std::env::temp_dir()
}

/// Whether `dir` can hold the master's directory: an absolute path to a directory owned
/// by `uid` that neither its group nor others may write to.
fn check_private(dir: &Path, uid: u32) -> Result<(), String> {
    if !dir.is_absolute() {
        return Err("not an absolute path".to_owned());
    }
    let meta = std::fs::metadata(dir).map_err(|error| error.to_string())?;
    if !meta.is_dir() {
        return Err("not a directory".to_owned());
    }
    if meta.uid() != uid {
        return Err(format!("owned by uid {}, not {uid}", meta.uid()));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "writable by its group or others (mode {:o})",
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

/// The pid in a master's directory name, `taskward-<pid>-<8 hex digits>`.
fn master_pid(name: &str) -> Option<u32> {
    let (pid, random) = name.strip_prefix(PREFIX)?.split_once('-')?;
    let hex = random.len() == 8 && random.bytes().all(|b| b.is_ascii_hexdigit());
    let digits = !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit());
    (hex && digits).then(|| pid.parse().ok()).flatten()
}

/// Removes the directories under `base` left by masters of this user that died without
/// cleaning up (SIGKILL). A directory stays unless its pid is gone *and* no socket in it
/// answers: a master in another pid namespace (a container sharing the temp dir) has a
/// pid this one cannot see, but its notify socket still accepts.
fn remove_stale(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    let uid = rustix::process::geteuid().as_raw();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(master_pid) else {
            continue;
        };
        let path = entry.path();
        // symlink_metadata: a link is not a master's directory, whatever it points to.
        let ours =
            std::fs::symlink_metadata(&path).is_ok_and(|meta| meta.is_dir() && meta.uid() == uid);
        if !ours || pid == std::process::id() || alive(pid) || answers(&path) {
            continue;
        }
        match std::fs::remove_dir_all(&path) {
            Ok(()) => tracing::info!(
                dir = %path.display(),
                pid,
                "removed the runtime directory of a master that is gone"
            ),
            Err(error) => {
                tracing::debug!(dir = %path.display(), %error, "stale runtime directory kept")
            }
        }
    }
}

/// Whether a process `pid` exists (ours or not: `EPERM` says it does).
fn alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    !matches!(
        rustix::process::test_kill_process(pid),
        Err(rustix::io::Errno::SRCH)
    )
}

/// Whether a datagram socket in `dir` has a process behind it: `connect` succeeds on a
/// bound socket and is refused on the file a dead one left (nothing is sent).
fn answers(dir: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|entry| {
        entry.file_type().is_ok_and(|kind| kind.is_socket())
            && std::os::unix::net::UnixDatagram::unbound()
                .and_then(|socket| socket.connect(entry.path()))
                .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::temp_dir::TempDir;

    #[test]
    fn master_directory_names() {
        assert_eq!(master_pid("taskward-123-0badf00d"), Some(123));
        assert_eq!(master_pid("taskward-1-ABCDEF01"), Some(1));
        for other in [
            "taskward-123-0badf00",
            "taskward-123-0badf00dd",
            "taskward-123-0badf00g",
            "taskward--0badf00d",
            "taskward-e2e-123-name",
            "taskward-cli-notify-123-4",
            "taskward-12a-0badf00d",
            "other-123-0badf00d",
            "taskward-99999999999-0badf00d",
        ] {
            assert_eq!(master_pid(other), None, "{other}");
        }
    }

    // Asserts: a runtime dir writable by group or others, or owned by another uid, is
    // refused, with the reason (before: any existing directory was used).
    #[test]
    fn only_a_private_directory_of_this_user_is_trusted() {
        let dir = TempDir::new("xdg");
        let uid = rustix::process::geteuid().as_raw();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .expect("chmod");
        assert_eq!(check_private(dir.path(), uid), Ok(()));
        assert_eq!(
            check_private(dir.path(), uid + 1),
            Err(format!("owned by uid {uid}, not {}", uid + 1))
        );
        for mode in [0o777, 0o720, 0o702] {
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode))
                .expect("chmod");
            assert_eq!(
                check_private(dir.path(), uid),
                Err(format!("writable by its group or others (mode {mode:o})"))
            );
        }
        assert_eq!(
            check_private(Path::new("relative"), uid),
            Err("not an absolute path".to_owned())
        );
    }

    // Asserts: the directory of a dead master is removed, that of a live pid stays, and
    // so does one whose socket answers even though its pid is not visible here.
    #[test]
    fn stale_directories_of_dead_masters_are_removed() {
        let base = TempDir::new("stale");
        let dead = {
            let mut child = std::process::Command::new("true")
                .spawn()
                .expect("true runs");
            let pid = child.id();
            child.wait().expect("reaped");
            pid
        };
        let dead_dir = base.path().join(format!("taskward-{dead}-0badf00d"));
        let unrelated = base.path().join(format!("taskward-e2e-{dead}-x"));
        let answering = base.path().join(format!("taskward-{dead}-f00dfeed"));
        for dir in [&dead_dir, &unrelated, &answering] {
            std::fs::create_dir(dir).expect("mkdir");
        }
        std::fs::write(dead_dir.join("notify.sock"), b"").expect("a leftover file");
        let bound = std::os::unix::net::UnixDatagram::bind(answering.join("notify.sock"))
            .expect("a live socket");

        // A live pid other than this process's (skipped as "this master"): the parent's.
        let parent = rustix::process::getppid().map_or(1, |pid| pid.as_raw_nonzero().get());
        let live_parent = base.path().join(format!("taskward-{parent}-0badf00d"));
        std::fs::create_dir(&live_parent).expect("mkdir");

        remove_stale(base.path());
        assert!(!dead_dir.exists(), "a dead master's directory is removed");
        assert!(live_parent.exists(), "a live pid's stays");
        assert!(unrelated.exists(), "other names are not touched");
        assert!(answering.exists(), "a directory whose socket answers stays");
        drop(bound);
    }
}
