//! Line sinks, one record per line: JSON (field names as in the record
//! table of DESIGN.md, kebab-case) or the flow-log text layout
//! ([`crate::record::text`]).

use std::io;

use super::{
    LineFormat, WindowFile,
    spool::{Spool, Target},
};
use crate::{journal::marks::FileId, record::text, window::WindowData};

pub struct Lines<W> {
    format: LineFormat,
    out: Spool<W>,
}

impl<W: Target> Lines<W> {
    pub fn new(format: LineFormat, out: W) -> Self {
        Self {
            format,
            out: Spool::new(out),
        }
    }
}

impl<W: Target + Send + 'static> WindowFile for Lines<W> {
    fn position(&mut self) -> Option<(u64, FileId)> {
        self.out.position()
    }

    fn rewind(&mut self, at: u64) -> io::Result<()> {
        self.out.rewind(at)
    }

    fn write(&mut self, window: &WindowData) -> io::Result<()> {
        let format = self.format;
        let mut line = String::new();
        self.out.window(|s| {
            window.try_for_each_record(|r| {
                match format {
                    LineFormat::Json => serde_json::to_writer(&mut *s.buffer(), r)?,
                    LineFormat::Text => {
                        line.clear();
                        text::push_line(&mut line, r);
                        s.buffer().extend_from_slice(line.as_bytes());
                    }
                }
                s.buffer().push(b'\n');
                s.record_done()
            })
        })
    }
}
