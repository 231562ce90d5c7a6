//! Running attach-time work inside a named network namespace.
//!
//! Interface indexes, XDP/TCX links and ethtool queries all resolve in the
//! calling thread's namespace, so that work runs on a short-lived thread that
//! has joined the target namespace; the links it creates stay valid after the
//! thread is gone.

use std::{
    fs::File,
    os::fd::{AsFd as _, AsRawFd},
    path::PathBuf,
};

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
            // Only this thread moves, and it ends with `f`.
            rustix::thread::move_into_link_name_space(
                file.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .map_err(|e| NetnsError::Enter {
                name: name.to_owned(),
                source: e.into(),
            })?;
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
    let sock = std::os::unix::net::UnixDatagram::unbound()?;
    let mut value: u64 = 0;
    let mut len = size_of::<u64>() as libc::socklen_t;
    // SAFETY: valid socket, option buffer of `len` bytes. Neither rustix
    // nor std has SO_NETNS_COOKIE, whose number differs by architecture
    // (hence libc's constant).
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
