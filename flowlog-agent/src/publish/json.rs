//! JSON lines, one record per line, field names as in the record table of
//! DESIGN.md (kebab-case).

use std::io;

use super::{
    Sink,
    spool::{Spool, Target},
};
use crate::window::WindowData;

pub struct JsonLines<W> {
    name: String,
    out: Spool<W>,
}

impl<W: Target> JsonLines<W> {
    pub fn new(name: impl Into<String>, out: W) -> Self {
        Self {
            name: name.into(),
            out: Spool::new(out),
        }
    }
}

impl<W: Target> Sink for JsonLines<W> {
    fn name(&self) -> &str {
        &self.name
    }

    fn write(&mut self, window: &WindowData) -> io::Result<()> {
        self.out.window(|s| {
            window.try_for_each_record(|r| {
                serde_json::to_writer(&mut *s.buffer(), r)?;
                s.buffer().push(b'\n');
                s.record_done()
            })
        })
    }
}
