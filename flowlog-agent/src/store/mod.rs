//! The embedded log service: Logstores as directories of Parquet files,
//! partitioned by time, that other engines (DuckDB, Spark, Trino, pandas)
//! read as they are.
//!
//! ```text
//! <data-dir>/logstores/<project>/<logstore>/dt=YYYY-MM-DD/hour=HH/<start>-<end>-<flow-log-id>-<rand>.parquet
//! ```
//!
//! One file per flow log and window, in the partition of the window's start
//! (UTC). A file is written under a hidden temporary name, fsynced, renamed
//! into place and the directory fsynced, so a crash never exposes a partial
//! file; readers ignore names starting with a dot. The agent names a
//! window's file by the window (its start in nanoseconds as the last
//! token), so writing the same window again after a restart replaces the
//! file instead of adding a second one. Each file's footer also holds its
//! records summed per window and traffic class ([`rollup`]), and the
//! sketches the console's distinct, latency and top-talker charts need
//! ([`sketch`]).

pub mod analyses;
pub mod checksum;
pub mod child;
pub mod compact;
pub mod query;
pub mod rollup;
pub mod schema;
pub mod sketch;
pub mod summary;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use datafusion::parquet::{
    arrow::ArrowWriter,
    basic::{Compression, Encoding, ZstdLevel},
    file::properties::{EnabledStatistics, WriterProperties},
    schema::types::ColumnPath,
};

use crate::{
    model::{LogstoreRef, Window},
    record::FlowLogRecord,
    window::WindowData,
};

/// Records converted to Arrow at a time (and rows per Parquet row group).
const CHUNK_ROWS: usize = 131_072;

/// Directory of all Logstores inside the data directory.
pub const LOGSTORES_DIR: &str = "logstores";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("writing {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("encoding Parquet for {path}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: datafusion::parquet::errors::ParquetError,
    },
    #[error("building the record batch")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    #[error(transparent)]
    Random(#[from] crate::state::random::RandomError),
}

pub fn logstore_dir(data_dir: &Path, l: &LogstoreRef) -> PathBuf {
    data_dir.join(LOGSTORES_DIR).join(&l.project).join(&l.logstore)
}

/// `dt=YYYY-MM-DD/hour=HH` of a Unix second (UTC). Window starts come from
/// the clock, so the date is always in range; the epoch stands in if not.
pub fn partition(unix_secs: i64) -> PathBuf {
    let t = chrono::DateTime::from_timestamp(unix_secs, 0).unwrap_or_default();
    PathBuf::from(t.format("dt=%Y-%m-%d").to_string()).join(t.format("hour=%H").to_string())
}

/// A name as one file-name token: anything but letters, digits, '.', '_'
/// and '-' becomes '_' (ids come from configuration and the network), and
/// at most 64 characters, so a file name stays far below 255 bytes.
fn file_token(s: &str) -> String {
    s.chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Parses `dt=YYYY-MM-DD` to days since the epoch; `None` for anything
/// else, a date out of range included (a directory name is outside input).
pub fn parse_dt(name: &str) -> Option<i64> {
    let date = name.strip_prefix("dt=")?;
    let d = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    Some(d.signed_duration_since(chrono::NaiveDate::default()).num_days())
}

/// How a data file's last name token is chosen.
#[derive(Clone, Copy)]
enum Name<'a> {
    /// Random: every write is a new file.
    Random,
    /// Given (a message id): a second write of it is skipped.
    Once(&'a str),
    /// The window's start: a second write replaces the first.
    Window(i128),
}

/// Writes windows of records as Parquet files.
#[derive(Clone)]
pub struct Writer {
    data_dir: PathBuf,
    props: Arc<WriterProperties>,
}

impl Writer {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            data_dir: data_dir.to_owned(),
            props: Arc::new(Self::properties()),
        }
    }

    /// How every Logstore file is encoded.
    pub fn properties() -> WriterProperties {
        let mut props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
            .set_dictionary_enabled(true);
        // High-cardinality integers: delta bit-packing beats a dictionary
        // that overflows into plain 8-byte values (half the bytes per record).
        for col in ["first_seen", "last_seen", "bytes", "packets"] {
            props = props
                .set_column_dictionary_enabled(ColumnPath::from(col), false)
                .set_column_encoding(ColumnPath::from(col), Encoding::DELTA_BINARY_PACKED);
        }
        props
            .set_statistics_enabled(EnabledStatistics::Chunk)
            // No offset index: everything before the footer is then data,
            // and the file's checksum covers all of it.
            .set_offset_index_disabled(true)
            .set_max_row_group_row_count(Some(CHUNK_ROWS))
            .build()
    }

    /// Writes one window of one flow log, replacing an earlier write of
    /// the same window; returns the file's path.
    pub fn write(
        &self,
        dest: &LogstoreRef,
        flow_log_id: &str,
        data: &WindowData,
    ) -> Result<PathBuf, StoreError> {
        let name = Name::Window(data.window.start_ns);
        self.write_with(dest, flow_log_id, data.window, name, |emit| {
            data.try_for_each_record(emit)
        })
        .map(|p| p.unwrap_or_default())
    }

    /// Writes records of one window as one file (tests and benchmarks).
    /// Borrowed, as the agent's own path renders them: no record is
    /// allocated or freed in here.
    pub fn write_records(
        &self,
        dest: &LogstoreRef,
        flow_log_id: &str,
        window: Window,
        records: &[FlowLogRecord],
    ) -> Result<PathBuf, StoreError> {
        self.write_with(dest, flow_log_id, window, Name::Random, |emit| {
            records.iter().try_for_each(emit)
        })
        .map(|p| p.unwrap_or_default())
    }

    /// Writes records as the file named by `unique` (e.g. a message id),
    /// unless that file is already there: then `Ok(None)`. Writing the same
    /// records twice therefore stores them once.
    pub fn write_once(
        &self,
        dest: &LogstoreRef,
        flow_log_id: &str,
        window: Window,
        unique: &str,
        records: &[FlowLogRecord],
    ) -> Result<Option<PathBuf>, StoreError> {
        self.write_with(dest, flow_log_id, window, Name::Once(unique), |emit| {
            records.iter().try_for_each(emit)
        })
    }

    /// Writes whatever `produce` feeds its callback. Rows go to Arrow and
    /// Parquet in chunks, so memory stays bounded whatever the window's size.
    fn write_with(
        &self,
        dest: &LogstoreRef,
        flow_log_id: &str,
        window: Window,
        unique: Name<'_>,
        produce: impl FnOnce(&mut dyn FnMut(&FlowLogRecord) -> Result<(), StoreError>) -> Result<(), StoreError>,
    ) -> Result<Option<PathBuf>, StoreError> {
        let dir = logstore_dir(&self.data_dir, dest).join(partition(window.start_secs()));
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| StoreError::Io { path, source }
        };
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let last = match unique {
            Name::Random => crate::state::random::string(crate::state::random::LOWER_ALNUM, 6)?,
            Name::Once(u) => file_token(u),
            Name::Window(start_ns) => format!("w{start_ns}"),
        };
        let name = format!(
            "{}-{}-{}-{last}.parquet",
            window.start_secs(),
            window.end_secs(),
            file_token(flow_log_id),
        );
        let path = dir.join(&name);
        if matches!(unique, Name::Once(_))
            && (path.exists() || compact::covered(&compact::data_files(&dir)).contains(&name))
        {
            return Ok(None);
        }
        let mut failure: Option<StoreError> = None;
        let written = crate::durable::write_with(&path, None, |file| {
            let pq = |source| StoreError::Parquet {
                path: path.clone(),
                source,
            };
            let result = (|| {
                let mut w = ArrowWriter::try_new(
                    crate::durable::Summed::new(&mut *file),
                    schema::schema(),
                    Some((*self.props).clone()),
                )
                .map_err(pq)?;
                // Records come sorted by flow (source first): long runs for
                // the dictionary and run-length encodings.
                let mut batch = schema::BatchBuilder::with_capacity(CHUNK_ROWS);
                let (written, summaries) = summary::beside(|summarize| {
                    let mut put = |b: datafusion::arrow::array::RecordBatch| {
                        summarize(&b);
                        w.write(&b).map_err(pq)
                    };
                    produce(&mut |r: &FlowLogRecord| {
                        batch.append(r);
                        if batch.len() >= CHUNK_ROWS {
                            put(batch.finish()?)?;
                        }
                        Ok(())
                    })?;
                    if !batch.is_empty() {
                        put(batch.finish()?)?;
                    }
                    Ok::<(), StoreError>(())
                });
                written?;
                // Everything before the footer is in; its checksum goes in
                // the footer.
                w.flush().map_err(pq)?;
                w.sync().map_err(|e| StoreError::Io {
                    path: path.clone(),
                    source: e,
                })?;
                let sum = checksum::key_value(w.inner());
                w.append_key_value_metadata(sum);
                for kv in summaries.map(summary::Summaries::key_values).unwrap_or_default() {
                    w.append_key_value_metadata(kv);
                }
                w.close().map_err(pq).map(drop)
            })();
            result.map_err(|e| {
                let text = std::io::Error::other(e.to_string());
                failure = Some(e);
                text
            })
        });
        match (written, failure) {
            (Ok(()), _) => Ok(Some(path)),
            (Err(_), Some(e)) => Err(e),
            (Err(e), None) => Err(io(&path)(e)),
        }
    }
}

/// The value under `key` in the Parquet footer of `path`, if any.
pub fn footer_value(path: &Path, key: &str) -> Option<String> {
    use datafusion::parquet::file::{reader::FileReader, serialized_reader::SerializedFileReader};
    let reader = SerializedFileReader::new(std::fs::File::open(path).ok()?).ok()?;
    reader
        .metadata()
        .file_metadata()
        .key_value_metadata()?
        .iter()
        .find(|k| k.key == key)?
        .value
        .clone()
}

/// Removes the day partitions of a Logstore that lie wholly more than
/// `ttl_days` before `now` (Unix seconds). Returns what it removed.
pub fn expire(dir: &Path, ttl_days: u32, now: i64) -> std::io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(removed);
    };
    let cutoff_day = now.div_euclid(86_400) - i64::from(ttl_days);
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        // A day is expired once its last second is older than the TTL.
        if parse_dt(&name).is_some_and(|day| day < cutoff_day) {
            std::fs::remove_dir_all(entry.path())?;
            removed.push(entry.path());
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_name_utc_dates_and_hostile_names_parse_to_nothing() {
        assert_eq!(partition(1_796_042_504), PathBuf::from("dt=2026-11-30/hour=12"));
        assert_eq!(partition(0), PathBuf::from("dt=1970-01-01/hour=00"));
        assert_eq!(parse_dt("dt=1970-01-01"), Some(0));
        assert_eq!(parse_dt("dt=2026-11-30"), Some(20_787));
        assert_eq!(parse_dt("dt=2000-02-29"), Some(11_016));
        for bad in [
            "dt=2026-13-01",
            "dt=2026-02-30",
            "hour=12",
            "dt=9223372036854775807-01-01",
            "dt=-99999999-01-01",
        ] {
            assert_eq!(parse_dt(bad), None, "{bad}");
        }
    }

    #[test]
    fn expiry_removes_whole_old_days_only() -> std::io::Result<()> {
        let dir = std::env::temp_dir().join(format!(
            "flowlog-expire-{}",
            crate::state::random::string(crate::state::random::LOWER_ALNUM, 8).unwrap_or_default()
        ));
        for d in [
            "dt=2026-11-20",
            "dt=2026-11-22",
            "dt=2026-11-30",
            "not-a-partition",
        ] {
            std::fs::create_dir_all(dir.join(d).join("hour=00"))?;
        }
        // now = 2026-11-30 12:00 UTC, ttl 8 days: the cutoff day is 11-22.
        let removed = expire(&dir, 8, 1_796_040_000)?;
        assert_eq!(removed, vec![dir.join("dt=2026-11-20")]);
        assert!(dir.join("dt=2026-11-22").exists() && dir.join("not-a-partition").exists());
        std::fs::remove_dir_all(&dir)
    }
}
