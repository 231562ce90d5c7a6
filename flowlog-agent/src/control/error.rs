//! What can go wrong in an action, in the domain's words; `api` maps each
//! kind to its HTTP status and the product's error code.

/// An action refused or failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// A parameter's value is not allowed (`InvalidParameter.<param>`).
    #[error("{message}")]
    Invalid { param: String, message: String },
    /// A parameter is required (`MissingParameter.<param>`).
    #[error("the parameter {param} is required")]
    Missing { param: String },
    /// No such resource (`ResourceNotFound.<kind>`).
    #[error("{message}")]
    NotFound { kind: &'static str, message: String },
    /// The resource exists already (`ResourceAlreadyExists.<kind>`).
    #[error("{message}")]
    Exists { kind: &'static str, message: String },
    /// Not in a state that allows it (`IncorrectStatus.<kind>`).
    #[error("{message}")]
    IncorrectStatus { kind: &'static str, message: String },
    /// Still used by something else (`DependencyViolation.<kind>`).
    #[error("{message}")]
    InUse { kind: &'static str, message: String },
    /// A valid request the system could not carry out
    /// (`OperationFailed.<what>`).
    #[error("{message}")]
    Failed { what: &'static str, message: String },
    /// A region table that cannot be used (`InvalidRegionTable`).
    #[error("{0}")]
    InvalidRegionTable(String),
    /// A reload with no configuration file (`NoConfigFile`).
    #[error("the agent was started without --config: there is no region table file to reload")]
    NoConfigFile,
    /// Anything else (`InternalError`).
    #[error("{0}")]
    Internal(String),
}

impl ControlError {
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        Self::Invalid {
            param: param.to_owned(),
            message: message.into(),
        }
    }

    pub fn missing(param: &str) -> Self {
        Self::Missing {
            param: param.to_owned(),
        }
    }

    pub fn not_found(kind: &'static str, message: impl Into<String>) -> Self {
        Self::NotFound {
            kind,
            message: message.into(),
        }
    }

    pub fn exists(kind: &'static str, message: impl Into<String>) -> Self {
        Self::Exists {
            kind,
            message: message.into(),
        }
    }

    pub fn incorrect_status(kind: &'static str, message: impl Into<String>) -> Self {
        Self::IncorrectStatus {
            kind,
            message: message.into(),
        }
    }

    pub fn in_use(kind: &'static str, message: impl Into<String>) -> Self {
        Self::InUse {
            kind,
            message: message.into(),
        }
    }

    pub fn failed(what: &'static str, message: impl Into<String>) -> Self {
        Self::Failed {
            what,
            message: message.into(),
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::Internal(message.into())
    }
}
