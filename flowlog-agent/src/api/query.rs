//! GetLogs: a validated query, run in a child process under limits and
//! turned into the API's answer.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{ApiError, BadParam, actions};
use crate::{model::LogstoreRef, store};

/// Rows GetLogs returns unless `Line` says otherwise.
pub const DEFAULT_LINE: u64 = 100;
/// Rows GetLogs returns at most.
pub const MAX_LINE: u64 = 10_000;

/// A validated GetLogs request.
#[derive(Clone, Debug)]
pub struct QuerySpec {
    pub dir: PathBuf,
    pub range: crate::store::query::TimeRange,
    pub sql: String,
    pub project: String,
    pub logstore: String,
    /// Rows to return at most (`Line`).
    pub line: usize,
    /// Time the query may take in all, its wait for a turn included.
    pub timeout: std::time::Duration,
    /// Over the files' rollups (the `rollup` table) instead of `logs`.
    pub rollups: bool,
    /// From the files' sketches instead of SQL.
    pub sketch: Option<store::sketch::answer::SketchQuery>,
}

/// The code of the error a rollup query answers when some file has no
/// rollup (the caller then asks the records).
pub const NO_ROLLUP: &str = "NoRollup";

impl QuerySpec {
    /// GetLogs' rules for a request over the Logstores of `data_dir`:
    /// `Line` in 1–[`MAX_LINE`], times that fit, the default query. Whether
    /// the Logstore exists is the caller's to say (the agent knows it from
    /// its state, the console from the data directory).
    pub fn for_logs(
        r: actions::GetLogs,
        data_dir: &Path,
        timeout: std::time::Duration,
    ) -> Result<Self, BadParam> {
        let line = r.line.unwrap_or(DEFAULT_LINE);
        if !(1..=MAX_LINE).contains(&line) {
            return Err(BadParam::new(
                "Line",
                format!("Line must be between 1 and {MAX_LINE}"),
            ));
        }
        let as_secs = |v: Option<u64>, name: &'static str| -> Result<Option<i64>, BadParam> {
            v.map(|x| i64::try_from(x).map_err(|_| BadParam::new(name, format!("{name} is out of range"))))
                .transpose()
        };
        let range = store::query::TimeRange {
            from: as_secs(r.from, "From")?,
            to: as_secs(r.to, "To")?,
        };
        let sql = r
            .query
            .unwrap_or_else(|| format!("SELECT * FROM logs ORDER BY start, interface LIMIT {line}"));
        let dir = store::logstore_dir(
            data_dir,
            &LogstoreRef {
                project: r.project_name.clone(),
                logstore: r.log_store_name.clone(),
            },
        );
        Ok(Self {
            dir,
            range,
            sql,
            project: r.project_name,
            logstore: r.log_store_name,
            line: usize::try_from(line).unwrap_or(usize::MAX),
            timeout,
            rollups: false,
            sketch: None,
        })
    }
}

/// Runs a GetLogs query in a child process (see
/// [`crate::store::query::isolated`]).
pub async fn run_query(q: QuerySpec) -> Result<Value, ApiError> {
    use crate::store::query::{
        QUERY_SLOTS, QueryError,
        isolated::{self, Limits, Request},
    };
    let limits = Limits {
        timeout: q.timeout,
        ..Limits::default()
    };
    let req = Request {
        dir: q.dir.clone(),
        from: q.range.from,
        to: q.range.to,
        sql: q.sql.clone(),
        max_rows: q.line,
        max_bytes: limits.answer_bytes,
        rollups: q.rollups,
        sketch: q.sketch.clone(),
    };
    let started = tokio::time::Instant::now();
    let slot = tokio::time::timeout(limits.timeout, QUERY_SLOTS.acquire())
        .await
        .map_err(|_| ApiError::invalid("Query", QueryError::Timeout(limits.timeout).to_string()))?
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let left = Limits {
        timeout: limits.timeout.saturating_sub(started.elapsed()),
        ..limits
    };
    let result = isolated::run(std::path::Path::new("/proc/self/exe"), &req, left).await;
    drop(slot);
    let result = result.map_err(|e| match e {
        // The limit as configured, not what was left of it after the wait.
        QueryError::Timeout(_) => ApiError::invalid("Query", QueryError::Timeout(limits.timeout).to_string()),
        QueryError::Sql(m) | QueryError::Execution(m) => ApiError::invalid("Query", m),
        QueryError::Memory(_) | QueryError::TooManyFiles { .. } => ApiError::invalid("Query", e.to_string()),
        QueryError::Range { .. } => ApiError::invalid("From", e.to_string()),
        QueryError::NoLogstore(_) => ApiError::not_found("LogStore", e.to_string()),
        QueryError::Engine(m) => ApiError::internal(m),
        QueryError::NoRollup(f) => ApiError::new(axum::http::StatusCode::CONFLICT, NO_ROLLUP, f),
    })?;
    let skipped_files: Vec<actions::SkippedFile> = result
        .skipped
        .into_iter()
        .map(|(file, reason)| actions::SkippedFile { file, reason })
        .collect();
    let answer = actions::Logs {
        project_name: q.project,
        log_store_name: q.logstore,
        count: result.rows.len(),
        logs: result.rows,
        files_read: result.files,
        complete: skipped_files.is_empty() && !result.truncated,
        skipped_files,
        truncated: result.truncated,
    };
    serde_json::to_value(answer).map_err(|e| ApiError::internal(e.to_string()))
}
