//! A configuration file: TOML parsing, then every range and consistency
//! check the agent applies before it starts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flowlog_fuzz::config_file::run(data));
