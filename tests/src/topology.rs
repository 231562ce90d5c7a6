//! Test networks: two hosts and a router between them (the product's real
//! use), and two directly connected hosts (the host-attached case).
//!
//! MAC addresses and neighbour entries are static, so no ARP or neighbour
//! discovery delays or queues the first packets of a test.

use anyhow::Context as _;

use crate::netns::Netns;

/// ```text
///  a: eth0 10.1.0.2 fd01::2 ── r-a 10.1.0.1 fd01::1 [router] r-b 10.2.0.1 fd02::1 ── eth0 10.2.0.2 fd02::2 :b
/// ```
pub struct RouterTopology {
    pub a: Netns,
    pub router: Netns,
    pub b: Netns,
}

pub const A_V4: &str = "10.1.0.2";
pub const B_V4: &str = "10.2.0.2";
pub const A_V6: &str = "fd01::2";
pub const B_V6: &str = "fd02::2";

struct Side<'a> {
    ns: &'a Netns,
    ifname: &'a str,
    mac: &'a str,
    v4: &'a str,
    v6: &'a str,
}

/// Quiets IPv6 autoconfiguration chatter before interfaces appear.
fn quiet_ipv6(ns: &Netns) -> anyhow::Result<()> {
    for key in ["all", "default"] {
        ns.sysctl(&format!("net.ipv6.conf.{key}.router_solicitations"), "0")?;
        ns.sysctl(&format!("net.ipv6.conf.{key}.accept_ra"), "0")?;
        ns.sysctl(&format!("net.ipv6.conf.{key}.accept_dad"), "0")?;
    }
    Ok(())
}

/// Creates a veth pair between two namespaces with addresses and static
/// neighbours on both ends.
fn link(x: &Side<'_>, y: &Side<'_>) -> anyhow::Result<()> {
    crate::netns::sh(&[
        "ip",
        "link",
        "add",
        x.ifname,
        "address",
        x.mac,
        "netns",
        x.ns.name(),
        "type",
        "veth",
        "peer",
        "name",
        y.ifname,
        "address",
        y.mac,
        "netns",
        y.ns.name(),
    ])?;
    for (me, peer) in [(x, y), (y, x)] {
        me.ns
            .ip(&["addr", "add", &format!("{}/24", me.v4), "dev", me.ifname])?;
        me.ns.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{}/64", me.v6),
            "dev",
            me.ifname,
            "nodad",
        ])?;
        me.ns.ip(&["link", "set", me.ifname, "up"])?;
        for addr in [peer.v4, peer.v6] {
            me.ns.ip(&[
                "neigh",
                "replace",
                addr,
                "lladdr",
                peer.mac,
                "nud",
                "permanent",
                "dev",
                me.ifname,
            ])?;
        }
    }
    Ok(())
}

impl RouterTopology {
    pub fn new() -> anyhow::Result<Self> {
        let t = Self {
            a: Netns::new("a")?,
            router: Netns::new("r")?,
            b: Netns::new("b")?,
        };
        for ns in [&t.a, &t.router, &t.b] {
            quiet_ipv6(ns)?;
        }
        link(
            &Side {
                ns: &t.a,
                ifname: "eth0",
                mac: "02:00:00:00:01:02",
                v4: A_V4,
                v6: A_V6,
            },
            &Side {
                ns: &t.router,
                ifname: "r-a",
                mac: "02:00:00:00:01:01",
                v4: "10.1.0.1",
                v6: "fd01::1",
            },
        )
        .context("linking host a to the router")?;
        link(
            &Side {
                ns: &t.b,
                ifname: "eth0",
                mac: "02:00:00:00:02:02",
                v4: B_V4,
                v6: B_V6,
            },
            &Side {
                ns: &t.router,
                ifname: "r-b",
                mac: "02:00:00:00:02:01",
                v4: "10.2.0.1",
                v6: "fd02::1",
            },
        )
        .context("linking host b to the router")?;
        t.a.ip(&["route", "add", "default", "via", "10.1.0.1"])?;
        t.a.ip(&["-6", "route", "add", "default", "via", "fd01::1"])?;
        t.b.ip(&["route", "add", "default", "via", "10.2.0.1"])?;
        t.b.ip(&["-6", "route", "add", "default", "via", "fd02::1"])?;
        t.router.sysctl("net.ipv4.ip_forward", "1")?;
        t.router.sysctl("net.ipv6.conf.all.forwarding", "1")?;
        Ok(t)
    }
}

/// Two hosts on one link: `a` eth0 10.3.0.2/fd03::2 ↔ `b` eth0 10.3.0.3/fd03::3.
pub struct HostPair {
    pub a: Netns,
    pub b: Netns,
}

pub const PAIR_A_V4: &str = "10.3.0.2";
pub const PAIR_B_V4: &str = "10.3.0.3";

impl HostPair {
    pub fn new() -> anyhow::Result<Self> {
        let p = Self {
            a: Netns::new("ha")?,
            b: Netns::new("hb")?,
        };
        quiet_ipv6(&p.a)?;
        quiet_ipv6(&p.b)?;
        link(
            &Side {
                ns: &p.a,
                ifname: "eth0",
                mac: "02:00:00:00:03:02",
                v4: PAIR_A_V4,
                v6: "fd03::2",
            },
            &Side {
                ns: &p.b,
                ifname: "eth0",
                mac: "02:00:00:00:03:03",
                v4: PAIR_B_V4,
                v6: "fd03::3",
            },
        )?;
        Ok(p)
    }
}
