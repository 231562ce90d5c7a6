//! GetLogs: a validated query, run in a child process under limits and
//! turned into the API's answer.

use std::path::PathBuf;

use serde_json::Value;

use super::{ApiError, actions};

/// A validated GetLogs request.
#[derive(Debug)]
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
