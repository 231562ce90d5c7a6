//! `[output.ipfix]`: the collectors and how to talk to them, checked
//! before the agent starts.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::encode::MIN_MTU;

/// RFC 5612's Private Enterprise Number for documentation: a placeholder
/// until an operator sets their organisation's own.
pub const DEFAULT_ENTERPRISE_NUMBER: u32 = 32473;
pub const DEFAULT_MTU: u32 = 1400;
pub const DEFAULT_TEMPLATE_REFRESH_SECS: u64 = 60;
pub const DEFAULT_TEMPLATE_REFRESH_MESSAGES: u64 = 1000;
pub const DEFAULT_QUEUE_RECORDS: u64 = 1_000_000;
/// IANA's port for IPFIX.
pub const IPFIX_PORT: u16 = 4739;

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, clap::Args)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct IpfixOptions {
    /// Export every window as IPFIX to this collector: HOST:PORT over UDP,
    /// or tcp://HOST:PORT (repeatable).
    #[serde(default)]
    #[arg(
        id = "ipfix-collector",
        long = "ipfix-collector",
        value_name = "[tcp://]HOST:PORT"
    )]
    pub collectors: Vec<String>,
    /// Observation Domain ID in every message header (default 0).
    #[arg(skip)]
    pub observation_domain_id: Option<u32>,
    /// Largest message in bytes, headers included (1024 to 65535; default
    /// 1400, which fits a 1500-byte link).
    #[arg(skip)]
    pub mtu: Option<u32>,
    /// Over UDP, templates are sent again after this many seconds (default
    /// 60) …
    #[arg(skip)]
    pub template_refresh_secs: Option<u64>,
    /// … or this many messages (default 1000), whichever comes first.
    #[arg(skip)]
    pub template_refresh_messages: Option<u64>,
    /// Private Enterprise Number of flowlog's own elements (default 32473,
    /// the number RFC 5612 sets aside for documentation).
    #[arg(skip)]
    pub enterprise_number: Option<u32>,
    /// Over TCP, records kept while a collector is away (default
    /// 1,000,000); beyond, the oldest windows are dropped and counted.
    #[arg(skip)]
    pub queue_records: Option<u64>,
}

/// How a collector is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// One collector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Collector {
    pub transport: Transport,
    /// `host:port`, resolved at each connection.
    pub address: String,
}

impl std::fmt::Display for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = match self.transport {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        };
        write!(f, "{scheme}://{}", self.address)
    }
}

/// Validated IPFIX settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ipfix {
    pub collectors: Vec<Collector>,
    pub observation_domain_id: u32,
    pub mtu: usize,
    pub template_refresh: Duration,
    pub template_refresh_messages: u64,
    pub enterprise_number: u32,
    pub queue_records: usize,
}

/// `[udp://|tcp://]host:port`, the port defaulting to nothing: it must be
/// given.
fn collector(spec: &str) -> Result<Collector, String> {
    let (transport, rest) = match spec.split_once("://") {
        None => (Transport::Udp, spec),
        Some(("udp", rest)) => (Transport::Udp, rest),
        Some(("tcp", rest)) => (Transport::Tcp, rest),
        Some((other, _)) => {
            return Err(format!(
                "ipfix collector {spec:?}: transport {other:?} is not udp or tcp"
            ));
        }
    };
    let bad = || {
        format!(
            "ipfix collector {spec:?} must look like HOST:PORT or tcp://HOST:PORT (IPFIX's port is {IPFIX_PORT})"
        )
    };
    let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
    let host_ok = !host.is_empty()
        && host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c));
    if !host_ok || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(bad());
    }
    Ok(Collector {
        transport,
        address: rest.to_owned(),
    })
}

impl IpfixOptions {
    /// The settings, `None` without collectors.
    pub fn validate(self) -> Result<Option<Ipfix>, String> {
        if self.collectors.is_empty() {
            return Ok(None);
        }
        let collectors = self
            .collectors
            .iter()
            .map(|c| collector(c))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some((i, c)) = collectors
            .iter()
            .enumerate()
            .find(|(i, c)| collectors[..*i].contains(c))
        {
            return Err(format!("ipfix collector {c} is listed twice (entry {})", i + 1));
        }
        let mtu = self.mtu.unwrap_or(DEFAULT_MTU);
        if !(MIN_MTU as u32..=65535).contains(&mtu) {
            return Err(format!(
                "ipfix mtu must be between {MIN_MTU} and 65535, got {mtu}"
            ));
        }
        let refresh = self
            .template_refresh_secs
            .unwrap_or(DEFAULT_TEMPLATE_REFRESH_SECS);
        if !(1..=3600).contains(&refresh) {
            return Err(format!(
                "ipfix template-refresh-secs must be between 1 and 3600, got {refresh}"
            ));
        }
        let refresh_messages = self
            .template_refresh_messages
            .unwrap_or(DEFAULT_TEMPLATE_REFRESH_MESSAGES);
        if refresh_messages == 0 {
            return Err("ipfix template-refresh-messages must be at least 1".into());
        }
        let pen = self.enterprise_number.unwrap_or(DEFAULT_ENTERPRISE_NUMBER);
        if pen == 0 {
            return Err("ipfix enterprise-number must not be 0 (IANA's own)".into());
        }
        let queue = self.queue_records.unwrap_or(DEFAULT_QUEUE_RECORDS);
        if !(1..=100_000_000).contains(&queue) {
            return Err(format!(
                "ipfix queue-records must be between 1 and 100000000, got {queue}"
            ));
        }
        Ok(Some(Ipfix {
            collectors,
            observation_domain_id: self.observation_domain_id.unwrap_or(0),
            mtu: mtu as usize,
            template_refresh: Duration::from_secs(refresh),
            template_refresh_messages: refresh_messages,
            enterprise_number: pen,
            queue_records: queue as usize,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collectors_and_bad_values() {
        let ok = |c: &[&str]| {
            IpfixOptions {
                collectors: c.iter().map(|s| (*s).to_owned()).collect(),
                ..Default::default()
            }
            .validate()
        };
        let s = ok(&[
            "127.0.0.1:4739",
            "tcp://[::1]:4740",
            "udp://collector.example:2055",
        ])
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("settings"));
        let shown: Vec<String> = s.collectors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "udp://127.0.0.1:4739",
                "tcp://[::1]:4740",
                "udp://collector.example:2055"
            ]
        );
        assert_eq!((s.mtu, s.enterprise_number), (1400, DEFAULT_ENTERPRISE_NUMBER));
        assert_eq!(ok(&[]), Ok(None));
        for (bad, why) in [
            ("127.0.0.1", "HOST:PORT"),
            ("127.0.0.1:0", "HOST:PORT"),
            ("sctp://h:1", "not udp or tcp"),
            ("a b:1", "HOST:PORT"),
        ] {
            let e = ok(&[bad]).err().unwrap_or_default();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let e = ok(&["h:1", "udp://h:1"]).err().unwrap_or_default();
        assert!(e.contains("twice"), "{e}");
        let e = IpfixOptions {
            collectors: vec!["h:1".into()],
            mtu: Some(512),
            ..Default::default()
        }
        .validate()
        .err()
        .unwrap_or_default();
        assert!(e.contains("mtu must be between 1024"), "{e}");
    }
}
