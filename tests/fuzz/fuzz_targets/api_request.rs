//! An API request (path, query string, body) through the same parsing and
//! parameter checks a real request meets before any state is touched.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flowlog_fuzz::api_request::run(data));
