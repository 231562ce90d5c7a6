//! The kernel memory a namespace's maps take, and the share of the machine
//! they may have: flow maps are preallocated per CPU, so their size is
//! paid in full when they are created, on every CPU, whether or not the
//! traffic ever fills them. Sizes beyond the share are refused up front
//! with the figures, instead of stalling for seconds and pushing the
//! machine into swap or the OOM killer.

use flowlog_common::{FlowKey, FlowKey4, FlowStats, HANDSHAKE_RING_BYTES};

use super::CaptureSettings;

/// The share of available memory (`MemAvailable`) one namespace's maps may
/// take: a quarter.
pub const SHARE_DIVISOR: u64 = 4;

/// The kernel's own accounting of a preallocated per-CPU hash element
/// (`htab_map_mem_usage`): the element header, the key rounded to 8 bytes
/// and a per-CPU pointer, plus the value rounded to 8 bytes on every
/// possible CPU.
fn percpu_hash_entry(key: usize, value: usize, cpus: u64) -> u64 {
    const HEADER: u64 = 64;
    HEADER + key.next_multiple_of(8) as u64 + 8 + value.next_multiple_of(8) as u64 * cpus
}

/// Bytes of kernel memory the maps of one namespace take with `settings`
/// on `cpus` possible CPUs (the flow maps, the rings; the small counter
/// maps are left out).
pub fn map_bytes(settings: &CaptureSettings, cpus: u64) -> u64 {
    let value = size_of::<FlowStats>();
    u64::from(settings.flow_map_entries) * percpu_hash_entry(size_of::<FlowKey4>(), value, cpus)
        + u64::from(settings.flow_map_entries_v6) * percpu_hash_entry(size_of::<FlowKey>(), value, cpus)
        + u64::from(settings.overflow_ring_bytes)
        + u64::from(HANDSHAKE_RING_BYTES)
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "flow maps of {entries4} IPv4 + {entries6} IPv6 entries and a {ring}-byte overflow ring take {} of kernel \
     memory on {cpus} CPUs, more than a 1/{SHARE_DIVISOR} share of the {} available ({}); lower \
     flow-map-entries, flow-map-entries-ipv6 or overflow-ring-bytes",
    mib(*.need), mib(*.available), mib(*.available / SHARE_DIVISOR)
)]
pub struct TooLarge {
    pub entries4: u32,
    pub entries6: u32,
    pub ring: u32,
    pub cpus: u64,
    pub need: u64,
    pub available: u64,
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

/// Refuses `settings` when one namespace's maps would take more than the
/// share of `available` bytes.
pub fn check(settings: &CaptureSettings, cpus: u64, available: u64) -> Result<(), TooLarge> {
    let need = map_bytes(settings, cpus);
    if need > available / SHARE_DIVISOR {
        return Err(TooLarge {
            entries4: settings.flow_map_entries,
            entries6: settings.flow_map_entries_v6,
            ring: settings.overflow_ring_bytes,
            cpus,
            need,
            available,
        });
    }
    Ok(())
}

/// `MemAvailable` from /proc/meminfo, in bytes.
pub fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

/// Possible CPUs: per-CPU maps allocate for each of them.
pub fn possible_cpus() -> Option<u64> {
    aya::util::nr_cpus().ok().map(|n| n as u64)
}

/// [`check`] against this machine now. Where the figures cannot be read
/// the check passes (the kernel still refuses what it cannot allocate).
pub fn check_here(settings: &CaptureSettings) -> Result<(), TooLarge> {
    match (possible_cpus(), mem_available()) {
        (Some(cpus), Some(available)) => check(settings, cpus, available),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(e4: u32, e6: u32, ring: u32) -> CaptureSettings {
        CaptureSettings {
            flow_map_entries: e4,
            flow_map_entries_v6: e6,
            overflow_ring_bytes: ring,
            rtt: true,
        }
    }

    #[test]
    fn entries_cost_what_the_kernel_charges() {
        // The kernel charged 176 B per IPv4 entry on 2 CPUs (memlock).
        assert_eq!(
            percpu_hash_entry(size_of::<FlowKey4>(), size_of::<FlowStats>(), 2),
            176
        );
        assert_eq!(
            percpu_hash_entry(size_of::<FlowKey>(), size_of::<FlowStats>(), 2),
            200
        );
        // Each further CPU adds a value.
        assert_eq!(
            percpu_hash_entry(size_of::<FlowKey4>(), size_of::<FlowStats>(), 64),
            176 + 62 * 40
        );
    }

    #[test]
    fn the_largest_sizes_are_refused_with_the_figures_and_the_default_passes() {
        let gib = 1u64 << 30;
        assert!(check(&settings(65_536, 16_384, 1 << 20), 2, 4 * gib).is_ok());
        let big = settings(16 << 20, 16 << 20, 1 << 30);
        let err = check(&big, 2, 22 * gib).unwrap_err();
        assert!(err.need > 6 * gib, "{err}");
        let text = err.to_string();
        for part in [
            "16777216 IPv4",
            "16777216 IPv6",
            "on 2 CPUs",
            "1/4 share",
            "flow-map-entries",
        ] {
            assert!(text.contains(part), "{text}");
        }
        // The same maps fit on a machine four times as large.
        assert!(check(&big, 2, 88 * gib).is_ok());
        // More CPUs, more memory.
        assert!(check(&settings(8 << 20, 2 << 20, 1 << 20), 2, 22 * gib).is_ok());
        assert!(check(&settings(8 << 20, 2 << 20, 1 << 20), 128, 22 * gib).is_err());
    }
}
