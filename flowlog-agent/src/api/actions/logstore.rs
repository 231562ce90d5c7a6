//! Logstores: where a flow log's records are stored, with their retention.

use serde::{Deserialize, Serialize};

use super::request;

request! {
    /// CreateLogstore (`Ttl` in days, default 30).
    CreateLogstore {
        project_name: String,
        log_store_name: String,
        ttl: Option<u64>,
    }
}

request! {
    /// DeleteLogstore (refused while a flow log writes to it).
    DeleteLogstore {
        project_name: String,
        log_store_name: String,
    }
}

request! {
    /// ListLogstores.
    ListLogstores {
        project_name: String,
    }
}

/// CreateLogstore's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LogstoreCreated {
    pub project_name: String,
    pub log_store_name: String,
}

/// One Logstore in ListLogstores.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LogstoreView {
    pub log_store_name: String,
    pub ttl: u32,
    pub creation_time: i64,
}

/// ListLogstores' answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LogstoreList {
    pub project_name: String,
    pub total_count: usize,
    pub log_stores: Vec<LogstoreView>,
}
