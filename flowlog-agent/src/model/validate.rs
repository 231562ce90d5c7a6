//! Name and value rules for control-plane resources, following the
//! product's documented constraints. Each check returns the message a
//! person needs to fix the value.

/// Interfaces one flow log may capture on.
pub const MAX_ATTACHMENTS: usize = 16;

/// Longest interface name the kernel takes (`IFNAMSIZ` less the NUL).
const IFNAME_MAX: usize = libc::IFNAMSIZ - 1;

/// Interface name: 1–15 characters, none of '/', ':', spaces or control
/// characters, and not `.` or `..`.
pub fn interface(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > IFNAME_MAX
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "{name:?} is not a valid interface name (1 to {IFNAME_MAX} characters, no '/', ':', spaces or control characters)"
        ));
    }
    Ok(())
}

/// Network namespace (an `ip netns` name, a file under /run/netns): 1–255
/// printable characters without '/' or spaces, and not `.` or `..`.
pub fn netns(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 255
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "{name:?} is not a valid network namespace name (1 to 255 printable characters, no '/' or spaces)"
        ));
    }
    Ok(())
}

/// One attachment as configuration, the API and state.json all describe
/// it: interface, namespace, and the id and region its records carry.
pub fn attachment(
    interface_name: &str,
    netns_name: Option<&str>,
    attachment_id: Option<&str>,
    region_id: Option<&str>,
) -> Result<(), String> {
    interface(interface_name)?;
    if let Some(ns) = netns_name {
        netns(ns)?;
    }
    if let Some(v) = attachment_id {
        label("attachment-id", v)?;
    }
    if let Some(v) = region_id {
        label("region-id", v)?;
    }
    Ok(())
}

/// Flow log id: 1–64 letters, digits, '-' or '_' (it names files, NATS
/// subjects and journal entries; the API makes `fl-` and 20 characters).
pub fn flow_log_id(s: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c));
    if !ok {
        return Err(format!(
            "flow log id {s:?} must be 1 to 64 letters, digits, '-' or '_'"
        ));
    }
    Ok(())
}

/// Access key id (`FLAK` and 16 uppercase letters or digits) and secret
/// (40 letters or digits), as the API makes them.
pub fn access_key(id: &str, secret: &str) -> Result<(), String> {
    let id_ok = id
        .strip_prefix("FLAK")
        .is_some_and(|r| r.len() == 16 && r.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()));
    if !id_ok {
        return Err(format!(
            "access key id {id:?} must be FLAK and 16 uppercase letters or digits"
        ));
    }
    if secret.len() != 40 || !secret.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "the secret of access key {id} must be 40 letters or digits"
        ));
    }
    Ok(())
}

/// An id or label carried on records (attachment-id, region-id, network):
/// 1–64 letters, digits, '-', '_' or '.'.
pub fn label_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// [`label_ok`], with the message naming the setting.
pub fn label(what: &str, s: &str) -> Result<(), String> {
    if label_ok(s) {
        Ok(())
    } else {
        Err(format!(
            "{what} {s:?} must be 1 to 64 letters, digits, '-', '_' or '.'"
        ))
    }
}

/// Project: 3–63 characters, lowercase letters, digits and hyphens,
/// starting and ending with a letter or digit.
pub fn project_name(s: &str) -> Result<(), String> {
    lower_name(s, "-", "project name")
}

/// Logstore: 3–63 characters, lowercase letters, digits, hyphens and
/// underscores, starting and ending with a letter or digit.
pub fn logstore_name(s: &str) -> Result<(), String> {
    lower_name(s, "-_", "logstore name")
}

fn lower_name(s: &str, extra: &str, what: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || extra.contains(c);
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !(3..=63).contains(&s.len())
        || !s.chars().all(ok_char)
        || !edge(s.chars().next())
        || !edge(s.chars().last())
    {
        return Err(format!(
            "{what} {s:?} must be 3 to 63 characters of lowercase letters, digits{}, starting and ending with a letter or digit",
            if extra.contains('_') {
                ", hyphens and underscores"
            } else {
                " and hyphens"
            }
        ));
    }
    Ok(())
}

/// Flow-log name: 1–128 characters, starting with a letter; letters,
/// digits, periods, underscores and hyphens.
pub fn flow_log_name(s: &str) -> Result<(), String> {
    let ok = (1..=128).contains(&s.chars().count())
        && s.chars().next().is_some_and(char::is_alphabetic)
        && s.chars().all(|c| c.is_alphanumeric() || "._-".contains(c));
    if !ok {
        return Err(format!(
            "flow log name {s:?} must be 1 to 128 characters, start with a letter, and contain only letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// Description: up to 256 characters, not starting with http:// or https://.
pub fn description(s: &str) -> Result<(), String> {
    if s.chars().count() > 256 {
        return Err("description must be at most 256 characters".into());
    }
    if s.starts_with("http://") || s.starts_with("https://") {
        return Err("description must not start with http:// or https://".into());
    }
    if s.chars().any(|c| c.is_control() && c != '\n') {
        return Err("description must not contain control characters".into());
    }
    Ok(())
}

/// Enterprise network id: `cen-` followed by 1–64 lowercase letters or digits.
pub fn cen_id(s: &str) -> Result<(), String> {
    let ok = s.strip_prefix("cen-").is_some_and(|r| {
        (1..=64).contains(&r.len()) && r.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    });
    if !ok {
        return Err(format!(
            "CenId {s:?} must look like cen-<1 to 64 lowercase letters or digits>"
        ));
    }
    Ok(())
}

/// Account id: 1–64 letters, digits, '-' or '_'.
pub fn account_id(s: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c));
    if !ok {
        return Err(format!(
            "account id {s:?} must be 1 to 64 letters, digits, '-' or '_'"
        ));
    }
    Ok(())
}

/// Window length in seconds: 60 and 600 are the standard values; any value
/// from 1 to 86400 is accepted for development and tests.
pub fn interval(secs: u64) -> Result<(), String> {
    if !(1..=86_400).contains(&secs) {
        return Err(format!(
            "Interval {secs} must be between 1 and 86400 seconds (60 or 600 are standard)"
        ));
    }
    Ok(())
}

/// Logstore retention: 1–3650 days.
pub fn ttl(days: u32) -> Result<(), String> {
    if !(1..=3650).contains(&days) {
        return Err(format!("Ttl {days} must be between 1 and 3650 days"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(project_name("flow-logs-1").is_ok());
        for bad in ["ab", "-abc", "abc-", "ABC", "a_b_c", &"a".repeat(64)] {
            assert!(project_name(bad).is_err(), "{bad}");
        }
        assert!(logstore_name("cen_flow-1").is_ok());
        assert!(logstore_name("_cen").is_err());
        assert!(flow_log_name("prod.flow_log-1").is_ok());
        for bad in ["", "1abc", "a b", "a/b", &"a".repeat(129)] {
            assert!(flow_log_name(bad).is_err(), "{bad}");
        }
        assert!(description("router flows").is_ok());
        assert!(description("https://x").is_err());
        assert!(description(&"x".repeat(257)).is_err());
        assert!(cen_id("cen-7x1abc").is_ok());
        for bad in ["cen-", "cen-ABC", "vpc-1", "cen-a_b"] {
            assert!(cen_id(bad).is_err(), "{bad}");
        }
        assert!(account_id("1234567890").is_ok());
        assert!(account_id("a b").is_err());
        assert!(interval(600).is_ok() && interval(1).is_ok());
        assert!(interval(0).is_err() && interval(86_401).is_err());
        assert!(ttl(30).is_ok() && ttl(0).is_err());
    }
}
