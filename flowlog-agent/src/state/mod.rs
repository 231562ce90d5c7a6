//! Persisted control-plane state: Projects → Logstores, flow logs, access
//! keys. One JSON document in the data directory, replaced atomically
//! (temporary file, fsync, rename, fsync of the directory) after every
//! change, readable only by root.

pub mod validate;

use std::{
    collections::BTreeMap,
    io::Write as _,
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::config::CaptureMode;

/// File name inside the data directory.
pub const STATE_FILE: &str = "state.json";
/// Layout version of the file; a different one is refused, not guessed at.
pub const STATE_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The state file exists but cannot be read.
    #[error("cannot read state file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The state file is not valid JSON of the expected layout.
    #[error("state file {path} is corrupt ({message}); move it aside to start empty")]
    Corrupt { path: PathBuf, message: String },
    /// The state file was written by an incompatible version.
    #[error("state file {path} has layout version {found}, this agent reads {STATE_VERSION}")]
    Version { path: PathBuf, found: u32 },
    /// Writing the new state failed; the previous file is untouched.
    #[error("cannot write state file {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FlowLogStatus {
    Active,
    Inactive,
}

impl FlowLogStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Active => "Active",
            Self::Inactive => "Inactive",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Logstore {
    pub name: String,
    /// Retention in days.
    pub ttl: u32,
    /// Unix seconds.
    pub created: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Project {
    pub name: String,
    pub description: String,
    pub created: i64,
    pub logstores: BTreeMap<String, Logstore>,
}

/// One interface a flow log captures on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct AttachmentSpec {
    pub interface: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    #[serde(default)]
    pub mode: CaptureMode,
    /// Carried on the attachment's records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct FlowLog {
    pub flow_log_id: String,
    pub flow_log_name: String,
    pub description: String,
    pub cen_id: String,
    pub account_id: String,
    pub project_name: String,
    pub log_store_name: String,
    pub attachments: Vec<AttachmentSpec>,
    /// Capture window length, seconds.
    pub interval: u64,
    pub status: FlowLogStatus,
    pub creation_time: i64,
    /// The fields its records keep (`${srcaddr}${dstaddr}${bytes}…`); all
    /// fields when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_format_string: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct AccessKey {
    pub access_key_id: String,
    pub access_key_secret: String,
    pub description: String,
    pub creation_time: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct State {
    pub version: u32,
    pub projects: BTreeMap<String, Project>,
    pub flow_logs: BTreeMap<String, FlowLog>,
    pub access_keys: BTreeMap<String, AccessKey>,
}

/// The state and where it lives.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    pub state: State,
}

impl Store {
    /// Loads `<dir>/state.json`, or starts empty when there is none.
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        let path = dir.join(STATE_FILE);
        let state = match std::fs::read(&path) {
            Ok(bytes) => {
                let state: State = serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
                if state.version != STATE_VERSION {
                    return Err(StateError::Version {
                        path,
                        found: state.version,
                    });
                }
                state.check().map_err(|message| StateError::Corrupt {
                    path: path.clone(),
                    message,
                })?;
                state
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State {
                version: STATE_VERSION,
                ..State::default()
            },
            Err(source) => return Err(StateError::Read { path, source }),
        };
        Ok(Self { path, state })
    }

    /// Writes `next` durably, then adopts it. On error nothing changes,
    /// neither on disk nor in memory.
    pub fn commit(&mut self, next: State) -> Result<(), StateError> {
        let err = |source| StateError::Write {
            path: self.path.clone(),
            source,
        };
        let json = serde_json::to_vec_pretty(&next).map_err(|e| err(std::io::Error::other(e)))?;
        let tmp = self.path.with_extension("json.tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(err)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(err)?;
        f.write_all(&json).map_err(err)?;
        f.sync_all().map_err(err)?;
        std::fs::rename(&tmp, &self.path).map_err(err)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(err)?;
        }
        self.state = next;
        Ok(())
    }
}

impl State {
    /// Holds only what the API could have written: a hand-edited or damaged
    /// file is refused with the reason instead of half-used (an Interval of
    /// 0 would otherwise stop the agent at its first window).
    pub fn check(&self) -> Result<(), String> {
        for (key, p) in &self.projects {
            same(key, &p.name)?;
            validate::project_name(&p.name)?;
            validate::description(&p.description)?;
            for (key, l) in &p.logstores {
                same(key, &l.name)?;
                validate::logstore_name(&l.name)?;
                validate::ttl(l.ttl)?;
            }
        }
        for (key, f) in &self.flow_logs {
            same(key, &f.flow_log_id)?;
            for (what, v) in [
                ("FlowLogId", &f.flow_log_id),
                ("FlowLogName", &f.flow_log_name),
                ("CenId", &f.cen_id),
                ("AccountId", &f.account_id),
            ] {
                printable(what, v)?;
            }
            validate::description(&f.description)?;
            validate::interval(f.interval)?;
            if let Some(s) = &f.log_format_string {
                crate::record::format::LogFormat::parse(s)
                    .map_err(|e| format!("flow log {key}: LogFormatString {e}"))?;
            }
            if !self
                .projects
                .get(&f.project_name)
                .is_some_and(|p| p.logstores.contains_key(&f.log_store_name))
            {
                return Err(format!(
                    "flow log {key} writes to {}/{}, which does not exist",
                    f.project_name, f.log_store_name
                ));
            }
            if f.attachments.is_empty() || f.attachments.len() > validate::MAX_ATTACHMENTS {
                return Err(format!("flow log {key} has {} attachments", f.attachments.len()));
            }
            for (i, a) in f.attachments.iter().enumerate() {
                if f.attachments[..i]
                    .iter()
                    .any(|b| b.interface == a.interface && b.netns == a.netns)
                {
                    return Err(format!("flow log {key} lists interface {} twice", a.interface));
                }
                crate::config::check_ifname(&a.interface).map_err(|e| e.to_string())?;
                if let Some(ns) = &a.netns {
                    crate::config::check_netns_name(ns).map_err(|e| e.to_string())?;
                }
            }
        }
        for (key, k) in &self.access_keys {
            same(key, &k.access_key_id)?;
            printable("AccessKeyId", &k.access_key_id)?;
            printable("AccessKeySecret", &k.access_key_secret)?;
        }
        Ok(())
    }
}

fn same(key: &str, name: &str) -> Result<(), String> {
    if key != name {
        return Err(format!("entry {key:?} names itself {name:?}"));
    }
    Ok(())
}

fn printable(what: &str, v: &str) -> Result<(), String> {
    if v.is_empty() || v.chars().count() > 128 || v.chars().any(char::is_control) {
        return Err(format!("{what} {v:?} must be 1 to 128 printable characters"));
    }
    Ok(())
}

/// Unix seconds now.
pub fn now_secs() -> i64 {
    (crate::window::clock::unix_now_ns() / 1_000_000_000) as i64
}

/// `n` random characters from `alphabet`, from the OS random source.
pub fn random_string(alphabet: &[u8], n: usize) -> String {
    let mut bytes = vec![0u8; n];
    // The OS source failing is not recoverable; fall back to the clock so
    // ids stay unique rather than aborting a request.
    if getrandom::fill(&mut bytes).is_err() {
        let seed = crate::window::clock::unix_now_ns() as u64;
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (seed.rotate_left(i as u32 * 7) ^ (i as u64 * 0x9e37_79b9)) as u8;
        }
    }
    bytes
        .iter()
        .map(|b| char::from(alphabet[usize::from(*b) % alphabet.len()]))
        .collect()
}

pub const LOWER_ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
pub const UPPER_ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
pub const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "flowlog-state-{}-{}",
            std::process::id(),
            random_string(LOWER_ALNUM, 8)
        ));
        std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{e}"));
        d
    }

    #[test]
    fn round_trips_and_is_private() {
        let dir = scratch();
        let mut store = Store::open(&dir).unwrap_or_else(|e| panic!("{e}"));
        let mut next = store.state.clone();
        next.projects.insert(
            "proj1".into(),
            Project {
                name: "proj1".into(),
                description: String::new(),
                created: 1,
                logstores: BTreeMap::new(),
            },
        );
        store.commit(next.clone()).unwrap_or_else(|e| panic!("{e}"));
        let again = Store::open(&dir).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again.state, next);
        let mode = std::fs::metadata(dir.join(STATE_FILE)).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode.ok(), Some(0o600));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn corrupt_or_foreign_files_are_refused() {
        let dir = scratch();
        std::fs::write(dir.join(STATE_FILE), b"{\"Version\": 1, \"Projects\": ")
            .unwrap_or_else(|e| panic!("{e}"));
        let e = Store::open(&dir).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("corrupt"), "{e}");
        std::fs::write(
            dir.join(STATE_FILE),
            b"{\"Version\": 9, \"Projects\": {}, \"FlowLogs\": {}, \"AccessKeys\": {}}",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let e = Store::open(&dir).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("layout version 9"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn contents_the_api_could_not_have_written_are_refused() {
        let dir = scratch();
        let flow_log = |interval: u64, logstore: &str, interface: &str| {
            format!(
                r#"{{"Version": 1, "AccessKeys": {{}},
                "Projects": {{"proj": {{"Name": "proj", "Description": "", "Created": 1,
                    "Logstores": {{"flows": {{"Name": "flows", "Ttl": 7, "Created": 1}}}}}}}},
                "FlowLogs": {{"fl-1": {{"FlowLogId": "fl-1", "FlowLogName": "n", "Description": "",
                    "CenId": "cen-1", "AccountId": "a", "ProjectName": "proj", "LogStoreName": "{logstore}",
                    "Attachments": [{{"Interface": "{interface}"}}], "Interval": {interval},
                    "Status": "Active", "CreationTime": 1}}}}}}"#
            )
        };
        let open = |text: String| {
            std::fs::write(dir.join(STATE_FILE), text).unwrap_or_else(|e| panic!("{e}"));
            Store::open(&dir).map(|_| ()).map_err(|e| e.to_string())
        };
        assert_eq!(open(flow_log(60, "flows", "eth0")), Ok(()));
        for (text, why) in [
            (flow_log(0, "flows", "eth0"), "Interval 0"),
            (flow_log(60, "gone", "eth0"), "does not exist"),
            (flow_log(60, "flows", "a/b"), "interface"),
        ] {
            let e = open(text).err().unwrap_or_default();
            assert!(e.contains("corrupt") && e.contains(why), "{e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn random_ids_use_the_alphabet() {
        let s = random_string(LOWER_ALNUM, 20);
        assert_eq!(s.len(), 20);
        assert!(s.bytes().all(|b| LOWER_ALNUM.contains(&b)));
        assert_ne!(s, random_string(LOWER_ALNUM, 20));
    }
}
