//! What kind of interface an attachment is, which decides the `auto`
//! capture mode.

use std::{io, os::fd::AsRawFd};

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GDRVINFO: u32 = 0x3;

/// Drivers of virtual devices: TC costs them almost nothing, while native
/// XDP on veth disables GSO on the peer and halves TCP throughput.
const VIRTUAL_DRIVERS: &[&str] = &[
    "veth",
    "tun",
    "bridge",
    "bonding",
    "team",
    "vxlan",
    "geneve",
    "dummy",
    "macvlan",
    "ipvlan",
    "wireguard",
    "gre",
    "ipip",
    "sit",
    "vrf",
    "openvswitch",
    "nlmon",
    "ifb",
];

#[repr(C)]
struct EthtoolDrvinfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

#[repr(C)]
struct IfreqData {
    name: [u8; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

/// Interface facts read in the current thread's namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceInfo {
    pub ifindex: u32,
    /// Kernel driver name; empty when the device reports none (loopback).
    pub driver: String,
    pub bus_info: String,
}

impl InterfaceInfo {
    /// Physical NICs have a bus address and a driver outside the virtual list.
    pub fn is_physical(&self) -> bool {
        !self.bus_info.is_empty() && !VIRTUAL_DRIVERS.contains(&self.driver.as_str())
    }
}

/// Looks up `name` in the current network namespace; `None` if absent.
pub fn lookup(name: &str) -> io::Result<Option<InterfaceInfo>> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType, socket_with};
    let sock = socket_with(AddressFamily::INET, SocketType::DGRAM, SocketFlags::CLOEXEC, None)?;
    let ifindex = match rustix::net::netdevice::name_to_index(&sock, name) {
        Ok(i) => i,
        Err(rustix::io::Errno::NODEV) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let (driver, bus_info) = drvinfo(&sock, name).unwrap_or_default();
    Ok(Some(InterfaceInfo {
        ifindex,
        driver,
        bus_info,
    }))
}

/// The driver and bus address ethtool reports (SIOCETHTOOL, which no safe
/// crate wraps).
fn drvinfo(sock: &std::os::fd::OwnedFd, name: &str) -> io::Result<(String, String)> {
    // SAFETY: all-zero is a valid EthtoolDrvinfo.
    let mut info: EthtoolDrvinfo = unsafe { std::mem::zeroed() };
    info.cmd = ETHTOOL_GDRVINFO;
    let mut req = IfreqData {
        name: [0; libc::IFNAMSIZ],
        data: std::ptr::from_mut(&mut info).cast(),
        _pad: [0; 16],
    };
    for (d, s) in req.name.iter_mut().zip(name.bytes().take(libc::IFNAMSIZ - 1)) {
        *d = s;
    }
    // SAFETY: SIOCETHTOOL with an ifreq whose data points at a live
    // ethtool_drvinfo, as the ioctl expects.
    if unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((c_str(&info.driver), c_str(&info.bus_info)))
}

fn c_str(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}
