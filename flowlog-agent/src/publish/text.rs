//! The flow-log text layout ([`crate::record::text`]), one record per line.

use std::io;

use super::{
    Sink,
    spool::{Spool, Target},
};
use crate::{record::text, window::WindowData};

pub struct TextLines<W> {
    name: String,
    out: Spool<W>,
}

impl<W: Target> TextLines<W> {
    pub fn new(name: impl Into<String>, out: W) -> Self {
        Self {
            name: name.into(),
            out: Spool::new(out),
        }
    }
}

impl<W: Target> Sink for TextLines<W> {
    fn name(&self) -> &str {
        &self.name
    }

    fn write(&mut self, window: &WindowData) -> io::Result<()> {
        let mut line = String::new();
        self.out.window(|s| {
            window.try_for_each_record(|r| {
                line.clear();
                text::push_line(&mut line, r);
                line.push('\n');
                s.buffer().extend_from_slice(line.as_bytes());
                s.record_done()
            })
        })
    }
}
