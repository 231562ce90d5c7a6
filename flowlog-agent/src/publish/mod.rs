//! Publishing records: the seam between window building and where records
//! end up. Each [`Sink`] takes a window's records at a time; the embedded
//! Logstore ([`logstore`]) and NATS JetStream ([`jetstream`]) take whole
//! windows with their flow log's destination, and keep what they cannot
//! deliver yet.

pub mod jetstream;
mod lines;
pub mod logstore;
mod protobuf;
pub mod publisher;
mod spool;

use std::{
    io,
    path::{Path, PathBuf},
};

pub use lines::Lines;
pub use protobuf::ProtobufFile;

use crate::{
    config::{LineFormat, Output},
    journal::marks::FileId,
    window::WindowData,
};

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// An output file could not be opened.
    #[error("cannot open output file {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A destination for records.
pub trait Sink: Send {
    /// Short name for logs and status.
    fn name(&self) -> &str;
    /// Writes one window's records and makes them visible to readers:
    /// all of them, or (on error) none.
    fn write(&mut self, window: &WindowData) -> io::Result<()>;
    /// Where the next window would begin, in which file; `None` for a
    /// stream, which cannot be taken back.
    fn position(&mut self) -> Option<(u64, FileId)> {
        None
    }
    /// Cuts the output back to `at` (a window begun before a crash).
    fn rewind(&mut self, _at: u64) -> io::Result<()> {
        Ok(())
    }
}

fn open_append(path: &Path) -> Result<spool::AppendFile, PublishError> {
    spool::AppendFile::open(path).map_err(|source| PublishError::Open {
        path: path.to_owned(),
        source,
    })
}

/// Opens every sink the configuration names.
pub fn open_sinks(output: &Output) -> Result<Vec<Box<dyn Sink>>, PublishError> {
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    if output.stdout {
        sinks.push(Box::new(Lines::new("stdout", output.stdout_format, io::stdout())));
    }
    if let Some(path) = &output.text_file {
        sinks.push(Box::new(Lines::new(
            format!("text-file:{}", path.display()),
            LineFormat::Text,
            open_append(path)?,
        )));
    }
    if let Some(path) = &output.json_file {
        sinks.push(Box::new(Lines::new(
            format!("json-file:{}", path.display()),
            LineFormat::Json,
            open_append(path)?,
        )));
    }
    if let Some(path) = &output.protobuf_file {
        sinks.push(Box::new(ProtobufFile::new(
            format!("protobuf-file:{}", path.display()),
            open_append(path)?,
        )));
    }
    Ok(sinks)
}
