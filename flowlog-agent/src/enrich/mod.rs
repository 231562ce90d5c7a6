//! Enrichment between the window and the record: where each address is.
//! The [`regions`] table maps CIDR prefixes to a region (and optionally a
//! network name) by longest-prefix match.

pub mod regions;

pub use regions::{RegionEntry, RegionTable, RegionTableError, SharedRegions};
