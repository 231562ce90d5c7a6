//! An interface a flow log reports on, as its records name it.

/// An interface the window reports on. `ifindex` is whatever identifies the
/// attachment in the window's keys (the flow log's attachment slot).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttachmentInfo {
    pub ifindex: u32,
    pub interface: String,
    pub netns: Option<String>,
    /// Configured on the attachment; carried on its records.
    pub attachment_id: Option<String>,
    pub region_id: Option<String>,
}
