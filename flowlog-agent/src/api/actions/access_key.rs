//! Access keys for signed requests to the TCP listener.

use serde::{Deserialize, Serialize};

use super::request;

request! {
    /// CreateAccessKey (the secret is shown once, in the answer).
    CreateAccessKey {
        description: Option<String>,
    }
}

request! {
    /// DeleteAccessKey.
    DeleteAccessKey {
        access_key_id: String,
    }
}

request! {
    /// ListAccessKeys (ids and descriptions, never secrets).
    ListAccessKeys {}
}

/// CreateAccessKey's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AccessKeyCreated {
    pub access_key_id: String,
    pub access_key_secret: String,
}

/// One key in ListAccessKeys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AccessKeyView {
    pub access_key_id: String,
    pub description: String,
    pub creation_time: i64,
}

/// ListAccessKeys' answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AccessKeyList {
    pub access_keys: Vec<AccessKeyView>,
}
