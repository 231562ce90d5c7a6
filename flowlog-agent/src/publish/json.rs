//! JSON lines, one record per line, field names as in the record table of
//! DESIGN.md (kebab-case).

use std::io::{self, BufWriter, Write};

use super::Sink;
use crate::window::WindowData;

pub struct JsonLines<W: Write> {
    name: String,
    out: BufWriter<W>,
}

impl<W: Write> JsonLines<W> {
    pub fn new(name: impl Into<String>, out: W) -> Self {
        Self {
            name: name.into(),
            out: BufWriter::with_capacity(1 << 16, out),
        }
    }
}

impl<W: Write + Send> Sink for JsonLines<W> {
    fn name(&self) -> &str {
        &self.name
    }

    fn write(&mut self, window: &WindowData) -> io::Result<()> {
        window.try_for_each_record(|r| {
            serde_json::to_writer(&mut self.out, r)?;
            self.out.write_all(b"\n")
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
