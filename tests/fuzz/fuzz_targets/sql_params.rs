//! GetLogs parameters: a time range and SQL, run by the query engine over
//! a Logstore. Whatever the text, only reading may happen: nothing is
//! written, nothing defined, no panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flowlog_fuzz::sql_params::run(data));
