//! The agent's own state: DescribeAgentStatus and ReloadRegionTable.

use serde::{Deserialize, Serialize};

use super::request;
use crate::{engine::FlowLogRuntime, telemetry::Status};

request! {
    /// DescribeAgentStatus: what is attached where, map fill, windows,
    /// counters.
    DescribeAgentStatus {}
}

request! {
    /// ReloadRegionTable: re-reads the configuration file's `[[region]]`
    /// table, as SIGHUP does.
    ReloadRegionTable {}
}

/// One family's flow map in a namespace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MapFillView {
    pub flows_last_window: u64,
    pub flow_map_entries: u32,
    pub fill_ratio: f64,
}

/// A namespace's flow maps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FlowMapsView {
    pub netns: Option<String>,
    pub ipv4: MapFillView,
    pub ipv6: MapFillView,
}

/// DescribeAgentStatus' answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AgentStatus {
    pub status: Status,
    pub flow_maps: Vec<FlowMapsView>,
    pub flow_logs: Vec<FlowLogRuntime>,
    pub unattached: Vec<String>,
}

/// ReloadRegionTable's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RegionsReloaded {
    pub entries: usize,
    pub in_force: String,
}
