//! API errors: a stable code in the product's style, the HTTP status that
//! goes with it, and a message a person can act on.

use axum::http::StatusCode;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
        }
    }

    /// `InvalidParameter.<Name>`, 400.
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            format!("InvalidParameter.{param}"),
            message,
        )
    }

    /// `MissingParameter.<Name>`, 400.
    pub fn missing(param: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            format!("MissingParameter.{param}"),
            format!("the parameter {param} is required"),
        )
    }

    /// `ResourceNotFound.<Kind>`, 404.
    pub fn not_found(kind: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("ResourceNotFound.{kind}"), message)
    }

    /// `ResourceAlreadyExists.<Kind>`, 409.
    pub fn exists(kind: &str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            format!("ResourceAlreadyExists.{kind}"),
            message,
        )
    }

    /// `IncorrectStatus.<Kind>`, 409.
    pub fn incorrect_status(kind: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, format!("IncorrectStatus.{kind}"), message)
    }

    /// `DependencyViolation.<Kind>`, 409: still used by something else.
    pub fn in_use(kind: &str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            format!("DependencyViolation.{kind}"),
            message,
        )
    }

    /// `OperationFailed.<What>`, 422: valid request the system could not carry out.
    pub fn failed(what: &str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("OperationFailed.{what}"),
            message,
        )
    }

    /// `InternalError`, 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message)
    }
}

/// The HTTP status and code of each kind of domain error.
/// A parameter that does not hold: its name and what is wrong with it.
/// Checks shared by the control loop and the console return this; each
/// side words it as its own error (`InvalidParameter.<Name>`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BadParam {
    pub name: &'static str,
    pub message: String,
}

impl BadParam {
    pub fn new(name: &'static str, message: impl Into<String>) -> Self {
        Self {
            name,
            message: message.into(),
        }
    }
}

impl From<BadParam> for ApiError {
    fn from(e: BadParam) -> Self {
        Self::invalid(e.name, e.message)
    }
}

impl From<BadParam> for crate::control::ControlError {
    fn from(e: BadParam) -> Self {
        Self::invalid(e.name, e.message)
    }
}

impl From<crate::control::ControlError> for ApiError {
    fn from(e: crate::control::ControlError) -> Self {
        use crate::control::ControlError as E;
        let message = e.to_string();
        match e {
            E::Invalid { param, .. } => Self::invalid(&param, message),
            E::Missing { param } => Self::missing(&param),
            E::NotFound { kind, .. } => Self::not_found(kind, message),
            E::Exists { kind, .. } => Self::exists(kind, message),
            E::IncorrectStatus { kind, .. } => Self::incorrect_status(kind, message),
            E::InUse { kind, .. } => Self::in_use(kind, message),
            E::Failed { what, .. } => Self::failed(what, message),
            E::InvalidRegionTable(_) => Self::new(StatusCode::BAD_REQUEST, "InvalidRegionTable", message),
            E::NoConfigFile => Self::new(StatusCode::CONFLICT, "NoConfigFile", message),
            E::Internal(_) => Self::internal(message),
        }
    }
}
