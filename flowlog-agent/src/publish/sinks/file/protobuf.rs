//! A file of length-delimited protobuf `FlowLogRecord`s (varint length,
//! then the message), the framing protobuf libraries read with
//! `parseDelimitedFrom` / `decode_length_delimited`.

use std::io;

use prost::Message;

use super::{
    WindowFile,
    spool::{AppendFile, Spool},
};
use crate::{journal::marks::FileId, window::WindowData};

pub struct ProtobufFile {
    out: Spool<AppendFile>,
}

impl ProtobufFile {
    pub fn new(file: AppendFile) -> Self {
        Self {
            out: Spool::new(file),
        }
    }
}

impl WindowFile for ProtobufFile {
    fn position(&mut self) -> Option<(u64, FileId)> {
        self.out.position()
    }

    fn rewind(&mut self, at: u64) -> io::Result<()> {
        self.out.rewind(at)
    }

    fn write(&mut self, window: &WindowData) -> io::Result<()> {
        self.out.window(|s| {
            window.try_for_each_record(|r| {
                r.encode_length_delimited(s.buffer()).map_err(io::Error::other)?;
                s.record_done()
            })
        })
    }
}
