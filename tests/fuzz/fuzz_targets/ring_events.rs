//! Ring-buffer items as the kernel side hands them over (overflow events,
//! handshake samples), decoded and carried all the way to records: what a
//! damaged or foreign pinned ring could feed the agent.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flowlog_fuzz::ring_events::run(data));
