//! Files the agent reads back at start: state.json (checked, then turned
//! into what the engine runs) and windows.json (window progress).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flowlog_fuzz::state_files::run(data));
