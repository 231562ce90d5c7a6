//! Test networks: two hosts and a router between them (the product's real
//! use), and two directly connected hosts (the host-attached case).
//!
//! MAC addresses and neighbour entries are static, so no ARP or neighbour
//! discovery delays or queues the first packets of a test.

use std::time::Duration;

use anyhow::Context as _;

use crate::{
    netns::Netns,
    wire::{DelayWire, DropRule},
};

/// ```text
///  a: eth0 10.1.0.2 fd01::2 ── r-a 10.1.0.1 fd01::1 [router] r-b 10.2.0.1 fd02::1 ── eth0 10.2.0.2 fd02::2 :b
/// ```
pub struct RouterTopology {
    pub a: Netns,
    pub router: Netns,
    pub b: Netns,
    /// The delayed router↔b link, when asked for; dropped before the
    /// namespaces (field order).
    pub wire: Option<DelayWire>,
}

/// Variations of the router topology.
#[derive(Default)]
pub struct RouterOptions {
    /// IPv6 disabled everywhere: not a single packet unless a test sends it.
    pub ipv4_only: bool,
    /// Replace the router↔b veth by a TAP wire with this one-way delay.
    pub b_delay: Option<Duration>,
    /// With `b_delay`: frames router→b the wire drops.
    pub drop_to_b: Option<DropRule>,
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

/// Quiets IPv6 autoconfiguration chatter before interfaces appear, or
/// turns IPv6 off.
fn quiet_ipv6(ns: &Netns, off: bool) -> anyhow::Result<()> {
    for key in ["all", "default"] {
        if off {
            ns.sysctl(&format!("net.ipv6.conf.{key}.disable_ipv6"), "1")?;
            continue;
        }
        ns.sysctl(&format!("net.ipv6.conf.{key}.router_solicitations"), "0")?;
        ns.sysctl(&format!("net.ipv6.conf.{key}.accept_ra"), "0")?;
        ns.sysctl(&format!("net.ipv6.conf.{key}.accept_dad"), "0")?;
    }
    Ok(())
}

/// Creates a veth pair between two namespaces and configures both ends.
fn link(x: &Side<'_>, y: &Side<'_>, ipv6: bool) -> anyhow::Result<()> {
    let (xn, yn) = (x.ns.name(), y.ns.name());
    crate::netns::sh(&[
        "ip", "link", "add", x.ifname, "netns", xn, "type", "veth", "peer", "name", y.ifname, "netns", yn,
    ])?;
    configure(x, y, ipv6)
}

/// Addresses, MACs and static neighbours on both ends of an existing link.
fn configure(x: &Side<'_>, y: &Side<'_>, ipv6: bool) -> anyhow::Result<()> {
    for (me, peer) in [(x, y), (y, x)] {
        me.ns.ip(&["link", "set", me.ifname, "address", me.mac])?;
        me.ns
            .ip(&["addr", "add", &format!("{}/24", me.v4), "dev", me.ifname])?;
        if ipv6 {
            let v6 = format!("{}/64", me.v6);
            me.ns.ip(&["-6", "addr", "add", &v6, "dev", me.ifname, "nodad"])?;
        }
        me.ns.ip(&["link", "set", me.ifname, "up"])?;
        let addrs: &[&str] = if ipv6 { &[peer.v4, peer.v6] } else { &[peer.v4] };
        for addr in addrs {
            let dev = me.ifname;
            me.ns.ip(&[
                "neigh",
                "replace",
                addr,
                "lladdr",
                peer.mac,
                "nud",
                "permanent",
                "dev",
                dev,
            ])?;
        }
    }
    Ok(())
}

impl RouterTopology {
    /// `flowlog agent` arguments capturing on both router interfaces in
    /// `mode`, followed by `extra`.
    pub fn agent_args<'a>(&'a self, mode: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec![
            "--netns",
            self.router.name(),
            "-i",
            "r-a",
            "-i",
            "r-b",
            "--mode",
            mode,
        ];
        args.extend_from_slice(extra);
        args
    }

    /// The agent configuration's `[[attachment]]` tables for both router
    /// interfaces in TC mode, labelled `tr-att-a` in cn-hangzhou and
    /// `tr-att-b` in cn-shanghai.
    pub fn labelled_attachments_toml(&self) -> String {
        let ns = self.router.name();
        [
            ("r-a", "tr-att-a", "cn-hangzhou"),
            ("r-b", "tr-att-b", "cn-shanghai"),
        ]
        .iter()
        .map(|(interface, id, region)| {
            format!(
                "[[attachment]]\ninterface = \"{interface}\"\nnetns = \"{ns}\"\n\
                     mode = \"tc\"\nattachment-id = \"{id}\"\nregion-id = \"{region}\"\n\n"
            )
        })
        .collect()
    }

    pub fn new() -> anyhow::Result<Self> {
        Self::with(RouterOptions::default())
    }

    /// IPv6 off everywhere: the links carry nothing a test did not send.
    pub fn ipv4_only() -> anyhow::Result<Self> {
        Self::with(RouterOptions {
            ipv4_only: true,
            ..Default::default()
        })
    }

    pub fn with(opts: RouterOptions) -> anyhow::Result<Self> {
        let ipv6 = !opts.ipv4_only;
        let mut t = Self {
            a: Netns::new("a")?,
            router: Netns::new("r")?,
            b: Netns::new("b")?,
            wire: None,
        };
        for ns in [&t.a, &t.router, &t.b] {
            quiet_ipv6(ns, !ipv6)?;
        }
        let a = Side {
            ns: &t.a,
            ifname: "eth0",
            mac: "02:00:00:00:01:02",
            v4: A_V4,
            v6: A_V6,
        };
        let ra = Side {
            ns: &t.router,
            ifname: "r-a",
            mac: "02:00:00:00:01:01",
            v4: "10.1.0.1",
            v6: "fd01::1",
        };
        let b = Side {
            ns: &t.b,
            ifname: "eth0",
            mac: "02:00:00:00:02:02",
            v4: B_V4,
            v6: B_V6,
        };
        let rb = Side {
            ns: &t.router,
            ifname: "r-b",
            mac: "02:00:00:00:02:01",
            v4: "10.2.0.1",
            v6: "fd02::1",
        };
        link(&a, &ra, ipv6).context("linking host a to the router")?;
        let wire = match opts.b_delay {
            Some(delay) => {
                let w = DelayWire::new(&t.router, "r-b", &t.b, "eth0", delay, opts.drop_to_b)?;
                configure(&rb, &b, ipv6).context("configuring the delayed link")?;
                Some(w)
            }
            None => {
                link(&b, &rb, ipv6).context("linking host b to the router")?;
                None
            }
        };
        t.a.ip(&["route", "add", "default", "via", "10.1.0.1"])?;
        t.b.ip(&["route", "add", "default", "via", "10.2.0.1"])?;
        if ipv6 {
            t.a.ip(&["-6", "route", "add", "default", "via", "fd01::1"])?;
            t.b.ip(&["-6", "route", "add", "default", "via", "fd02::1"])?;
            t.router.sysctl("net.ipv6.conf.all.forwarding", "1")?;
        }
        t.router.sysctl("net.ipv4.ip_forward", "1")?;
        t.wire = wire;
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
        Self::with(false)
    }

    /// With `ipv4_only`, the link is silent unless a test sends something.
    pub fn with(ipv4_only: bool) -> anyhow::Result<Self> {
        let p = Self {
            a: Netns::new("ha")?,
            b: Netns::new("hb")?,
        };
        quiet_ipv6(&p.a, ipv4_only)?;
        quiet_ipv6(&p.b, ipv4_only)?;
        let a = Side {
            ns: &p.a,
            ifname: "eth0",
            mac: "02:00:00:00:03:02",
            v4: PAIR_A_V4,
            v6: "fd03::2",
        };
        let b = Side {
            ns: &p.b,
            ifname: "eth0",
            mac: "02:00:00:00:03:03",
            v4: PAIR_B_V4,
            v6: "fd03::3",
        };
        link(&a, &b, !ipv4_only)?;
        Ok(p)
    }
}
