//! The sinks, one folder each, each with its configuration section.

pub mod file;
pub mod ipfix;
pub mod jetstream;
pub mod logstore;
