//! Pinned kernel state: maps and program links kept in bpffs, so packets
//! go on being counted while the agent is down, and a restarted agent
//! (after a clean stop, a kill -9 or an upgrade) carries on from them.
//!
//! Layout: `<pin dir>/v<PIN_LAYOUT>/<namespace>/` holds the maps by name
//! and `links/<interface>.<hook>`. State of another layout version, or
//! maps whose type, sizes or namespace do not match, is removed with a log
//! line rather than read as something it is not.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use aya::maps::{MapInfo, MapType};
use flowlog_common::{
    Control, Counters, FlowKey, FlowKey4, FlowStats, HANDSHAKE_RING_BYTES, MAP_CONTROL, MAP_FLOWS4,
    MAP_FLOWS6, MAP_HANDSHAKES, MAP_MALFORMED, MAP_OVERFLOW, MAP_SKIPPED, MalformedKey, PIN_LAYOUT, SkipKey,
};
use tracing::{info, warn};

use super::CaptureSettings;

/// Where bpffs is mounted by convention.
const BPF_FS_MOUNT: &str = "/sys/fs/bpf";

#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("pin directory {path} is not on a bpf filesystem")]
    NotBpffs { path: PathBuf },
    #[error("mounting bpffs on {BPF_FS_MOUNT}")]
    Mount(#[source] std::io::Error),
    #[error("creating pin directory {path}{}", dot_hint(path))]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// bpffs refuses names with a dot; say so when that is the likely cause.
fn dot_hint(path: &Path) -> &'static str {
    let dotted = path
        .components()
        .any(|c| matches!(c, std::path::Component::Normal(n) if n.to_string_lossy().contains('.')));
    if dotted {
        " (bpffs refuses names containing a dot)"
    } else {
        ""
    }
}

/// The versioned root of pinned state.
#[derive(Clone, Debug)]
pub struct PinRoot {
    dir: PathBuf,
}

impl PinRoot {
    /// Mounts bpffs when `base` lives under its usual mount point and it is
    /// not mounted, creates this version's directory, and removes pinned
    /// state of other versions (their programs then stop counting).
    pub fn open(base: &Path) -> Result<Self, PinError> {
        if !on_bpffs(base) {
            if base.starts_with(BPF_FS_MOUNT) && !on_bpffs(Path::new(BPF_FS_MOUNT)) {
                mount_bpffs()?;
            }
            if !on_bpffs(base) {
                return Err(PinError::NotBpffs {
                    path: base.to_owned(),
                });
            }
        }
        let dir = base.join(format!("v{PIN_LAYOUT}"));
        std::fs::create_dir_all(&dir).map_err(|source| PinError::Create {
            path: dir.clone(),
            source,
        })?;
        for entry in std::fs::read_dir(base).into_iter().flatten().flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('v') && entry.path() != dir {
                warn!(
                    path = %entry.path().display(),
                    "pinned state of another flowlog version (layout {name}, this is v{PIN_LAYOUT}); \
                     it cannot be read safely and is removed: its programs stop counting"
                );
                remove_tree(&entry.path());
            }
        }
        Ok(Self { dir })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn netns(&self, netns: Option<&str>) -> NetnsPins {
        NetnsPins {
            dir: self.dir.join(netns_dir_name(netns)),
        }
    }

    /// Removes the pinned state of every namespace not in `in_use`: after
    /// a restart, what no active flow log claimed.
    pub fn sweep(&self, in_use: &BTreeSet<Option<String>>) {
        let keep: BTreeSet<String> = in_use.iter().map(|n| netns_dir_name(n.as_deref())).collect();
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !keep.contains(&name) {
                info!(path = %entry.path().display(), "removing pinned state no active flow log uses");
                remove_tree(&entry.path());
            }
        }
    }
}

/// `host` for the agent's own namespace, `ns-<name>` for a named one
/// (names cannot contain `/`).
fn netns_dir_name(netns: Option<&str>) -> String {
    match netns {
        None => "host".into(),
        Some(n) => format!("ns-{}", escape(n)),
    }
}

/// bpffs refuses names with a dot (reserved for the kernel's own files),
/// and interface and namespace names may have one: `%` and `.` are
/// percent-encoded.
fn escape(name: &str) -> String {
    name.replace('%', "%25").replace('.', "%2e")
}

fn unescape(name: &str) -> String {
    name.replace("%2e", ".").replace("%25", "%")
}

pub(super) fn on_bpffs(path: &Path) -> bool {
    // The nearest existing ancestor decides where new directories land.
    let mut p = path;
    while !p.exists() {
        match p.parent() {
            Some(parent) => p = parent,
            None => return false,
        }
    }
    rustix::fs::statfs(p).is_ok_and(|st| st.f_type == libc::BPF_FS_MAGIC)
}

fn mount_bpffs() -> Result<(), PinError> {
    info!("mounting bpffs on {BPF_FS_MOUNT} for pinned state");
    rustix::mount::mount(
        "bpf",
        BPF_FS_MOUNT,
        "bpf",
        rustix::mount::MountFlags::empty(),
        c"mode=0700",
    )
    .map_err(|e| PinError::Mount(e.into()))
}

fn remove_tree(path: &Path) {
    if let Err(e) = std::fs::remove_dir_all(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        warn!(path = %path.display(), error = %e, "cannot remove pinned state");
    }
}

/// One map as this agent would create it.
struct Expected {
    name: &'static str,
    map_type: MapType,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
}

fn expected(settings: &CaptureSettings) -> [Expected; 7] {
    let hash = |name, key: usize, value: usize, max_entries| Expected {
        name,
        map_type: MapType::PerCpuHash,
        key_size: key as u32,
        value_size: value as u32,
        max_entries,
    };
    let ring = |name, bytes| Expected {
        name,
        map_type: MapType::RingBuf,
        key_size: 0,
        value_size: 0,
        max_entries: bytes,
    };
    [
        hash(
            MAP_FLOWS4,
            size_of::<FlowKey4>(),
            size_of::<FlowStats>(),
            settings.flow_map_entries,
        ),
        hash(
            MAP_FLOWS6,
            size_of::<FlowKey>(),
            size_of::<FlowStats>(),
            settings.flow_map_entries_v6,
        ),
        Expected {
            name: MAP_CONTROL,
            map_type: MapType::Array,
            key_size: 4,
            value_size: size_of::<Control>() as u32,
            max_entries: 1,
        },
        hash(
            MAP_SKIPPED,
            size_of::<SkipKey>(),
            size_of::<Counters>(),
            flowlog_common::COUNTER_MAP_ENTRIES,
        ),
        hash(
            MAP_MALFORMED,
            size_of::<MalformedKey>(),
            size_of::<Counters>(),
            flowlog_common::COUNTER_MAP_ENTRIES,
        ),
        ring(MAP_OVERFLOW, settings.overflow_ring_bytes),
        ring(MAP_HANDSHAKES, HANDSHAKE_RING_BYTES),
    ]
}

/// Names of the maps that are pinned (the rest are per-process scratch).
pub fn pinned_maps() -> [&'static str; 7] {
    [
        MAP_FLOWS4,
        MAP_FLOWS6,
        MAP_CONTROL,
        MAP_SKIPPED,
        MAP_MALFORMED,
        MAP_OVERFLOW,
        MAP_HANDSHAKES,
    ]
}

/// A pinned link's hook, as named in its file.
pub const HOOK_FILES: [&str; 4] = ["xdp-driver", "xdp-generic", "tc-ingress", "tc-egress"];

/// Pinned state of one namespace.
#[derive(Clone, Debug)]
pub struct NetnsPins {
    dir: PathBuf,
}

impl NetnsPins {
    pub fn map_path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// `links/<hook>:<interface>`: interface names never contain `:`.
    pub fn link_path(&self, interface: &str, hook: &str) -> PathBuf {
        self.dir
            .join("links")
            .join(format!("{hook}:{}", escape(interface)))
    }

    /// Whether maps are pinned here that this agent can adopt. State that
    /// does not match (another namespace of the same name, other map sizes
    /// after a configuration change, a half-written directory) is removed
    /// with a log line saying why, and `false` returned: the agent starts
    /// afresh. `cookie` identifies the namespace.
    pub fn check(&self, settings: &CaptureSettings, cookie: u64) -> bool {
        if !self.dir.exists() {
            return false;
        }
        match self.mismatch(settings, cookie) {
            None => true,
            Some(why) => {
                warn!(path = %self.dir.display(), reason = %why, "pinned state does not match; replacing it (counts pinned there are lost)");
                remove_tree(&self.dir);
                false
            }
        }
    }

    fn mismatch(&self, settings: &CaptureSettings, cookie: u64) -> Option<String> {
        for e in expected(settings) {
            let info = match MapInfo::from_pin(self.map_path(e.name)) {
                Ok(i) => i,
                Err(err) => return Some(format!("map {}: {}", e.name, super::chain(&err))),
            };
            let got = (
                info.map_type().ok(),
                info.key_size(),
                info.value_size(),
                info.max_entries(),
            );
            let want = (Some(e.map_type), e.key_size, e.value_size, e.max_entries);
            if got != want {
                return Some(format!(
                    "map {}: type/key/value/entries {:?}/{}/{}/{}, this configuration wants {:?}/{}/{}/{}",
                    e.name, got.0, got.1, got.2, got.3, want.0, want.1, want.2, want.3
                ));
            }
        }
        match read_control(&self.map_path(MAP_CONTROL)) {
            Ok(c) if c.netns_cookie == cookie => None,
            Ok(c) => Some(format!(
                "it belongs to another network namespace of the same name (cookie {}, now {cookie})",
                c.netns_cookie
            )),
            Err(e) => Some(format!("map {MAP_CONTROL}: {e}")),
        }
    }

    pub fn create(&self) -> Result<(), PinError> {
        let links = self.dir.join("links");
        std::fs::create_dir_all(&links).map_err(|source| PinError::Create { path: links, source })
    }

    /// Interfaces with pinned links, with each link's hook file name.
    pub fn pinned_links(&self) -> Vec<(String, &'static str)> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(self.dir.join("links"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((hook, iface)) = name.split_once(':') else {
                continue;
            };
            if let Some(hook) = HOOK_FILES.into_iter().find(|h| *h == hook) {
                out.push((unescape(iface), hook));
            }
        }
        out
    }

    /// Unpins a link: the kernel detaches it once no fd holds it.
    pub fn remove_link(&self, interface: &str, hook: &str) {
        let path = self.link_path(interface, hook);
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            warn!(path = %path.display(), error = %e, "cannot unpin a link");
        }
    }

    /// Removes everything pinned for the namespace.
    pub fn remove(&self) {
        remove_tree(&self.dir);
    }
}

fn read_control(path: &Path) -> Result<Control, String> {
    let data = aya::maps::MapData::from_pin(path).map_err(|e| super::chain(&e))?;
    let array: aya::maps::Array<_, Control> =
        aya::maps::Array::try_from(aya::maps::Map::Array(data)).map_err(|e| super::chain(&e))?;
    array.get(&0, 0).map_err(|e| super::chain(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_without_dots() {
        for name in ["eth0", "eth0.100", "a%2eb", "ns.x%y", "%"] {
            let e = escape(name);
            assert!(!e.contains('.'), "{e}");
            assert_eq!(unescape(&e), name);
        }
        let pins = NetnsPins {
            dir: PathBuf::from("/x"),
        };
        assert_eq!(
            pins.link_path("eth0.100", "tc-ingress"),
            PathBuf::from("/x/links/tc-ingress:eth0%2e100")
        );
        assert_eq!(netns_dir_name(Some("r.1")), "ns-r%2e1");
    }
}
