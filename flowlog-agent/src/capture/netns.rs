//! Running attach-time work inside a named network namespace.
//!
//! Interface indexes, XDP/TCX links and ethtool queries all resolve in the
//! calling thread's namespace, so that work runs on a short-lived thread that
//! has joined the target namespace; the links it creates stay valid after the
//! thread is gone.

use std::{fs::File, os::fd::AsRawFd, path::PathBuf};

/// Where `ip netns` keeps named namespaces.
const NETNS_RUN_DIR: &str = "/run/netns";

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The named namespace does not exist or cannot be opened.
    #[error("cannot open network namespace {name:?} ({path})")]
    Open {
        name: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// setns(2) refused (usually: not privileged).
    #[error("cannot enter network namespace {name:?}")]
    Enter {
        name: String,
        #[source]
        source: std::io::Error,
    },
}

/// Runs `f` in namespace `netns` (or right here when `None`).
pub fn run_in<T: Send>(netns: Option<&str>, f: impl FnOnce() -> T + Send) -> Result<T, NetnsError> {
    let Some(name) = netns else {
        return Ok(f());
    };
    let path = PathBuf::from(NETNS_RUN_DIR).join(name);
    let file = File::open(&path).map_err(|source| NetnsError::Open {
        name: name.to_owned(),
        path: path.clone(),
        source,
    })?;
    std::thread::scope(|s| {
        let worker = s.spawn(|| {
            // SAFETY: plain syscall on a valid fd; it only changes this
            // thread's namespace, and the thread ends with `f`.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(NetnsError::Enter {
                    name: name.to_owned(),
                    source: std::io::Error::last_os_error(),
                });
            }
            Ok(f())
        });
        match worker.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}
