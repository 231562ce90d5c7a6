//! Reading records back: GetLogs, SQL over one Logstore.

use serde::{Deserialize, Serialize};

use super::request;

request! {
    /// GetLogs: `From`/`To` bound the windows' starts (Unix seconds);
    /// `Query` is SQL over `logs` (default the first `Line` records);
    /// `Line` caps the rows (1–10000, default 100).
    GetLogs {
        project_name: String,
        log_store_name: String,
        from: Option<u64>,
        to: Option<u64>,
        query: Option<String>,
        line: Option<u64>,
    }
}

/// A file a query left out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SkippedFile {
    pub file: String,
    pub reason: String,
}

/// GetLogs' answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Logs {
    pub project_name: String,
    pub log_store_name: String,
    pub count: usize,
    pub logs: Vec<serde_json::Value>,
    pub files_read: usize,
    pub skipped_files: Vec<SkippedFile>,
    /// No file skipped, nothing cut.
    pub complete: bool,
    pub truncated: bool,
}
