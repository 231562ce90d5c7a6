//! Projects: the namespaces Logstores live in.

use serde::{Deserialize, Serialize};

use super::request;

request! {
    /// CreateProject.
    CreateProject {
        project_name: String,
        description: Option<String>,
    }
}

request! {
    /// DeleteProject (refused while it has Logstores).
    DeleteProject {
        project_name: String,
    }
}

request! {
    /// ListProjects.
    ListProjects {}
}

/// CreateProject's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProjectCreated {
    pub project_name: String,
}

/// One Project in ListProjects.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProjectView {
    pub project_name: String,
    pub description: String,
    pub creation_time: i64,
    pub log_store_count: usize,
}

/// ListProjects' answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProjectList {
    pub total_count: usize,
    pub projects: Vec<ProjectView>,
}
