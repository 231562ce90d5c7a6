//! Reference programs for `cargo xtask bench`, never loaded by the agent:
//! the floor of a hook (a program that does nothing) and a minimal flow
//! counter (fixed-offset IPv4/UDP parse, one per-CPU hash update). The
//! benchmark compares flowlog's programs against both in the same run.
#![cfg_attr(target_arch = "bpf", no_std, no_main)]

#[cfg(target_arch = "bpf")]
mod programs {
    use aya_ebpf::{
        bindings::{BPF_NOEXIST, xdp_action},
        macros::{classifier, map, xdp},
        maps::PerCpuHashMap,
        programs::{TcContext, XdpContext},
    };

    #[repr(C)]
    #[derive(Clone, Copy)]
    pub struct BenchKey {
        saddr: u32,
        daddr: u32,
        sport: u16,
        dport: u16,
        proto: u8,
        _pad: [u8; 3],
    }

    #[repr(C)]
    #[derive(Clone, Copy)]
    pub struct BenchValue {
        packets: u64,
        bytes: u64,
    }

    #[map]
    static BENCH_FLOWS: PerCpuHashMap<BenchKey, BenchValue> = PerCpuHashMap::with_max_entries(1024, 0);

    const TC_NEXT: i32 = -1;
    /// Ethernet + IPv4 without options + the ports.
    const PREFIX: usize = 14 + 20 + 4;

    #[xdp]
    pub fn bench_empty_xdp(_ctx: XdpContext) -> u32 {
        xdp_action::XDP_PASS
    }

    #[classifier]
    pub fn bench_empty_tc(_ctx: TcContext) -> i32 {
        TC_NEXT
    }

    #[xdp]
    pub fn bench_minimal_xdp(ctx: XdpContext) -> u32 {
        let (data, end) = (ctx.data(), ctx.data_end());
        if data + PREFIX <= end {
            // SAFETY: bounds checked against data_end just above.
            let h = unsafe { (data as *const [u8; PREFIX]).read_unaligned() };
            count(&h, (end - data) as u64);
        }
        xdp_action::XDP_PASS
    }

    #[classifier]
    pub fn bench_minimal_tc(ctx: TcContext) -> i32 {
        // One copy: TC packets may keep their headers outside the linear area.
        if let Ok(h) = ctx.load::<[u8; PREFIX]>(0) {
            count(&h, u64::from(ctx.len()));
        }
        TC_NEXT
    }

    #[inline(always)]
    fn count(h: &[u8; PREFIX], len: u64) {
        let key = BenchKey {
            saddr: u32::from_ne_bytes([h[26], h[27], h[28], h[29]]),
            daddr: u32::from_ne_bytes([h[30], h[31], h[32], h[33]]),
            sport: u16::from_ne_bytes([h[34], h[35]]),
            dport: u16::from_ne_bytes([h[36], h[37]]),
            proto: h[23],
            _pad: [0; 3],
        };
        if let Some(v) = BENCH_FLOWS.get_ptr_mut(&key) {
            // SAFETY: this CPU's value.
            unsafe {
                (*v).packets += 1;
                (*v).bytes += len;
            }
            return;
        }
        let _ = BENCH_FLOWS.insert(
            &key,
            &BenchValue {
                packets: 1,
                bytes: len,
            },
            BPF_NOEXIST as u64,
        );
    }
}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    // SAFETY: the verifier rejects programs with a reachable panic.
    unsafe { core::hint::unreachable_unchecked() }
}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

#[cfg(not(target_arch = "bpf"))]
fn main() {}
