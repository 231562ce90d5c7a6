//! Where each running flow log's last published window ended, kept on
//! disk: an agent that restarts onto pinned maps (which went on counting
//! while it was down) starts the first window there, so the records that
//! carry the downtime's packets also cover its time.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use tracing::warn;

const FILE: &str = "windows.json";

#[derive(Debug)]
pub struct Progress {
    path: PathBuf,
    /// Flow log id → Unix ns of the last published window's end.
    ends: BTreeMap<String, i64>,
}

impl Progress {
    /// Reads `windows.json` in `dir`; a missing or unreadable file means
    /// nothing is known (the first windows then start at activation).
    pub fn load(dir: &Path) -> Self {
        let path = dir.join(FILE);
        let ends = match std::fs::read(&path) {
            Ok(bytes) => Self::from_slice(&bytes).unwrap_or_else(|e| {
                warn!(path = %path.display(), error = %e, "ignoring unreadable window progress");
                BTreeMap::new()
            }),
            Err(_) => BTreeMap::new(),
        };
        Self { path, ends }
    }

    /// The file's content: flow log id → last window end (Unix ns, ≥ 0).
    pub fn from_slice(bytes: &[u8]) -> Result<BTreeMap<String, i64>, String> {
        let ends: BTreeMap<String, i64> = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        match ends.iter().find(|(_, end)| **end < 0) {
            Some((id, end)) => Err(format!("flow log {id} has a negative window end {end}")),
            None => Ok(ends),
        }
    }

    pub fn last_end(&self, id: &str) -> Option<i128> {
        self.ends.get(id).map(|&e| i128::from(e))
    }

    pub fn set(&mut self, id: &str, end: i128) {
        self.ends
            .insert(id.to_owned(), i64::try_from(end).unwrap_or(i64::MAX));
        self.save();
    }

    /// Forgets a flow log that stopped: its next activation starts afresh.
    pub fn remove(&mut self, id: &str) {
        if self.ends.remove(id).is_some() {
            self.save();
        }
    }

    /// Written to a temporary file and renamed, so a crash leaves the old
    /// or the new content, never half of it.
    fn save(&self) {
        let tmp = self.path.with_extension("json.tmp");
        let result = serde_json::to_vec(&self.ends)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(e) = result {
            warn!(path = %self.path.display(), error = %e, "cannot save window progress");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_a_reload_and_forgets_on_remove() {
        let dir = std::env::temp_dir().join(format!("flowlog-progress-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let mut p = Progress::load(&dir);
        assert_eq!(p.last_end("fl-1"), None);
        p.set("fl-1", 1_796_033_400_000_000_000);
        p.set("fl-2", 5);
        p.remove("fl-2");
        let again = Progress::load(&dir);
        assert_eq!(again.last_end("fl-1"), Some(1_796_033_400_000_000_000));
        assert_eq!(again.last_end("fl-2"), None);
        std::fs::write(dir.join(FILE), b"{not json").ok();
        assert_eq!(Progress::load(&dir).last_end("fl-1"), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
