//! [`Packet`] access for the two hooks: XDP reads the frame directly; TC
//! copies the headers out of the skb (which may keep them outside its linear
//! area) with `bpf_skb_load_bytes` — once, as one prefix that covers the
//! usual Ethernet/IP/transport headers, rather than once per header. The
//! prefix lives in a per-CPU scratch map: the 512-byte stack has no room.

use core::mem::size_of;

use aya_ebpf::{
    helpers::bpf_skb_load_bytes,
    programs::{TcContext, XdpContext},
};
use flowlog_common::parse::Packet;

use crate::maps::{SCRATCH, SCRATCH_BYTES};

pub struct XdpPacket {
    data: usize,
    end: usize,
}

impl XdpPacket {
    #[inline(always)]
    pub fn new(ctx: &XdpContext) -> Self {
        Self {
            data: ctx.data(),
            end: ctx.data_end(),
        }
    }
}

impl Packet for XdpPacket {
    #[inline(always)]
    fn frame_len(&self) -> usize {
        self.end - self.data
    }

    #[inline(always)]
    fn load<T: Copy>(&self, offset: usize) -> Option<T> {
        let start = self.data + offset;
        if start + size_of::<T>() > self.end {
            return None;
        }
        // SAFETY: bounds checked against data_end just above.
        Some(unsafe { (start as *const T).read_unaligned() })
    }
}

/// Bytes copied up front: Ethernet + two VLAN tags + IPv4 with options or
/// IPv6 + TCP — every header of most packets. A power of two, so an offset
/// can be masked into range for the verifier; the scratch buffer has slack
/// after it for the widest read.
const PREFIX: usize = 128;
const _: () = assert!(PREFIX.is_power_of_two() && PREFIX + 40 <= SCRATCH_BYTES);

pub struct SkbPacket<'a> {
    ctx: &'a TcContext,
    len: usize,
    /// Bytes of the prefix filled from the packet (0 without scratch).
    have: usize,
    prefix: *const [u8; SCRATCH_BYTES],
}

impl<'a> SkbPacket<'a> {
    #[inline(always)]
    pub fn new(ctx: &'a TcContext) -> Self {
        let len = ctx.len() as usize;
        let mut p = Self {
            ctx,
            len,
            have: 0,
            prefix: core::ptr::null(),
        };
        let Some(buf) = SCRATCH.get_ptr_mut(0) else {
            return p;
        };
        let want = if len < PREFIX { len } else { PREFIX };
        if want > 0 {
            // SAFETY: `want` is between 1 and PREFIX, the buffer's size; the
            // buffer is this CPU's and programs do not nest on one CPU.
            let rc = unsafe { bpf_skb_load_bytes(ctx.skb.skb.cast(), 0, buf.cast(), want as u32) };
            if rc == 0 {
                p.have = want;
                p.prefix = buf;
            }
        }
        p
    }
}

impl Packet for SkbPacket<'_> {
    #[inline(always)]
    fn frame_len(&self) -> usize {
        self.len
    }

    #[inline(always)]
    fn load<T: Copy>(&self, offset: usize) -> Option<T> {
        if size_of::<T>() <= 40 && offset + size_of::<T>() <= self.have {
            // The mask changes nothing (offset < have <= PREFIX) but gives
            // the verifier a bound it cannot lose: (PREFIX - 1) + 40 bytes
            // fit the scratch buffer.
            let at = offset & (PREFIX - 1);
            // SAFETY: `have` > 0 only with a valid buffer, and the range lies
            // inside its filled part.
            return Some(unsafe { self.prefix.cast::<u8>().add(at).cast::<T>().read_unaligned() });
        }
        self.ctx.load::<T>(offset).ok()
    }
}
