//! A file of length-delimited protobuf `FlowLogRecord`s (varint length,
//! then the message), the framing protobuf libraries read with
//! `parseDelimitedFrom` / `decode_length_delimited`.

use std::{
    fs::File,
    io::{self, BufWriter, Write},
};

use prost::Message;

use super::Sink;
use crate::window::WindowData;

pub struct ProtobufFile {
    name: String,
    out: BufWriter<File>,
    buf: Vec<u8>,
}

impl ProtobufFile {
    pub fn new(name: impl Into<String>, file: File) -> Self {
        Self {
            name: name.into(),
            out: BufWriter::with_capacity(1 << 16, file),
            buf: Vec::with_capacity(256),
        }
    }
}

impl Sink for ProtobufFile {
    fn name(&self) -> &str {
        &self.name
    }

    fn write(&mut self, window: &WindowData) -> io::Result<()> {
        window.try_for_each_record(|r| {
            self.buf.clear();
            r.encode_length_delimited(&mut self.buf)
                .map_err(io::Error::other)?;
            self.out.write_all(&self.buf)
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()?;
        match self.out.get_ref().sync_data() {
            // Character devices and pipes (e.g. /dev/null) have nothing to sync.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
            other => other,
        }
    }
}
