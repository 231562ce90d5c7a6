//! The control API as types: one request struct per action (and one answer
//! struct per action that answers something), grouped by resource, and one
//! [`Action`] enum that the server dispatches on and the CLI sends — in the
//! manner of mini-redis's `cmd/`.
//!
//! Requests are read from the product's RPC-style parameters
//! ([`Params`]: PascalCase names, from a query string and/or a JSON body)
//! one field at a time, in declaration order, so every parameter error
//! keeps its code (`MissingParameter.<Name>`, `InvalidParameter.<Name>`)
//! whichever way the request came. The same structs serialize to the same
//! names for the client.

mod access_key;
mod flowlog;
mod logs;
mod logstore;
mod project;
mod status;

pub use access_key::*;
pub use flowlog::*;
pub use logs::*;
pub use logstore::*;
pub use project::*;
pub use status::*;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{ApiError, Params};

/// A request read from RPC parameters.
pub trait FromParams: Sized {
    fn from_params(p: &mut Params) -> Result<Self, ApiError>;
}

/// One field of a request: how it is read, and whether the client leaves
/// it out.
pub trait Param: Sized {
    fn read(p: &mut Params, name: &str) -> Result<Self, ApiError>;
    fn is_absent(&self) -> bool {
        false
    }
}

impl Param for String {
    fn read(p: &mut Params, name: &str) -> Result<Self, ApiError> {
        p.str(name)
    }
}

impl Param for Option<String> {
    fn read(p: &mut Params, name: &str) -> Result<Self, ApiError> {
        p.opt_str(name)
    }

    fn is_absent(&self) -> bool {
        self.is_none()
    }
}

impl Param for Option<u64> {
    fn read(p: &mut Params, name: &str) -> Result<Self, ApiError> {
        p.opt_u64(name)
    }

    fn is_absent(&self) -> bool {
        self.is_none()
    }
}

/// `snake_case` field name → the API's PascalCase parameter name.
pub fn pascal(field: &str) -> String {
    field
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// Declares a request struct: serialized with PascalCase names (absent
/// optional fields left out) and read from parameters in field order.
macro_rules! request {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident: $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
        #[serde(rename_all = "PascalCase")]
        pub struct $name {
            $(
                $(#[$fmeta])*
                #[serde(skip_serializing_if = "crate::api::actions::Param::is_absent")]
                pub $field: $ty,
            )*
        }

        impl crate::api::actions::FromParams for $name {
            #[allow(unused_variables)]
            fn from_params(p: &mut crate::api::Params) -> Result<Self, crate::api::ApiError> {
                Ok(Self {
                    $($field: crate::api::actions::Param::read(p, &crate::api::actions::pascal(stringify!($field)))?,)*
                })
            }
        }
    };
}
pub(crate) use request;

/// The answer of an action that only says it was done.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Done {
    pub success: bool,
}

impl Done {
    pub fn yes() -> Self {
        Self { success: true }
    }
}

/// The answer of an action with nothing to say (deletions of Projects and
/// Logstores answer `{}` in the product).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

macro_rules! actions {
    ($($(#[$m:meta])* $variant:ident),* $(,)?) => {
        /// Every action of the control API, with its request.
        #[derive(Clone, Debug, PartialEq)]
        pub enum Action {
            $($(#[$m])* $variant($variant),)*
        }

        impl Action {
            /// Every action's name, as the API spells it.
            pub const NAMES: &'static [&'static str] = &[$(stringify!($variant)),*];

            pub fn name(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => stringify!($variant),)*
                }
            }

            /// Reads an action from its name and parameters; parameters
            /// the action does not take are refused.
            pub fn parse(name: &str, mut p: Params) -> Result<Self, ApiError> {
                let action = match name {
                    $(stringify!($variant) => Self::$variant(<$variant as FromParams>::from_params(&mut p)?),)*
                    other => {
                        return Err(ApiError::new(
                            axum::http::StatusCode::BAD_REQUEST,
                            "InvalidAction.NotFound",
                            format!("unknown action {other:?}"),
                        ));
                    }
                };
                p.finish()?;
                Ok(action)
            }

            /// The request's parameters, as the client sends them.
            pub fn params(&self) -> Map<String, Value> {
                let v = match self {
                    $(Self::$variant(r) => serde_json::to_value(r),)*
                };
                match v {
                    Ok(Value::Object(m)) => m,
                    _ => Map::new(),
                }
            }
        }
    };
}

actions! {
    CreateProject,
    DeleteProject,
    ListProjects,
    CreateLogstore,
    DeleteLogstore,
    ListLogstores,
    CreateFlowlog,
    ModifyFlowLogAttribute,
    DescribeFlowlogs,
    ActiveFlowLog,
    DeactiveFlowLog,
    DeleteFlowlog,
    CreateAccessKey,
    DeleteAccessKey,
    ListAccessKeys,
    DescribeAgentStatus,
    ReloadRegionTable,
    GetLogs,
}

#[cfg(test)]
mod tests;
