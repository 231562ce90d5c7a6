//! Persisted control-plane state: Projects → Logstores, flow logs, access
//! keys. One JSON document in the data directory, replaced atomically
//! (temporary file, fsync, rename, fsync of the directory) after every
//! change, readable only by root.

pub mod random;

use std::{
    collections::BTreeMap,
    io::Write as _,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{model::CaptureMode, model::validate};

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
        // What a writer killed mid-write left (state.json, status.json).
        crate::durable::clean(dir);
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
        // Mode 0600 from the start: access key secrets are in it.
        crate::durable::write_with(&self.path, Some(0o600), |f| {
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            f.write_all(&json)
        })
        .map_err(err)?;
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
            validate::flow_log_id(&f.flow_log_id)?;
            validate::flow_log_name(&f.flow_log_name)?;
            validate::cen_id(&f.cen_id)?;
            validate::account_id(&f.account_id)?;
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
                validate::attachment(
                    &a.interface,
                    a.netns.as_deref(),
                    a.attachment_id.as_deref(),
                    a.region_id.as_deref(),
                )?;
            }
        }
        for (key, k) in &self.access_keys {
            same(key, &k.access_key_id)?;
            validate::access_key(&k.access_key_id, &k.access_key_secret)?;
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

/// Unix seconds now.
pub fn now_secs() -> i64 {
    (crate::model::clock::unix_now_ns() / 1_000_000_000) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "flowlog-state-{}-{}",
            std::process::id(),
            random::string(random::LOWER_ALNUM, 8).unwrap_or_default()
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
        let s = random::string(random::LOWER_ALNUM, 20).unwrap();
        assert_eq!(s.len(), 20);
        assert!(s.bytes().all(|b| random::LOWER_ALNUM.contains(&b)));
        assert_ne!(s, random::string(random::LOWER_ALNUM, 20).unwrap());
    }
}

/// One validator per kind of value: whatever one door refuses — the
/// configuration file, the API, state.json — every door refuses.
#[cfg(test)]
mod one_validation {
    use serde_json::json;

    use super::*;
    use crate::config::{AgentOptions, Attachment, Config};

    fn state_with(f: impl FnOnce(&mut FlowLog)) -> State {
        let mut flow_log = FlowLog {
            flow_log_id: "fl-1".into(),
            flow_log_name: "n".into(),
            description: String::new(),
            cen_id: "cen-1".into(),
            account_id: "a".into(),
            project_name: "proj".into(),
            log_store_name: "flows".into(),
            attachments: vec![AttachmentSpec {
                interface: "eth0".into(),
                netns: None,
                mode: Default::default(),
                attachment_id: None,
                region_id: None,
            }],
            interval: 60,
            status: FlowLogStatus::Inactive,
            creation_time: 1,
            log_format_string: None,
        };
        f(&mut flow_log);
        let mut s = State::default();
        s.projects.insert(
            "proj".into(),
            Project {
                name: "proj".into(),
                description: String::new(),
                created: 1,
                logstores: [(
                    "flows".to_owned(),
                    Logstore {
                        name: "flows".into(),
                        ttl: 7,
                        created: 1,
                    },
                )]
                .into(),
            },
        );
        s.flow_logs.insert(flow_log.flow_log_id.clone(), flow_log);
        s
    }

    #[test]
    fn attachments_refused_anywhere_are_refused_everywhere() {
        // (interface, netns, attachment-id, region-id)
        type Fields<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Option<&'a str>);
        let bad: [Fields<'_>; 7] = [
            ("eth0/x", None, None, None),
            ("a-name-far-too-long", None, None, None),
            ("eth0", Some("ns\0x"), None, None),
            ("eth0", Some("ns\nx"), None, None),
            ("eth0", Some(".."), None, None),
            ("eth0", None, Some("att id"), None),
            ("eth0", None, None, Some(&"r".repeat(65))),
        ];
        for (interface, netns, attachment_id, region_id) in bad {
            let what = format!("{interface:?} {netns:?} {attachment_id:?} {region_id:?}");
            let mut file = AgentOptions::default();
            file.attachments.push(Attachment {
                interface: interface.into(),
                netns: netns.map(Into::into),
                attachment_id: attachment_id.map(Into::into),
                region_id: region_id.map(Into::into),
                ..Default::default()
            });
            assert!(Config::validate(file).is_err(), "configuration took {what}");
            let mut api = json!({"Interface": interface});
            for (k, v) in [
                ("Netns", netns),
                ("AttachmentId", attachment_id),
                ("RegionId", region_id),
            ] {
                if let Some(v) = v {
                    api[k] = json!(v);
                }
            }
            assert!(
                crate::api::actions::parse_attachments(&json!([api])).is_err(),
                "the API took {what}"
            );
            let s = state_with(|f| {
                f.attachments[0].interface = interface.into();
                f.attachments[0].netns = netns.map(Into::into);
                f.attachments[0].attachment_id = attachment_id.map(Into::into);
                f.attachments[0].region_id = region_id.map(Into::into);
            });
            assert!(s.check().is_err(), "state.json took {what}");
        }
        // And what one takes, all take.
        assert!(state_with(|_| {}).check().is_ok());
        assert!(
            crate::api::actions::parse_attachments(
                &json!([{"Interface": "eth0", "Netns": "router", "RegionId": "cn-hangzhou"}])
            )
            .is_ok()
        );
    }

    #[test]
    fn identities_refused_anywhere_are_refused_everywhere() {
        // Values of account-id, cen-id and flow-log-id no door may take.
        for (account, cen, id) in [
            ("a b", "cen-1", "fl-1"),
            (&*"a".repeat(65), "cen-1", "fl-1"),
            ("a", "vpc-1", "fl-1"),
            ("a", "cen-1", "../../x"),
            ("a", "cen-1", "fl\u{1}"),
        ] {
            let what = format!("{account:?} {cen:?} {id:?}");
            let file = AgentOptions {
                account_id: Some(account.into()),
                cen_id: Some(cen.into()),
                flow_log_id: Some(id.into()),
                ..Default::default()
            };
            assert!(Config::validate(file).is_err(), "configuration took {what}");
            let s = state_with(|f| {
                f.account_id = account.into();
                f.cen_id = cen.into();
                f.flow_log_id = id.into();
            });
            assert!(s.check().is_err(), "state.json took {what}");
            // The API generates flow log ids; the others it checks with
            // the same validators (its CreateFlowlog test covers the call).
            let api = validate::account_id(account).and(validate::cen_id(cen));
            assert!(api.is_err() || validate::flow_log_id(id).is_err(), "{what}");
        }
    }
}
