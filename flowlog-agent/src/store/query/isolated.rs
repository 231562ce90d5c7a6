//! Queries from API clients run in a child process, never in the agent.
//!
//! DataFusion's memory pool tracks sorts and joins, not every expression
//! (`repeat('x', 2000000000)` allocates outside it), and Parquet footers and
//! planning do blocking I/O with one descriptor per file. In a child —
//! `flowlog query-worker`, the agent's own executable — a query gets its
//! own address-space and descriptor limits (`setrlimit`), a lower CPU
//! priority, a wall-clock deadline that covers planning and file opening
//! (the child is killed at it), and an answer capped in bytes. Whatever a
//! query does, the agent only waits on a pipe, and capture, windows and
//! sinks go on.
//!
//! Protocol: the request as one JSON object on the child's stdin; the
//! outcome as one JSON object on its stdout.

use std::{path::PathBuf, process::Stdio, time::Duration};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{QueryError, TimeRange};

/// What the worker is asked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub dir: PathBuf,
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub sql: String,
    pub max_rows: usize,
    /// The rows' JSON may take at most this many bytes.
    pub max_bytes: usize,
    /// Query the `rollup` table (the files' rollups) instead of `logs`.
    #[serde(default)]
    pub rollups: bool,
    /// Answer from the files' sketches instead of SQL.
    #[serde(default)]
    pub sketch: Option<crate::store::sketch::answer::SketchQuery>,
}

impl Request {
    pub fn range(&self) -> TimeRange {
        TimeRange {
            from: self.from,
            to: self.to,
        }
    }
}

/// What the worker answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub rows: Vec<serde_json::Value>,
    pub files: usize,
    /// (file, reason) of files left out.
    pub skipped: Vec<(String, String)>,
    /// More rows matched than were returned (the row or the byte cap).
    pub truncated: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Outcome {
    Answer(Answer),
    Error(QueryError),
}

/// Bounds on one query's child process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Address space (`RLIMIT_AS`).
    pub memory_bytes: u64,
    /// Open descriptors (`RLIMIT_NOFILE`).
    pub open_files: u64,
    /// Wall clock, from spawn to answer.
    pub timeout: Duration,
    /// The answer's rows, as JSON.
    pub answer_bytes: usize,
    /// `nice` value: below the agent's own threads.
    pub nice: i32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: super::WORKER_MEMORY_BYTES,
            open_files: super::WORKER_OPEN_FILES,
            timeout: super::QUERY_TIMEOUT,
            answer_bytes: super::MAX_ANSWER_BYTES,
            nice: 10,
        }
    }
}

/// Slack for the envelope around the rows.
const ENVELOPE_BYTES: usize = 1 << 20;

/// Runs `req` in a child of `program` (the agent's own executable) under
/// `limits`.
pub async fn run(program: &std::path::Path, req: &Request, limits: Limits) -> Result<Answer, QueryError> {
    let input = serde_json::to_vec(req).map_err(|e| QueryError::Engine(e.to_string()))?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.arg("query-worker")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Few malloc arenas: their address-space reservations count
        // against RLIMIT_AS without holding anything.
        .env("MALLOC_ARENA_MAX", "2")
        .env_remove("RUST_LOG");
    crate::store::child::confine(
        &mut cmd,
        crate::store::child::Confinement {
            memory_bytes: Some(limits.memory_bytes),
            open_files: Some(limits.open_files),
            nice: limits.nice,
        },
    );
    let mut child = cmd
        .spawn()
        .map_err(|e| QueryError::Engine(format!("cannot start the query process: {e}")))?;
    let mut stdin = child.stdin.take();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let cap = limits.answer_bytes + ENVELOPE_BYTES;
    let work = async {
        if let Some(mut s) = stdin.take() {
            // A child that died at once closes its end: its exit says why.
            let _ = s.write_all(&input).await;
            drop(s);
        }
        // Both pipes at once: a child stuck writing one never blocks us
        // reading the other.
        let read_out = async {
            let mut out = Vec::new();
            if let Some(s) = stdout.as_mut() {
                s.take(cap as u64 + 1).read_to_end(&mut out).await?;
            }
            Ok::<_, std::io::Error>(out)
        };
        let read_err = async {
            let mut err = Vec::new();
            if let Some(s) = stderr.as_mut() {
                let _ = s.take(64 << 10).read_to_end(&mut err).await;
            }
            err
        };
        let (out, err) = tokio::join!(read_out, read_err);
        let out = out.map_err(|e| QueryError::Engine(format!("reading the query's answer: {e}")))?;
        if out.len() > cap {
            return Err(QueryError::Engine(format!(
                "the query's answer passed {cap} bytes"
            )));
        }
        let status = child
            .wait()
            .await
            .map_err(|e| QueryError::Engine(format!("waiting for the query process: {e}")))?;
        Ok((out, err, status))
    };
    let (out, err, status) = match tokio::time::timeout(limits.timeout, work).await {
        Ok(r) => r?,
        Err(_) => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(QueryError::Timeout(limits.timeout));
        }
    };
    outcome(&status, &out, &err, limits)
}

/// What the child's exit and output say.
fn outcome(
    status: &std::process::ExitStatus,
    out: &[u8],
    err: &[u8],
    limits: Limits,
) -> Result<Answer, QueryError> {
    if !status.success() {
        let err = String::from_utf8_lossy(err);
        use std::os::unix::process::ExitStatusExt;
        // An allocation the address-space limit refused aborts the child.
        let out_of_memory = err.contains("memory allocation") || status.signal() == Some(libc::SIGABRT);
        if out_of_memory {
            return Err(QueryError::Memory(limits.memory_bytes));
        }
        return Err(QueryError::Engine(format!(
            "the query process failed ({status}): {}",
            err.trim().lines().last().unwrap_or_default()
        )));
    }
    match serde_json::from_slice::<Outcome>(out) {
        Ok(Outcome::Answer(a)) => Ok(a),
        Ok(Outcome::Error(e)) => Err(e),
        Err(e) => Err(QueryError::Engine(format!(
            "unreadable answer from the query process: {e}"
        ))),
    }
}

/// The child's side: reads a [`Request`] on stdin, answers on stdout.
/// Returns the process exit code.
pub fn worker_main() -> i32 {
    let mut input = Vec::new();
    if std::io::Read::read_to_end(&mut std::io::stdin(), &mut input).is_err() {
        return 2;
    }
    let outcome = match serde_json::from_slice::<Request>(&input) {
        Ok(req) => match answer(&req) {
            Ok(a) => Outcome::Answer(a),
            Err(e) => Outcome::Error(e),
        },
        Err(e) => Outcome::Error(QueryError::Engine(format!("bad request: {e}"))),
    };
    let mut out = std::io::stdout().lock();
    match serde_json::to_writer(&mut out, &outcome) {
        Ok(()) => 0,
        Err(_) => 2,
    }
}

fn answer(req: &Request) -> Result<Answer, QueryError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| QueryError::Engine(e.to_string()))?;
    if let Some(q) = &req.sketch {
        let (rows, files, skipped) = super::run_sketch(&req.dir, req.range(), q)?;
        let (rows, cut) = cap_bytes(rows, req.max_bytes);
        let truncated = cut || rows.len() > req.max_rows;
        return Ok(Answer {
            rows: rows.into_iter().take(req.max_rows).collect(),
            files,
            skipped: skipped
                .into_iter()
                .map(|(p, why)| (p.display().to_string(), why))
                .collect(),
            truncated,
        });
    }
    let result = if req.rollups {
        rt.block_on(super::run_rollups(&req.dir, req.range(), &req.sql, req.max_rows))?
    } else {
        rt.block_on(super::run_limited(&req.dir, req.range(), &req.sql, req.max_rows))?
    };
    let rows = super::to_json_rows(&result.batches)?;
    let (rows, cut) = cap_bytes(rows, req.max_bytes);
    Ok(Answer {
        rows,
        files: result.files,
        skipped: result
            .skipped
            .into_iter()
            .map(|(p, why)| (p.display().to_string(), why))
            .collect(),
        truncated: result.truncated || cut,
    })
}

/// Keeps the leading rows whose JSON fits in `max_bytes`; says whether
/// any were left out.
pub fn cap_bytes(mut rows: Vec<serde_json::Value>, max_bytes: usize) -> (Vec<serde_json::Value>, bool) {
    let mut used = 0usize;
    let mut keep = rows.len();
    for (i, r) in rows.iter().enumerate() {
        used += serde_json::to_vec(r).map_or(usize::MAX, |v| v.len() + 1);
        if used > max_bytes {
            keep = i;
            break;
        }
    }
    let cut = keep < rows.len();
    rows.truncate(keep);
    (rows, cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_beyond_the_byte_cap_are_cut_and_said_so() {
        let rows: Vec<serde_json::Value> = (0..10)
            .map(|i| serde_json::json!({"x": "a".repeat(i * 10)}))
            .collect();
        let (all, cut) = cap_bytes(rows.clone(), usize::MAX);
        assert_eq!((all.len(), cut), (10, false));
        let (some, cut) = cap_bytes(rows.clone(), 100);
        assert!(cut && !some.is_empty() && some.len() < 10);
        let used: usize = some.iter().map(|r| r.to_string().len() + 1).sum();
        assert!(used <= 100);
        let (none, cut) = cap_bytes(rows, 3);
        assert!(cut && none.is_empty());
    }
}
