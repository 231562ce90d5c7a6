//! An interface a flow log reports on, as its records name it, and how its
//! programs are hooked in.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// How an attachment's programs are hooked in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CaptureMode {
    /// TC for virtual devices (veth, tun, bridges…), XDP in driver mode
    /// for physical NICs that support it; see docs/architecture.md.
    #[default]
    Auto,
    /// XDP on ingress (driver mode, else generic), TC on egress.
    Xdp,
    /// TC on ingress and egress.
    Tc,
}

impl FromStr for CaptureMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "xdp" => Ok(Self::Xdp),
            "tc" => Ok(Self::Tc),
            other => Err(format!(
                "unknown capture mode {other:?} (expected auto, xdp or tc)"
            )),
        }
    }
}

impl fmt::Display for CaptureMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Xdp => "xdp",
            Self::Tc => "tc",
        })
    }
}

/// An interface the window reports on. `ifindex` is whatever identifies the
/// attachment in the window's keys (the flow log's attachment slot).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttachmentInfo {
    pub ifindex: u32,
    /// The interface's index in its namespace when the window was cut (0:
    /// not attached then), for exporters that name interfaces by index.
    pub kernel_ifindex: u32,
    pub interface: String,
    pub netns: Option<String>,
    /// Configured on the attachment; carried on its records.
    pub attachment_id: Option<String>,
    pub region_id: Option<String>,
}
