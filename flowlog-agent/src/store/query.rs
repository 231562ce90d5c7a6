//! SQL over a Logstore with DataFusion.
//!
//! Two tables are registered for each query:
//! - `logs`: the record table's names (DESIGN.md): `srcaddr`, `bytes`, …
//!   and the hyphenated ones, which SQL needs double-quoted:
//!   `"log-status"`, `"account-id"`, `"end"` (a keyword), …
//! - `logs_raw`: the columns as stored in the Parquet files, in snake_case
//!   (`log_status`, `account_id`, …) — what DuckDB or Spark see.
//!
//! Beside the engine's own functions, `in_cidr` and `cidr_network` work on
//! addresses ([`udf`]).
//!
//! Both hold only records whose window starts in the requested time range;
//! files outside it are never opened (their partition and name carry the
//! window start). A file that cannot be read is skipped, named in the
//! result, and the query answers from the rest.
//!
//! Queries come from API clients, so they are held to reading: statements
//! that define, write or set anything (`CREATE EXTERNAL TABLE` would read
//! any file, `COPY … TO` write one) are refused, and each query has a
//! memory pool and a time limit.

use std::{
    fs::File,
    path::{Path, PathBuf},
    sync::Arc,
};

use datafusion::{
    arrow::{array::RecordBatch, datatypes::SchemaRef},
    datasource::{
        MemTable,
        file_format::parquet::ParquetFormat,
        listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl},
    },
    execution::{
        context::{SQLOptions, SessionContext},
        disk_manager::{DiskManagerBuilder, DiskManagerMode},
        runtime_env::RuntimeEnvBuilder,
    },
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder,
    prelude::SessionConfig,
};

use super::schema;

pub mod isolated;
pub mod udf;

/// Memory DataFusion's pool lets one query hold; sorts and joins beyond it
/// fail (nothing spills to disk: a query only reads).
const QUERY_MEMORY_BYTES: usize = 512 << 20;
/// Address space of a query's child process: the pool, the rest of the
/// engine, and what expressions allocate outside the pool.
pub const WORKER_MEMORY_BYTES: u64 = 1536 << 20;
/// Descriptors a query's child process may hold.
pub const WORKER_OPEN_FILES: u64 = 4096;
/// Bytes of rows (as JSON) one answer carries at most.
pub const MAX_ANSWER_BYTES: usize = 32 << 20;
/// Files one query may read: a wider time range over a Logstore of many
/// small files is refused (compaction keeps past hours to a file each).
pub const MAX_FILES: usize = 20_000;
/// API queries running at once (each in its own process); more wait their
/// turn, and the wait counts against their time limit.
pub static QUERY_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);
/// Time one query may take, waiting for a slot included.
pub const QUERY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// Rows one query returns at most.
pub const MAX_ROWS: usize = 100_000;

/// Reading only: no DDL, no DML (`COPY`, `INSERT`), no `SET`.
fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

#[derive(Debug, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum QueryError {
    /// The Logstore is not there.
    #[error("logstore {0} does not exist")]
    NoLogstore(String),
    /// The SQL does not parse or plan (syntax, unknown column or table).
    #[error("invalid query: {0}")]
    Sql(String),
    /// The query failed on the data it read (division by zero, a bad
    /// cast): the query's own error.
    #[error("query failed: {0}")]
    Execution(String),
    /// Reading the data failed in a way skipping files could not fix.
    #[error("query failed: {0}")]
    Engine(String),
    /// The query ran past its time limit (planning and opening files
    /// included).
    #[error("the query ran longer than {} s", .0.as_secs())]
    Timeout(std::time::Duration),
    /// The query needed more memory than its process may have.
    #[error("the query needed more than its {} MiB of memory; aggregate more or select less", .0 >> 20)]
    Memory(u64),
    /// The time range holds more files than one query may read.
    #[error("the time range holds {files} files, more than the {max} one query may read; narrow From/To")]
    TooManyFiles { files: usize, max: usize },
    /// `from` is not before `to`.
    #[error("empty time range: from {from} is not before to {to}")]
    Range { from: i64, to: i64 },
    /// The rollups or sketches cannot answer (a file without them, or an
    /// unproven ranking): ask the records instead.
    #[error("{0}")]
    NoRollup(String),
}

/// What a query returned.
#[derive(Debug)]
pub struct QueryResult {
    pub batches: Vec<RecordBatch>,
    /// Files read.
    pub files: usize,
    /// Files skipped, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
    /// More rows matched than were returned.
    pub truncated: bool,
}

/// A time range `[from, to)` in Unix seconds; `None` ends are open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeRange {
    pub from: Option<i64>,
    pub to: Option<i64>,
}

impl TimeRange {
    fn contains(&self, start: i64) -> bool {
        self.from.is_none_or(|f| start >= f) && self.to.is_none_or(|t| start < t)
    }

    /// Could an hour partition beginning at `hour_start` hold a window start in range?
    fn overlaps_hour(&self, hour_start: i64) -> bool {
        self.from.is_none_or(|f| hour_start + 3600 > f) && self.to.is_none_or(|t| hour_start < t)
    }
}

/// Window start encoded at the front of a data file's name.
fn file_start(name: &str) -> Option<i64> {
    name.split('-').next()?.parse().ok()
}

/// The Logstore's data files whose window starts in `range`.
pub fn files_in_range(dir: &Path, range: TimeRange) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(days) = std::fs::read_dir(dir) else {
        return files;
    };
    for day in days.flatten() {
        let Some(day_no) = super::parse_dt(&day.file_name().to_string_lossy()) else {
            continue;
        };
        let Ok(hours) = std::fs::read_dir(day.path()) else {
            continue;
        };
        for hour in hours.flatten() {
            let name = hour.file_name().to_string_lossy().into_owned();
            let Some(h) = name.strip_prefix("hour=").and_then(|h| h.parse::<i64>().ok()) else {
                continue;
            };
            if !range.overlaps_hour(day_no * 86_400 + h * 3600) {
                continue;
            }
            // Files a merged file replaces are never read beside it.
            let here = super::compact::data_files(&hour.path());
            let covered = super::compact::covered(&here);
            for (fname, path) in here {
                if covered.contains(&fname) {
                    continue;
                }
                let wanted = if super::compact::is_merged(&fname) {
                    // A merged file spans many windows: any overlap.
                    super::compact::span(&fname).is_none_or(|(s, e)| {
                        range.from.is_none_or(|f| e > f) && range.to.is_none_or(|t| s < t)
                    })
                } else {
                    file_start(&fname).is_none_or(|s| range.contains(s))
                };
                if wanted {
                    files.push(path);
                }
            }
        }
    }
    files.sort();
    files
}

/// Checks a file before a query reads it: its footer (a truncated file
/// fails here), its columns' types against the Logstore's (a foreign file
/// with `bytes` as text would fail every query over it), and its checksum
/// (flipped bits would read back as wrong sums). Columns it lacks read as
/// null (files from before they existed).
fn check_file(path: &Path) -> Result<(), String> {
    let f = File::open(path).map_err(|e| e.to_string())?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| e.to_string())?;
    let ours = schema::schema();
    for field in builder.schema().fields() {
        if let Ok(want) = ours.field_with_name(field.name())
            && want.data_type() != field.data_type()
        {
            return Err(format!(
                "column {} is {}, the Logstore's is {}",
                field.name(),
                field.data_type(),
                want.data_type()
            ));
        }
    }
    super::checksum::verify(path)
}

/// Reads a whole file; used only to find the culprit after a failed query.
fn check_all(path: &Path) -> Result<(), String> {
    let f = File::open(path).map_err(|e| e.to_string())?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(f)
        .and_then(|b| b.build())
        .map_err(|e| e.to_string())?;
    for batch in reader {
        batch.map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The `logs` view's select list: record-table names for every column.
fn record_names(schema: &SchemaRef) -> String {
    schema
        .fields()
        .iter()
        .map(|f| {
            let name = f.name();
            let shown = schema::ALIASES
                .iter()
                .find(|(c, _)| c == name)
                .map_or(name.as_str(), |(_, a)| a);
            format!("{} AS {}", quoted(name), quoted(shown))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Files left out of a query, with the reason.
type Skipped = Vec<(PathBuf, String)>;

/// The Logstore's files in `range`, unchecked: for queries that read only
/// footers, whose rollups and sketches carry their own CRC (a file whose
/// footer cannot be read makes them refuse, and the records' query then
/// skips it). Reading every byte for the data checksum would cost these
/// queries more than their answer.
fn listed_files(dir: &Path, range: TimeRange, max_files: usize) -> Result<Vec<PathBuf>, QueryError> {
    if let (Some(from), Some(to)) = (range.from, range.to)
        && from >= to
    {
        return Err(QueryError::Range { from, to });
    }
    if !dir.is_dir() {
        return Err(QueryError::NoLogstore(dir.display().to_string()));
    }
    let listed = files_in_range(dir, range);
    if listed.len() > max_files {
        return Err(QueryError::TooManyFiles {
            files: listed.len(),
            max: max_files,
        });
    }
    Ok(listed)
}

/// The files in `range` that pass [`check_file`], and those that do not
/// with the reason; refuses an empty range, a missing Logstore, and more
/// than `max_files` files.
fn readable_files(
    dir: &Path,
    range: TimeRange,
    max_files: usize,
) -> Result<(Vec<PathBuf>, Skipped), QueryError> {
    let listed = listed_files(dir, range, max_files)?;
    let (mut good, mut skipped) = (Vec::new(), Vec::new());
    for f in listed {
        match check_file(&f) {
            Ok(()) => good.push(f),
            Err(why) => {
                tracing::warn!(file = %f.display(), reason = %why, "skipping unreadable Logstore file");
                skipped.push((f, why));
            }
        }
    }
    Ok((good, skipped))
}

/// A session under the query memory pool, with the address functions.
fn context() -> Result<SessionContext, QueryError> {
    let config = SessionConfig::new()
        .with_target_partitions(2)
        .with_information_schema(true);
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(QUERY_MEMORY_BYTES, 1.0)
        .with_disk_manager_builder(DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled))
        .build_arc()
        .map_err(|e| QueryError::Engine(e.to_string()))?;
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    for f in udf::functions() {
        ctx.register_udf(f);
    }
    Ok(ctx)
}

async fn session(files: &[PathBuf], range: TimeRange) -> Result<SessionContext, QueryError> {
    let engine = |e: datafusion::error::DataFusionError| QueryError::Engine(e.to_string());
    let ctx = context()?;
    let schema = schema::schema();
    if files.is_empty() {
        let empty = MemTable::try_new(schema.clone(), vec![vec![]]).map_err(engine)?;
        ctx.register_table("stored", Arc::new(empty)).map_err(engine)?;
    } else {
        let urls = files
            .iter()
            .map(|p| ListingTableUrl::parse(p.to_string_lossy()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(engine)?;
        let options = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        let config = ListingTableConfig::new_with_multi_paths(urls)
            .with_listing_options(options)
            .with_schema(schema.clone());
        let table = ListingTable::try_new(config).map_err(engine)?;
        ctx.register_table("stored", Arc::new(table)).map_err(engine)?;
    }
    let mut filter = Vec::new();
    if let Some(f) = range.from {
        filter.push(format!("\"start\" >= {f}"));
    }
    if let Some(t) = range.to {
        filter.push(format!("\"start\" < {t}"));
    }
    let filter = if filter.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", filter.join(" AND "))
    };
    for ddl in [
        format!("CREATE VIEW logs_raw AS SELECT * FROM stored{filter}"),
        format!(
            "CREATE VIEW logs AS SELECT {} FROM logs_raw",
            record_names(&schema)
        ),
    ] {
        ctx.sql(&ddl).await.map_err(engine)?;
    }
    Ok(ctx)
}

/// Plans `sql` read-only, fetching one row past `max_rows` to tell
/// whether the result was cut.
async fn plan(
    ctx: &SessionContext,
    sql: &str,
    max_rows: usize,
) -> Result<datafusion::dataframe::DataFrame, QueryError> {
    ctx.sql_with_options(sql, read_only())
        .await
        .and_then(|df| df.limit(0, Some(max_rows + 1)))
        .map_err(|e| QueryError::Sql(e.to_string()))
}

/// Keeps the first `max_rows` rows; says whether there were more.
fn cut(batches: Vec<RecordBatch>, max_rows: usize) -> (Vec<RecordBatch>, bool) {
    let mut left = max_rows;
    let mut out = Vec::with_capacity(batches.len());
    let mut truncated = false;
    for b in batches {
        if b.num_rows() > left {
            truncated = true;
            if left > 0 {
                out.push(b.slice(0, left));
            }
            left = 0;
        } else {
            left -= b.num_rows();
            out.push(b);
        }
    }
    (out, truncated)
}

/// Runs `sql` over the Logstore in `dir`, limited to `range`, returning
/// at most [`MAX_ROWS`] rows.
pub async fn run(dir: &Path, range: TimeRange, sql: &str) -> Result<QueryResult, QueryError> {
    run_limited(dir, range, sql, MAX_ROWS).await
}

/// [`run`] with at most `max_rows` rows (capped at [`MAX_ROWS`]), under
/// [`QUERY_TIMEOUT`] in all.
pub async fn run_limited(
    dir: &Path,
    range: TimeRange,
    sql: &str,
    max_rows: usize,
) -> Result<QueryResult, QueryError> {
    run_bounded(dir, range, sql, max_rows, MAX_FILES).await
}

/// [`run_limited`] reading at most `max_files` files.
pub async fn run_bounded(
    dir: &Path,
    range: TimeRange,
    sql: &str,
    max_rows: usize,
    max_files: usize,
) -> Result<QueryResult, QueryError> {
    let max_rows = max_rows.min(MAX_ROWS);
    tokio::time::timeout(QUERY_TIMEOUT, run_now(dir, range, sql, max_rows, max_files))
        .await
        .map_err(|_| QueryError::Timeout(QUERY_TIMEOUT))?
}

/// Runs `sql` over the `rollup` table: the rollups in the footers of the
/// Logstore's files in `range` (see [`super::rollup`]), windows starting in
/// `range`. Fails with [`QueryError::NoRollup`] when a readable file has
/// none, so the caller can ask the records instead.
pub async fn run_rollups(
    dir: &Path,
    range: TimeRange,
    sql: &str,
    max_rows: usize,
) -> Result<QueryResult, QueryError> {
    let max_rows = max_rows.min(MAX_ROWS);
    tokio::time::timeout(QUERY_TIMEOUT, rollups_now(dir, range, sql, max_rows))
        .await
        .map_err(|_| QueryError::Timeout(QUERY_TIMEOUT))?
}

async fn rollups_now(
    dir: &Path,
    range: TimeRange,
    sql: &str,
    max_rows: usize,
) -> Result<QueryResult, QueryError> {
    let engine = |e: datafusion::error::DataFusionError| QueryError::Engine(e.to_string());
    let good = listed_files(dir, range, MAX_FILES)?;
    let mut all = super::rollup::Rollup::default();
    for f in &good {
        let r = super::rollup::Rollup::read(f)
            .ok_or_else(|| QueryError::NoRollup(format!("{} holds no rollup", f.display())))?;
        all.merge(r);
    }
    let files = good.len();
    let batch = all
        .batch(range.from, range.to)
        .map_err(|e| QueryError::Engine(e.to_string()))?;
    let ctx = context()?;
    let table = MemTable::try_new(super::rollup::Rollup::schema(), vec![vec![batch]]).map_err(engine)?;
    ctx.register_table("rollup", Arc::new(table)).map_err(engine)?;
    let df = plan(&ctx, sql, max_rows).await?;
    let batches = df
        .collect()
        .await
        .map_err(|e| QueryError::Execution(e.to_string()))?;
    let (batches, truncated) = cut(batches, max_rows);
    Ok(QueryResult {
        batches,
        files,
        skipped: Vec::new(),
        truncated,
    })
}

/// Answers `q` from the sketches in the footers of the Logstore's files in
/// `range` (see [`super::sketch`]), windows starting in `range`. Fails with
/// [`QueryError::NoRollup`] when a readable file has none or the sketches
/// cannot answer (an unproven ranking), so the caller can ask the records.
pub fn run_sketch(
    dir: &Path,
    range: TimeRange,
    q: &super::sketch::answer::SketchQuery,
) -> Result<(Vec<serde_json::Value>, usize, Skipped), QueryError> {
    let good = listed_files(dir, range, MAX_FILES)?;
    let mut parts = Vec::new();
    for f in &good {
        let windows = super::sketch::read(f)
            .ok_or_else(|| QueryError::NoRollup(format!("{} holds no sketches", f.display())))?;
        parts.extend(windows.into_iter().filter(|w| {
            range.from.is_none_or(|from| w.start >= from) && range.to.is_none_or(|to| w.start < to)
        }));
    }
    let rows = super::sketch::answer::answer(&parts, q)
        .ok_or_else(|| QueryError::NoRollup("the sketches in range cannot prove this ranking".into()))?;
    Ok((rows, good.len(), Vec::new()))
}

async fn run_now(
    dir: &Path,
    range: TimeRange,
    sql: &str,
    max_rows: usize,
    max_files: usize,
) -> Result<QueryResult, QueryError> {
    let (files, mut skipped) = readable_files(dir, range, max_files)?;
    // Planning errors are the user's; execution errors may be a bad file.
    let ctx = session(&files, range).await?;
    let df = plan(&ctx, sql, max_rows).await?;
    match df.collect().await {
        Ok(batches) => {
            let (batches, truncated) = cut(batches, max_rows);
            Ok(QueryResult {
                batches,
                files: files.len(),
                skipped,
                truncated,
            })
        }
        Err(first) => {
            let (good, bad): (Vec<PathBuf>, Vec<PathBuf>) =
                files.into_iter().partition(|f| check_all(f).is_ok());
            if bad.is_empty() {
                // Every file reads: the failure is the query's own.
                return Err(QueryError::Execution(first.to_string()));
            }
            for b in bad {
                tracing::warn!(file = %b.display(), "skipping corrupt Logstore file");
                skipped.push((b, "corrupt data".into()));
            }
            let ctx = session(&good, range).await?;
            let df = plan(&ctx, sql, max_rows).await?;
            let batches = df
                .collect()
                .await
                .map_err(|e| QueryError::Engine(e.to_string()))?;
            let (batches, truncated) = cut(batches, max_rows);
            Ok(QueryResult {
                batches,
                files: good.len(),
                skipped,
                truncated,
            })
        }
    }
}

/// Output formats of query results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Csv,
    /// Flow-log text lines ([`crate::record::text`]), for record rows.
    Text,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "table" => Ok(Self::Table),
            "json" => Ok(Self::Json),
            "csv" => Ok(Self::Csv),
            "text" => Ok(Self::Text),
            other => Err(format!("unknown format {other:?} (table, json, csv or text)")),
        }
    }
}

/// Renders batches in `format`.
pub fn render(batches: &[RecordBatch], format: Format) -> Result<String, QueryError> {
    let err = |e: datafusion::arrow::error::ArrowError| QueryError::Engine(e.to_string());
    match format {
        Format::Table => datafusion::arrow::util::pretty::pretty_format_batches(batches)
            .map(|t| t.to_string())
            .map_err(err),
        Format::Json => {
            let mut w = datafusion::arrow::json::ArrayWriter::new(Vec::new());
            for b in batches {
                w.write(b).map_err(err)?;
            }
            w.finish().map_err(err)?;
            let out = w.into_inner();
            let text = if out.is_empty() {
                "[]".into()
            } else {
                String::from_utf8_lossy(&out).into_owned()
            };
            Ok(text + "\n")
        }
        Format::Csv => {
            let mut w = datafusion::arrow::csv::Writer::new(Vec::new());
            for b in batches {
                w.write(b).map_err(err)?;
            }
            Ok(String::from_utf8_lossy(&w.into_inner()).into_owned())
        }
        Format::Text => {
            let mut out = String::new();
            for row in to_json_rows(batches)? {
                out.push_str(&crate::record::text::line_from_row(&row));
                out.push('\n');
            }
            Ok(out)
        }
    }
}

/// Rows as JSON objects (for the API).
pub fn to_json_rows(batches: &[RecordBatch]) -> Result<Vec<serde_json::Value>, QueryError> {
    let text = render(batches, Format::Json)?;
    serde_json::from_str::<Vec<serde_json::Value>>(&text).map_err(|e| QueryError::Engine(e.to_string()))
}

#[cfg(test)]
mod tests;
