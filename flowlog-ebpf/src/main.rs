//! flowlog kernel programs: count packets and bytes per five-tuple.
//!
//! Three entry points share one path: [`flowlog_xdp`] (ingress),
//! [`flowlog_tc_ingress`] and [`flowlog_tc_egress`]. Each parses the frame
//! (`flowlog_common::parse`), then [`account`] adds it to the active flow-map
//! generation. The programs never drop or modify traffic: XDP always passes,
//! TC always hands the packet on to whatever comes next.
#![cfg_attr(target_arch = "bpf", no_std, no_main)]

#[cfg(target_arch = "bpf")]
mod account;
#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod packet;

#[cfg(target_arch = "bpf")]
mod programs {
    use aya_ebpf::{
        bindings::xdp_action,
        macros::{classifier, xdp},
        programs::{TcContext, XdpContext},
    };
    use flowlog_common::Direction;

    use crate::{
        account::observe,
        packet::{SkbPacket, XdpPacket},
    };

    /// `TCX_NEXT` / `TC_ACT_UNSPEC`: let the next program (or the default
    /// action) decide; a passive collector must not end the chain.
    const TC_NEXT: i32 = -1;

    #[xdp]
    pub fn flowlog_xdp(ctx: XdpContext) -> u32 {
        let pkt = XdpPacket::new(&ctx);
        // XDP sees wire frames: never a GSO aggregate.
        observe(&pkt, ctx.ingress_ifindex() as u32, Direction::Ingress, 1, 0);
        xdp_action::XDP_PASS
    }

    /// Clock probe, run by the agent with BPF_PROG_TEST_RUN (never
    /// attached): jiffies and CLOCK_MONOTONIC read together, so the agent
    /// can turn the jiffies stamped on flows into wall-clock time.
    #[xdp]
    pub fn flowlog_clock(_ctx: XdpContext) -> u32 {
        if let Some(s) = crate::maps::CLOCK.get_ptr_mut(0) {
            // SAFETY: helpers without preconditions; the pointer is the
            // array's only value, valid for the program's run.
            unsafe {
                (*s).jiffies = aya_ebpf::helpers::bpf_jiffies64();
                (*s).monotonic_ns = aya_ebpf::helpers::bpf_ktime_get_ns();
            }
        }
        xdp_action::XDP_PASS
    }

    #[classifier]
    pub fn flowlog_tc_ingress(ctx: TcContext) -> i32 {
        tc(&ctx, Direction::Ingress);
        TC_NEXT
    }

    #[classifier]
    pub fn flowlog_tc_egress(ctx: TcContext) -> i32 {
        tc(&ctx, Direction::Egress);
        TC_NEXT
    }

    #[inline(always)]
    fn tc(ctx: &TcContext, direction: Direction) {
        // SAFETY: the context pointer is valid for the program's run and
        // these fields are readable from TC programs.
        let (ifindex, gso_segs, vlan) = unsafe {
            let skb = &*ctx.skb.skb;
            (skb.ifindex, skb.gso_segs, skb.vlan_present)
        };
        let pkt = SkbPacket::new(ctx);
        observe(&pkt, ifindex, direction, gso_segs, (vlan != 0) as u8);
    }
}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    // SAFETY: the verifier rejects any program with a reachable panic, so a
    // loaded program can never get here.
    unsafe { core::hint::unreachable_unchecked() }
}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

/// Host builds (`cargo clippy --workspace`) compile this stub instead.
#[cfg(not(target_arch = "bpf"))]
fn main() {}
