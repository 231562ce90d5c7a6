//! The control API's figures: requests answered, by action and code.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct RequestLabels {
    /// The action's name, or `unknown` for one the API does not have.
    pub action: String,
    /// `Success`, or the error code answered (`InvalidParameter.Interval`).
    pub code: String,
}

#[derive(Debug, Default)]
pub struct Api {
    pub requests: Family<RequestLabels, Counter>,
}

impl Api {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "api_requests",
            "Control API requests answered, by action and code",
            self.requests.clone(),
        );
    }
}
