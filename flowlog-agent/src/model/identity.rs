//! Who records belong to and where they are kept.

/// Who the records belong to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub account_id: String,
    pub cen_id: String,
    pub flow_log_id: String,
}

/// Which Logstore a flow log writes to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LogstoreRef {
    pub project: String,
    pub logstore: String,
}
