//! The sinks, one folder each, each with its configuration section.

pub mod file;
pub mod jetstream;
pub mod logstore;
