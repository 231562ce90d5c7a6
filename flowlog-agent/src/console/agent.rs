//! The console's changes go to the agent's own API over its Unix socket,
//! checked first with the API's own request types: the console never edits
//! state itself, so every rule the agent applies still holds, and errors
//! reach the page as the API words them.

use std::{path::PathBuf, time::Duration};

use axum::http::StatusCode;
use serde_json::{Map, Value};

use crate::api::{
    ApiError, Params,
    actions::Action,
    client::{self, ClientError, Endpoint},
};

/// The actions the console offers: the six flow-log operations and what
/// their page reads.
pub const ACTIONS: &[&str] = &[
    "CreateFlowlog",
    "ModifyFlowLogAttribute",
    "DescribeFlowlogs",
    "ActiveFlowLog",
    "DeactiveFlowLog",
    "DeleteFlowlog",
    "DescribeAgentStatus",
    "ListProjects",
    "ListLogstores",
];

/// Time the agent has to answer one action.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// Time a probe waits for the agent's socket to accept.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The agent behind a console.
#[derive(Clone, Debug)]
pub struct Agent {
    pub socket: PathBuf,
}

impl Agent {
    /// Checks `params` as action `name` and sends it to the agent.
    pub async fn call(&self, name: &str, params: Map<String, Value>) -> Result<Value, ApiError> {
        if !ACTIONS.contains(&name) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "InvalidAction.NotFound",
                format!("the console does not offer action {name:?}"),
            ));
        }
        let action = Action::parse(name, Params::new(params))?;
        let endpoint = Endpoint::Unix(self.socket.clone());
        let (status, answer) = client::call(&endpoint, name, &Value::Object(action.params()), ANSWER_TIMEOUT)
            .await
            .map_err(|e| self.unavailable(&e))?;
        if status == 200 {
            return Ok(answer);
        }
        let text = |k: &str| {
            answer
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        Err(ApiError::new(
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
            text("Code"),
            text("Message"),
        ))
    }

    /// Whether the agent's socket accepts a connection; the reason when
    /// not. The page asks first, so an agent that is away is a message,
    /// not a failed request.
    pub async fn probe(&self) -> Result<(), String> {
        let connect = tokio::net::UnixStream::connect(&self.socket);
        match tokio::time::timeout(PROBE_TIMEOUT, connect).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!(
                "the agent's API at {} does not answer ({e}); is `flowlog agent` running? The traffic pages still read the data directory",
                self.socket.display()
            )),
            Err(_) => Err(format!(
                "the agent's API at {} did not accept within {} s; the traffic pages still read the data directory",
                self.socket.display(),
                PROBE_TIMEOUT.as_secs()
            )),
        }
    }

    fn unavailable(&self, e: &ClientError) -> ApiError {
        let cause = std::error::Error::source(e)
            .map(|s| format!(": {s}"))
            .unwrap_or_default();
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "AgentUnavailable",
            format!(
                "the agent's API at {} does not answer ({e}{cause}); the traffic pages still read the data directory",
                self.socket.display()
            ),
        )
    }
}
