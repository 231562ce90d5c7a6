//! Compaction: a Logstore written every window holds one small file per
//! window and flow log — 3,600 an hour at 1-s windows. Once an hour
//! partition is past its grace, its files are merged into one, so queries
//! open a file per hour instead of thousands.
//!
//! The merged file lists the files it replaces in its Parquet key-value
//! metadata ([`SOURCES_KEY`]). It is renamed into place first and its
//! sources removed after; a reader that sees both (the instant between, or
//! after a crash) ignores every file a merged file lists, so no record is
//! read twice, and the next pass removes the leftovers. A file that arrives
//! late (a window kept while the disk was full, a replay after a restart)
//! is merged by a later pass, together with the merged file before it.

use std::{
    collections::BTreeSet,
    fs::File,
    path::{Path, PathBuf},
};

use datafusion::parquet::{
    arrow::{ArrowWriter, arrow_reader::ParquetRecordBatchReaderBuilder},
    file::{metadata::KeyValue, reader::FileReader, serialized_reader::SerializedFileReader},
};
use tracing::{info, warn};

use super::{StoreError, schema};

/// Key-value metadata of a merged file: the JSON list of the file names it
/// replaces.
pub const SOURCES_KEY: &str = "flowlog.sources";
/// The name token that marks a merged file (`~` never appears in a flow
/// log id's token, so no window file can pass for one).
const MERGED: &str = "~merged";

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Compacted {
    pub partitions: usize,
    pub files_merged: usize,
    pub leftovers_removed: usize,
    pub records: u64,
}

/// Whether a data file name is a merged file's.
pub fn is_merged(name: &str) -> bool {
    name.split('-').nth(2) == Some(MERGED)
}

/// The file names a merged file replaces (empty for any other file, or
/// one whose footer cannot be read).
pub fn sources_of(path: &Path) -> Vec<String> {
    let Ok(f) = File::open(path) else {
        return Vec::new();
    };
    let Ok(reader) = SerializedFileReader::new(f) else {
        return Vec::new();
    };
    reader
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|k| k.key == SOURCES_KEY))
        .and_then(|k| k.value.as_deref())
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or_default()
}

/// Data files of one partition directory (visible Parquet files), sorted.
pub fn data_files(partition: &Path) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(partition)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .filter(|(n, _)| !n.starts_with('.') && n.ends_with(".parquet"))
        .collect();
    out.sort();
    out
}

/// Names in a partition that some merged file there replaces.
pub fn covered(files: &[(String, PathBuf)]) -> BTreeSet<String> {
    files
        .iter()
        .filter(|(n, _)| is_merged(n))
        .flat_map(|(_, p)| sources_of(p))
        .collect()
}

/// (window start, window end) of a data file's name.
pub fn span(name: &str) -> Option<(i64, i64)> {
    let mut it = name.split('-');
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// How long after an hour ends its partition is left alone: windows that
/// started in it are still being written (a 10-minute window starting at
/// :55 ends at :05 of the next hour).
pub const GRACE_SECS: i64 = 15 * 60;

/// Every Logstore of a data directory (see [`compact_logstore`]).
pub fn compact_data_dir(
    data_dir: &Path,
    now: i64,
    grace_secs: i64,
    min_files: usize,
) -> Result<Compacted, StoreError> {
    let mut out = Compacted::default();
    let root = data_dir.join(super::LOGSTORES_DIR);
    for project in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        for logstore in std::fs::read_dir(project.path()).into_iter().flatten().flatten() {
            if !logstore.path().is_dir() {
                continue;
            }
            let done = compact_logstore(&logstore.path(), now, grace_secs, min_files)?;
            out.partitions += done.partitions;
            out.files_merged += done.files_merged;
            out.leftovers_removed += done.leftovers_removed;
            out.records += done.records;
        }
    }
    Ok(out)
}

/// Runs a compaction pass of `data_dir` in a child process of `program`
/// (the agent's own executable) at the lowest CPU priority, so merging a
/// day of small files never takes a core from capture. Logs the outcome.
pub async fn run_in_background(program: &Path, data_dir: &Path) {
    let mut cmd = tokio::process::Command::new(program);
    cmd.arg("compact")
        .arg("--data-dir")
        .arg(data_dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    super::child::confine(
        &mut cmd,
        super::child::Confinement {
            memory_bytes: None,
            open_files: None,
            nice: 19,
        },
    );
    match cmd.output().await {
        Ok(o) if o.status.success() => {}
        Ok(o) => warn!(
            status = %o.status,
            error = %String::from_utf8_lossy(&o.stderr).trim().lines().last().unwrap_or_default(),
            "Logstore compaction failed; it is tried again later"
        ),
        Err(e) => warn!(error = %e, "cannot start Logstore compaction"),
    }
}

/// Merges the files of every partition of the Logstore in `dir` whose hour
/// ended more than `grace_secs` before `now` and that holds at least
/// `min_files` files not yet merged.
pub fn compact_logstore(
    dir: &Path,
    now: i64,
    grace_secs: i64,
    min_files: usize,
) -> Result<Compacted, StoreError> {
    let mut out = Compacted::default();
    let Ok(days) = std::fs::read_dir(dir) else {
        return Ok(out);
    };
    for day in days.flatten() {
        let Some(day_no) = super::parse_dt(&day.file_name().to_string_lossy()) else {
            continue;
        };
        for hour in std::fs::read_dir(day.path()).into_iter().flatten().flatten() {
            let name = hour.file_name().to_string_lossy().into_owned();
            let Some(h) = name.strip_prefix("hour=").and_then(|h| h.parse::<i64>().ok()) else {
                continue;
            };
            let hour_end = day_no * 86_400 + (h + 1) * 3600;
            if hour_end + grace_secs > now {
                continue;
            }
            let done = compact_partition(&hour.path(), min_files)?;
            if done.files_merged > 0 || done.leftovers_removed > 0 {
                out.partitions += 1;
                out.files_merged += done.files_merged;
                out.leftovers_removed += done.leftovers_removed;
                out.records += done.records;
            }
        }
    }
    Ok(out)
}

/// One partition: remove what merged files already replace, then merge
/// what is left if there is enough of it.
pub fn compact_partition(partition: &Path, min_files: usize) -> Result<Compacted, StoreError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| StoreError::Io { path, source }
    };
    let mut out = Compacted::default();
    let files = data_files(partition);
    let covered = covered(&files);
    let mut live = Vec::new();
    for (name, path) in files {
        if covered.contains(&name) {
            std::fs::remove_file(&path).map_err(io(&path))?;
            out.leftovers_removed += 1;
        } else if file_schema_matches(&path) {
            live.push((name, path));
        } else {
            warn!(file = %path.display(), "not merging a file of another layout");
        }
    }
    if live.len() < min_files.max(2) {
        if out.leftovers_removed > 0 {
            crate::durable::sync_directory(partition).map_err(io(partition))?;
        }
        return Ok(out);
    }
    // The merged file replaces the live files, and whatever they replaced
    // (in case a leftover could not be removed).
    let mut sources: BTreeSet<String> = live.iter().map(|(n, _)| n.clone()).collect();
    for (n, p) in &live {
        if is_merged(n) {
            sources.extend(sources_of(p));
        }
    }
    let (start, end) = live
        .iter()
        .filter_map(|(n, _)| span(n))
        .fold((i64::MAX, i64::MIN), |(s, e), (a, b)| (s.min(a), e.max(b)));
    let tag = crate::state::random::string(crate::state::random::LOWER_ALNUM, 6)?;
    let name = format!("{start}-{end}-{MERGED}-{tag}.parquet");
    let target = partition.join(&name);
    let sources_json = serde_json::to_string(&sources).map_err(|e| StoreError::Io {
        path: target.clone(),
        source: std::io::Error::other(e),
    })?;
    let props = super::Writer::properties()
        .into_builder()
        .set_key_value_metadata(Some(vec![KeyValue::new(SOURCES_KEY.to_owned(), sources_json)]))
        .build();
    let mut records = 0u64;
    // The merged file's rollup: its sources' together, or none if any
    // source has none.
    let rollup = live
        .iter()
        .try_fold(super::rollup::Rollup::default(), |mut acc, (_, p)| {
            super::rollup::Rollup::read(p).map(|r| {
                acc.merge(r);
                acc
            })
        });
    // Its sketches: every source's windows, or none if any has none.
    let sketches = live
        .iter()
        .try_fold(Vec::new(), |mut acc, (_, p)| {
            super::sketch::read(p).map(|s| {
                acc.extend(s);
                acc
            })
        })
        .and_then(|s| super::sketch::key_value(&s));
    crate::durable::write_with(&target, None, |f| {
        let mut w = ArrowWriter::try_new(crate::durable::Summed::new(f), schema::schema(), Some(props))
            .map_err(std::io::Error::other)?;
        for (_, p) in &live {
            let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(p)?)
                .and_then(|b| b.build())
                .map_err(std::io::Error::other)?;
            for batch in reader {
                let batch = batch.map_err(std::io::Error::other)?;
                records += batch.num_rows() as u64;
                w.write(&batch).map_err(std::io::Error::other)?;
            }
        }
        w.flush().map_err(std::io::Error::other)?;
        // Past the writer's own buffer too, so the sum covers every byte.
        w.sync()?;
        let sum = super::checksum::key_value(w.inner());
        w.append_key_value_metadata(sum);
        if let Some(kv) = rollup.as_ref().and_then(super::rollup::Rollup::key_value) {
            w.append_key_value_metadata(kv);
        }
        if let Some(kv) = sketches {
            w.append_key_value_metadata(kv);
        }
        w.close().map_err(std::io::Error::other)?;
        Ok(())
    })
    .map_err(io(&target))?;
    for (_, p) in &live {
        std::fs::remove_file(p).map_err(io(p))?;
    }
    crate::durable::sync_directory(partition).map_err(io(partition))?;
    info!(partition = %partition.display(), files = live.len(), records, merged = %name, "partition compacted");
    out.files_merged = live.len();
    out.records = records;
    Ok(out)
}

/// Only files of this build's layout are merged; others are left as they
/// are (queries skip a foreign file with a reason).
fn file_schema_matches(path: &Path) -> bool {
    let Ok(f) = File::open(path) else { return false };
    ParquetRecordBatchReaderBuilder::try_new(f)
        .is_ok_and(|b| b.schema().fields() == schema::schema().fields())
}
