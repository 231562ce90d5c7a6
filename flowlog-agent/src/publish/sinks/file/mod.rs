//! Files and stdout: JSON or flow-log text lines ([`lines`]) and
//! length-delimited protobuf ([`protobuf`]), written whole windows at a
//! time ([`spool`]). The configuration's `[output]` section is this sink's.
//!
//! A window written again after a restart (a replay) must not be doubled:
//! before a file sink writes a journaled window, its mark records the
//! window's number and where it begins in the file (see
//! [`crate::journal::marks`]); a replay skips a window the mark says is
//! complete and cuts a half-written one back out first.

mod lines;
mod protobuf;
mod spool;

use std::{
    io,
    path::{Path, PathBuf},
};

pub use lines::Lines;
pub use protobuf::ProtobufFile;
use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use super::super::{Sink, Taken};
use crate::{
    engine::WindowRecords,
    journal::marks::{FileId, Mark, Marks, Plan, plan},
    telemetry::{SinkLabels, Telemetry},
    window::WindowData,
};

/// `[output]`: where records go besides the Logstore.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, clap::Args)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Output {
    /// Print records as JSON lines on stdout (the default when no other
    /// output is given).
    #[serde(default)]
    #[arg(long)]
    pub stdout: bool,
    /// Append records as JSON lines to this file.
    #[serde(default)]
    #[arg(long)]
    pub json_file: Option<PathBuf>,
    /// Append records as length-delimited protobuf `FlowLogRecord`s to this
    /// file.
    #[serde(default)]
    #[arg(long)]
    pub protobuf_file: Option<PathBuf>,
    /// Append records as flow-log text lines (the VPC flow-log layout).
    #[serde(default)]
    #[arg(long)]
    pub text_file: Option<PathBuf>,
    /// What stdout prints: json (default) or text (flow-log text lines).
    #[serde(default)]
    #[arg(long, value_enum)]
    pub stdout_format: Option<LineFormat>,
    /// `[output.ipfix]`: IPFIX export to collectors.
    #[serde(default)]
    #[command(flatten)]
    pub ipfix: super::ipfix::IpfixOptions,
}

impl Output {
    /// Records go somewhere: stdout when nothing else is named.
    pub fn or_stdout(mut self) -> Self {
        if self.json_file.is_none()
            && self.protobuf_file.is_none()
            && self.text_file.is_none()
            && self.ipfix.collectors.is_empty()
        {
            self.stdout = true;
        }
        self
    }
}

/// A line sink's layout: JSON lines or flow-log text lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LineFormat {
    #[default]
    Json,
    Text,
}

#[derive(Debug, thiserror::Error)]
pub enum FileSinkError {
    /// An output file could not be opened.
    #[error("cannot open output file {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A file (or stdout) that takes whole windows.
pub trait WindowFile: Send + 'static {
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

fn open_append(path: &Path) -> Result<spool::AppendFile, FileSinkError> {
    spool::AppendFile::open(path).map_err(|source| FileSinkError::Open {
        path: path.to_owned(),
        source,
    })
}

/// Opens every file sink `[output]` names.
pub fn open(
    output: &Output,
    marks: &Marks,
    telemetry: &Telemetry,
) -> Result<Vec<Box<dyn Sink>>, FileSinkError> {
    let mut files: Vec<(String, Box<dyn WindowFile>)> = Vec::new();
    if output.stdout {
        files.push((
            "stdout".into(),
            Box::new(Lines::new(output.stdout_format.unwrap_or_default(), io::stdout())),
        ));
    }
    if let Some(path) = &output.text_file {
        files.push((
            format!("text-file:{}", path.display()),
            Box::new(Lines::new(LineFormat::Text, open_append(path)?)),
        ));
    }
    if let Some(path) = &output.json_file {
        files.push((
            format!("json-file:{}", path.display()),
            Box::new(Lines::new(LineFormat::Json, open_append(path)?)),
        ));
    }
    if let Some(path) = &output.protobuf_file {
        files.push((
            format!("protobuf-file:{}", path.display()),
            Box::new(ProtobufFile::new(open_append(path)?)),
        ));
    }
    Ok(files
        .into_iter()
        .map(|(name, file)| {
            let mark = marks.load(&name);
            Box::new(FileSink {
                name,
                file,
                marks: marks.clone(),
                mark,
                telemetry: telemetry.clone(),
            }) as Box<dyn Sink>
        })
        .collect())
}

/// A window file with its mark and figures.
pub struct FileSink {
    name: String,
    file: Box<dyn WindowFile>,
    marks: Marks,
    /// The last window this sink began, and whether it finished it.
    mark: Option<Mark>,
    telemetry: Telemetry,
}

impl Sink for FileSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn take(&mut self, batch: &WindowRecords) -> Taken {
        let Some(result) = self.write_marked(batch) else {
            return Taken {
                resolved: batch.seq.into_iter().collect(),
                failed: false,
            };
        };
        let (sinks, labels) = (self.telemetry.sinks(), SinkLabels::of(&self.name));
        let records = batch.data.len() as u64;
        let failed = match result {
            Ok(()) => {
                sinks.records_by_sink.get_or_create(&labels).inc_by(records);
                false
            }
            Err(e) => {
                sinks.errors_by_sink.get_or_create(&labels).inc();
                sinks.dropped_by_sink.get_or_create(&labels).inc_by(records);
                error!(sink = %self.name, error = %e, records, "publish failed; the window's records are not in this sink");
                true
            }
        };
        Taken {
            resolved: batch.seq.into_iter().collect(),
            failed,
        }
    }
}

impl FileSink {
    /// Writes a window once: `None` when the file already has it (a replay
    /// of a window it finished).
    fn write_marked(&mut self, batch: &WindowRecords) -> Option<io::Result<()>> {
        let Some(seq) = batch.seq else {
            return Some(self.file.write(&batch.data));
        };
        let position = self.file.position();
        match plan(self.mark.as_ref(), seq, batch.replay, position.map(|(_, f)| f)) {
            Plan::Skip => {
                info!(sink = %self.name, window = seq, "the sink already has this window");
                return None;
            }
            Plan::Rewind(at) => {
                info!(sink = %self.name, window = seq, offset = at, "cutting back a window begun before a restart");
                if let Err(e) = self.file.rewind(at) {
                    return Some(Err(e));
                }
            }
            Plan::Write => {}
        }
        let position = self.file.position();
        let mut m = Mark {
            seq,
            offset: position.map(|(at, _)| at),
            file: position.map(|(_, f)| f),
            complete: false,
        };
        self.save(&m);
        let result = self.file.write(&batch.data);
        // A failed window was taken back out of the file; the mark stays
        // "begun" so a replay writes it again rather than skipping it.
        if result.is_ok() {
            m.complete = true;
            self.save(&m);
        }
        self.mark = Some(m);
        Some(result)
    }

    fn save(&self, m: &Mark) {
        if let Err(e) = self.marks.save(&self.name, m) {
            // Without its mark a replay may write the window twice here;
            // the window itself still goes out.
            warn!(sink = %self.name, error = %e, "cannot save the sink's mark");
        }
    }
}
