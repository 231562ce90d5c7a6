//! `flowlog unpin`: detach what a stopped agent left counting, and nothing
//! else. The directory must be on bpffs and hold only the agent's own
//! layout (`v<N>/<namespace>/<map>` and `links/<hook>:<interface>`); no
//! running process may hold its maps; and only the agent's pins are
//! removed, one by one, never a whole tree.

use std::path::{Path, PathBuf};

use super::pins::{HOOK_FILES, on_bpffs, pinned_maps};

#[derive(Debug, thiserror::Error)]
pub enum UnpinError {
    #[error("{path} is not on a bpf filesystem: it holds no pinned flowlog state, and nothing was removed")]
    NotBpffs { path: PathBuf },
    #[error("{path} is not part of a flowlog pin directory ({why}); nothing was removed")]
    Foreign { path: PathBuf, why: &'static str },
    #[error("an agent is running on {path} (pid {pid}, {command}); stop it first — nothing was removed")]
    InUse {
        path: PathBuf,
        pid: u32,
        command: String,
    },
    #[error("reading {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What was removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Unpinned {
    pub namespaces: usize,
    pub maps: usize,
    pub links: usize,
}

fn entries(dir: &Path) -> Result<Vec<(String, PathBuf)>, UnpinError> {
    let io = |source| UnpinError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io)? {
        let e = e.map_err(io)?;
        out.push((e.file_name().to_string_lossy().into_owned(), e.path()));
    }
    out.sort();
    Ok(out)
}

/// The pinned objects of a pin directory: (maps, links, directories
/// deepest first), after checking that nothing else is in it.
type Layout = (Vec<PathBuf>, Vec<PathBuf>, Vec<PathBuf>);

fn layout(base: &Path) -> Result<Layout, UnpinError> {
    let foreign = |path: &Path, why| UnpinError::Foreign {
        path: path.to_owned(),
        why,
    };
    let (mut maps, mut links, mut dirs) = (Vec::new(), Vec::new(), Vec::new());
    for (version, vdir) in entries(base)? {
        let is_version = version
            .strip_prefix('v')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if !is_version || !vdir.is_dir() {
            return Err(foreign(&vdir, "expected a layout directory v<N>"));
        }
        for (ns, nsdir) in entries(&vdir)? {
            if !(ns == "host" || ns.starts_with("ns-")) || !nsdir.is_dir() {
                return Err(foreign(
                    &nsdir,
                    "expected a namespace directory (host or ns-<name>)",
                ));
            }
            for (name, path) in entries(&nsdir)? {
                if name == "links" && path.is_dir() {
                    for (link, lpath) in entries(&path)? {
                        let hook = link.split_once(':').map(|(h, _)| h);
                        if !hook.is_some_and(|h| HOOK_FILES.contains(&h)) {
                            return Err(foreign(&lpath, "expected a pinned link <hook>:<interface>"));
                        }
                        links.push(lpath);
                    }
                    dirs.push(path);
                } else if pinned_maps().contains(&name.as_str()) {
                    maps.push(path);
                } else {
                    return Err(foreign(&path, "expected one of the agent's maps or links/"));
                }
            }
            dirs.push(nsdir);
        }
        dirs.push(vdir);
    }
    Ok((maps, links, dirs))
}

/// Ids of the maps pinned at `paths` (a map that cannot be opened is
/// skipped: it cannot be held by anyone then).
fn map_ids(paths: &[PathBuf]) -> Vec<u32> {
    paths
        .iter()
        .filter_map(|p| aya::maps::MapInfo::from_pin(p).ok())
        .map(|i| i.id())
        .collect()
}

/// A process other than this one holding one of `ids` open, read from
/// `/proc/<pid>/fdinfo` (which names the map of every bpf-map fd).
fn holder(ids: &[u32]) -> Option<(u32, String)> {
    let me = std::process::id();
    for proc in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = proc.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(proc.path().join("fdinfo")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(info) = std::fs::read_to_string(fd.path()) else {
                continue;
            };
            let held = info
                .lines()
                .filter_map(|l| l.strip_prefix("map_id:"))
                .filter_map(|v| v.trim().parse::<u32>().ok())
                .any(|id| ids.contains(&id));
            if held {
                let command = std::fs::read_to_string(proc.path().join("cmdline"))
                    .map(|c| c.replace('\0', " ").trim().to_owned())
                    .unwrap_or_default();
                return Some((pid, command));
            }
        }
    }
    None
}

/// Unpins everything a stopped agent left under `base` (see the module
/// doc). A directory that does not exist has nothing pinned.
pub fn unpin(base: &Path) -> Result<Unpinned, UnpinError> {
    if !base.exists() {
        return Ok(Unpinned::default());
    }
    if !on_bpffs(base) || !base.is_dir() {
        return Err(UnpinError::NotBpffs {
            path: base.to_owned(),
        });
    }
    let (maps, links, dirs) = layout(base)?;
    if let Some((pid, command)) = holder(&map_ids(&maps)) {
        return Err(UnpinError::InUse {
            path: base.to_owned(),
            pid,
            command,
        });
    }
    let remove = |p: &Path, f: fn(&Path) -> std::io::Result<()>| {
        f(p).or_else(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Ok(())
            } else {
                Err(UnpinError::Io {
                    path: p.to_owned(),
                    source: e,
                })
            }
        })
    };
    // Links first: the hooks detach before their maps go.
    for l in &links {
        remove(l, |p| std::fs::remove_file(p))?;
    }
    for m in &maps {
        remove(m, |p| std::fs::remove_file(p))?;
    }
    let namespaces = dirs
        .iter()
        .filter(|d| d.file_name().is_some_and(|n| n != "links") && d.parent() != Some(base))
        .count();
    for d in &dirs {
        remove(d, |p| std::fs::remove_dir(p))?;
    }
    // The base directory itself only if that left it empty.
    let _ = std::fs::remove_dir(base);
    Ok(Unpinned {
        namespaces,
        maps: maps.len(),
        links: links.len(),
    })
}
