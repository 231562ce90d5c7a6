//! The agent's own state: the status view and the region table.

use tracing::{info, warn};

use super::{Control, ControlError};
use crate::{
    api::actions::{AgentStatus, DescribeAgentStatus, FlowMapsView, MapFillView, RegionsReloaded},
    config::AgentOptions,
    enrich::RegionTable,
};

impl Control {
    /// Re-reads the region table from the configuration file (SIGHUP,
    /// ReloadRegionTable). A bad table is refused whole, naming the line
    /// and the reason, and the table in force stays; a good one labels
    /// each flow log's windows from its next window on.
    pub fn reload_regions(&mut self) -> Result<RegionsReloaded, ControlError> {
        let Some(path) = self.regions.file.clone() else {
            return Err(ControlError::NoConfigFile);
        };
        let loaded = AgentOptions::load(&path)
            .map_err(|e| e.to_string())
            .and_then(|f| {
                RegionTable::new(&f.region_entries)
                    .map_err(|e| format!("{}: region table: {e}", path.display()))
            });
        match loaded {
            Ok(table) => {
                let entries = table.len();
                self.regions.table.replace(table);
                info!(entries, file = %path.display(), "region table reloaded; in force from each flow log's next window");
                self.report_regions(None);
                Ok(RegionsReloaded {
                    entries,
                    in_force: "from each flow log's next window".into(),
                })
            }
            Err(m) => {
                warn!(error = %m, "region table not reloaded; the previous table stays in force");
                self.report_regions(Some(m.clone()));
                Err(ControlError::InvalidRegionTable(m))
            }
        }
    }

    pub(super) fn report_regions(&self, error: Option<String>) {
        let entries = self.regions.table.current().len();
        let mut info = self.engine.status_board().info();
        info.region_table_entries = entries as u64;
        info.region_table_error = error;
    }

    pub fn agent_status(&self, _: DescribeAgentStatus) -> AgentStatus {
        let fill: Vec<FlowMapsView> = self
            .engine
            .map_fill()
            .into_iter()
            .map(|(ns, fill)| {
                let family = |flows: u64, entries: u32| MapFillView {
                    flows_last_window: flows,
                    flow_map_entries: entries,
                    fill_ratio: crate::capture::MapFill::ratio(flows, entries),
                };
                FlowMapsView {
                    netns: ns,
                    ipv4: family(fill.ipv4, fill.ipv4_entries),
                    ipv6: family(fill.ipv6, fill.ipv6_entries),
                }
            })
            .collect();
        AgentStatus {
            status: self.engine.status_board().snapshot(),
            flow_maps: fill,
            flow_logs: self.engine.runtime(),
            unattached: self.unattached.iter().cloned().collect(),
        }
    }
}
