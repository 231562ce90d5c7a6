//! Child processes of the agent's own executable that read the Logstores
//! (queries, compaction): limits, a lower priority and a death signal,
//! set between fork and exec so they bind before the child runs any code.

use rustix::process::{Resource, Rlimit, Signal};

/// What a child may use. `None`: the agent's own limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Confinement {
    /// Address space (`RLIMIT_AS`).
    pub memory_bytes: Option<u64>,
    /// Open descriptors (`RLIMIT_NOFILE`).
    pub open_files: Option<u64>,
    /// `nice` value, above the agent's own threads'.
    pub nice: i32,
}

/// Applies `c` to the child `cmd` starts; the child also dies with the
/// agent, whatever kills it, and leaves no core.
pub fn confine(cmd: &mut tokio::process::Command, c: Confinement) {
    let limit = |resource, value: u64| {
        rustix::process::setrlimit(
            resource,
            Rlimit {
                current: Some(value),
                maximum: Some(value),
            },
        )
    };
    let hook = move || {
        if let Some(bytes) = c.memory_bytes {
            limit(Resource::As, bytes)?;
        }
        if let Some(files) = c.open_files {
            limit(Resource::Nofile, files)?;
        }
        limit(Resource::Core, 0)?;
        // Best effort: a failed renice still runs the child.
        let _ = rustix::process::setpriority_process(None, c.nice);
        rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
        Ok::<(), rustix::io::Errno>(())
    };
    // SAFETY: the hook runs in the forked child before exec and only makes
    // system calls (setrlimit, setpriority, prctl) on plain values, through
    // rustix's raw syscalls: no locks, no allocation.
    unsafe {
        cmd.pre_exec(move || hook().map_err(std::io::Error::from));
    }
}
