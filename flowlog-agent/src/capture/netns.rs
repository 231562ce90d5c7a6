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

/// The cookie of the calling thread's network namespace: unique for the
/// machine's uptime, unlike inode numbers or names, so pinned state can
/// tell its own namespace from a new one that took the same name.
pub fn cookie() -> std::io::Result<u64> {
    // SAFETY: plain syscalls; the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new socket nobody else owns.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let mut value: u64 = 0;
    let mut len = size_of::<u64>() as libc::socklen_t;
    // SAFETY: valid socket, option buffer of `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NETNS_COOKIE,
            (&raw mut value).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(value)
}
