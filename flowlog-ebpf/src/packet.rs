//! [`Packet`] access for the two hooks: XDP reads the frame directly, TC
//! copies through `bpf_skb_load_bytes`, which also reaches paged data that
//! is not in the skb's linear area.

use core::mem::size_of;

use aya_ebpf::programs::{TcContext, XdpContext};
use flowlog_common::parse::Packet;

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

pub struct SkbPacket<'a> {
    ctx: &'a TcContext,
    len: usize,
}

impl<'a> SkbPacket<'a> {
    #[inline(always)]
    pub fn new(ctx: &'a TcContext) -> Self {
        Self {
            ctx,
            len: ctx.len() as usize,
        }
    }
}

impl Packet for SkbPacket<'_> {
    #[inline(always)]
    fn frame_len(&self) -> usize {
        self.len
    }

    #[inline(always)]
    fn load<T: Copy>(&self, offset: usize) -> Option<T> {
        self.ctx.load::<T>(offset).ok()
    }
}
