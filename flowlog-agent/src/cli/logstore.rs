//! `flowlog query` and `flowlog analyze`: SQL over a Logstore, read from
//! the data directory directly, and the time ranges they take.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};

use crate::{
    config::DEFAULT_DATA_DIR,
    store::{
        analyses::{self, Metric},
        query::{self, Format, TimeRange},
    },
};

/// Which Logstore, which time range, which output.
#[derive(Args, Debug)]
pub struct LogstoreArgs {
    #[arg(long)]
    pub project: String,
    #[arg(long)]
    pub logstore: String,
    /// Only windows that started within this long before now: 30m, 1h, 7d…
    #[arg(long, conflicts_with_all = ["from", "to"])]
    pub since: Option<String>,
    /// Window start at or after this time (Unix seconds or YYYY-MM-DDTHH:MM:SSZ).
    #[arg(long)]
    pub from: Option<String>,
    /// Window start before this time.
    #[arg(long)]
    pub to: Option<String>,
    /// table, json, csv or text (flow-log text lines, for record rows).
    #[arg(long, default_value = "table")]
    pub format: Format,
    /// The agent's data directory.
    #[arg(long, default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum Analysis {
    /// Largest sources, per direction.
    TopTalkers {
        /// bytes or packets.
        #[arg(long, default_value = "bytes")]
        by: Metric,
        /// Only in or out.
        #[arg(long)]
        direction: Option<String>,
        /// Largest source regions instead of source addresses.
        #[arg(long)]
        by_region: bool,
        #[arg(long, default_value_t = 10)]
        limit: u32,
    },
    /// Traffic between attachments (in on one, out on another), between
    /// /24 networks with --by-subnet, or between regions (source region →
    /// destination region, from the region table) with --by-region.
    TrafficMatrix {
        #[arg(long, default_value = "bytes")]
        by: Metric,
        #[arg(long, conflicts_with = "by_region")]
        by_subnet: bool,
        #[arg(long)]
        by_region: bool,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Windows with NODATA or SKIPDATA.
    Gaps {
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// TCP connections with the longest handshake RTT.
    Slowest {
        #[arg(long, default_value_t = 10)]
        limit: u32,
    },
}

/// Seconds in a `30s`/`15m`/`1h`/`7d` duration (any humantime spelling).
pub fn parse_duration(s: &str) -> anyhow::Result<i64> {
    if let Ok(secs) = s.parse::<u64>() {
        return i64::try_from(secs).with_context(|| format!("duration {s:?} is too long"));
    }
    let d = humantime::parse_duration(s)
        .with_context(|| format!("bad duration {s:?}: expected e.g. 30m, 1h, 7d"))?;
    i64::try_from(d.as_secs()).with_context(|| format!("duration {s:?} is too long"))
}

/// Unix seconds from `1796040000`, `2026-11-30T10:00:00Z` (RFC 3339) or
/// `2026-11-30 10:00:00` (UTC).
pub fn parse_time(s: &str) -> anyhow::Result<i64> {
    if let Ok(n) = s.parse::<i64>() {
        return Ok(n);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp());
    }
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
        .map(|t| t.and_utc().timestamp())
        .map_err(|_| anyhow::anyhow!("bad time {s:?}: use Unix seconds or YYYY-MM-DDTHH:MM:SSZ (UTC)"))
}

impl LogstoreArgs {
    fn range(&self) -> anyhow::Result<TimeRange> {
        let now = crate::state::now_secs();
        if let Some(since) = &self.since {
            return Ok(TimeRange {
                from: Some(
                    now.checked_sub(parse_duration(since)?)
                        .context("--since reaches before any representable time")?,
                ),
                to: None,
            });
        }
        Ok(TimeRange {
            from: self.from.as_deref().map(parse_time).transpose()?,
            to: self.to.as_deref().map(parse_time).transpose()?,
        })
    }

    /// Runs one built-in analysis over this Logstore and prints it.
    pub async fn analyze(&self, analysis: &Analysis) -> anyhow::Result<()> {
        let sql = match analysis {
            Analysis::TopTalkers {
                by,
                direction,
                by_region,
                limit,
            } => analyses::top_talkers(*by, direction.as_deref(), *by_region, *limit)
                .map_err(anyhow::Error::msg)?,
            Analysis::TrafficMatrix {
                by,
                by_subnet,
                by_region,
                limit,
            } => {
                let between = match (by_subnet, by_region) {
                    (true, _) => analyses::Between::Subnets,
                    (_, true) => analyses::Between::Regions,
                    _ => analyses::Between::Attachments,
                };
                analyses::traffic_matrix(*by, between, *limit)
            }
            Analysis::Gaps { limit } => analyses::gaps(*limit),
            Analysis::Slowest { limit } => analyses::slowest(*limit),
        };
        self.run(&sql).await
    }

    /// Runs `sql` over this Logstore and prints the result.
    pub async fn run(&self, sql: &str) -> anyhow::Result<()> {
        let dir = crate::store::logstore_dir(
            &self.data_dir,
            &crate::model::LogstoreRef {
                project: self.project.clone(),
                logstore: self.logstore.clone(),
            },
        );
        if !dir.is_dir() {
            bail!(
                "logstore {}/{} does not exist in {} (flowlog list-logstores --project {} lists them)",
                self.project,
                self.logstore,
                self.data_dir.display(),
                self.project
            );
        }
        let result = query::run(&dir, self.range()?, sql).await?;
        print!("{}", query::render(&result.batches, self.format)?);
        if self.format == Format::Table {
            println!();
        }
        for (file, why) in &result.skipped {
            eprintln!("warning: skipped {}: {why}", file.display());
        }
        if !result.skipped.is_empty() {
            eprintln!(
                "warning: partial result: {} of {} file(s) skipped",
                result.skipped.len(),
                result.skipped.len() + result.files
            );
        }
        if result.truncated {
            eprintln!("warning: only the first {} rows are shown", query::MAX_ROWS);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_times() {
        assert_eq!(parse_duration("90").ok(), Some(90));
        assert_eq!(parse_duration("15m").ok(), Some(900));
        assert_eq!(parse_duration("7d").ok(), Some(604_800));
        assert_eq!(parse_duration("1w").ok(), Some(604_800));
        assert!(parse_duration("h").is_err() && parse_duration("-5m").is_err());
        // Sizes that would overflow are refused, never wrapped.
        assert!(parse_duration("999999999999999999d").is_err());
        assert!(parse_duration("99999999999999999999").is_err());
        assert!(parse_time("99999999999999-01-01T00:00:00Z").is_err());
        assert_eq!(parse_time("1796040000").ok(), Some(1_796_040_000));
        assert_eq!(parse_time("2026-11-30T12:00:00Z").ok(), Some(1_796_040_000));
        assert_eq!(parse_time("2026-11-30 12:00:00").ok(), Some(1_796_040_000));
        assert!(parse_time("2026-13-30T12:00:00Z").is_err() && parse_time("yesterday").is_err());
    }
}
