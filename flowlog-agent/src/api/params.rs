//! Request parameters in the product's RPC style: PascalCase names, from
//! the query string and/or a JSON object body. Each accessor names the
//! parameter in its error; [`Params::finish`] rejects parameters the action
//! does not know.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::ApiError;

/// Parameters every action accepts and ignores (RPC envelope).
const ENVELOPE: &[&str] = &["Action", "Version", "Format", "RegionId"];

#[derive(Clone, Debug, Default)]
pub struct Params {
    map: Map<String, Value>,
    used: BTreeSet<String>,
}

impl Params {
    pub fn new(map: Map<String, Value>) -> Self {
        Self {
            map,
            used: BTreeSet::new(),
        }
    }

    pub fn into_map(self) -> Map<String, Value> {
        self.map
    }

    fn take(&mut self, name: &str) -> Option<&Value> {
        self.used.insert(name.to_owned());
        self.map.get(name).filter(|v| !v.is_null())
    }

    pub fn opt_str(&mut self, name: &str) -> Result<Option<String>, ApiError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(ApiError::invalid(
                name,
                format!("{name} must be a string, got {other}"),
            )),
        }
    }

    pub fn str(&mut self, name: &str) -> Result<String, ApiError> {
        self.opt_str(name)?.ok_or_else(|| ApiError::missing(name))
    }

    /// A non-negative integer, as a JSON number or a numeric string (query
    /// strings carry only strings).
    pub fn opt_u64(&mut self, name: &str) -> Result<Option<u64>, ApiError> {
        let bad =
            |v: &Value| ApiError::invalid(name, format!("{name} must be a non-negative integer, got {v}"));
        match self.take(name) {
            None => Ok(None),
            Some(v @ Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| bad(v)),
            Some(v @ Value::String(s)) => s.trim().parse().map(Some).map_err(|_| bad(v)),
            Some(v) => Err(bad(v)),
        }
    }

    /// A JSON value that may arrive encoded as a string (query strings).
    pub fn opt_json(&mut self, name: &str) -> Result<Option<Value>, ApiError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::String(s)) => serde_json::from_str(s)
                .map(Some)
                .map_err(|e| ApiError::invalid(name, format!("{name} is not valid JSON: {e}"))),
            Some(v) => Ok(Some(v.clone())),
        }
    }

    /// Fails on any parameter no accessor asked for.
    pub fn finish(self) -> Result<(), ApiError> {
        for name in self.map.keys() {
            if !self.used.contains(name) && !ENVELOPE.contains(&name.as_str()) {
                return Err(ApiError::invalid(
                    name,
                    format!("unknown parameter {name} for this action"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: Value) -> Params {
        Params::new(v.as_object().cloned().unwrap_or_default())
    }

    #[test]
    fn types_and_names() {
        let mut q = p(serde_json::json!({"PageSize": "20", "PageNumber": 2, "Name": "x", "Bad": true}));
        assert_eq!(q.opt_u64("PageSize"), Ok(Some(20)));
        assert_eq!(q.opt_u64("PageNumber"), Ok(Some(2)));
        assert_eq!(q.str("Name"), Ok("x".into()));
        assert_eq!(
            q.str("Missing").map_err(|e| e.code),
            Err("MissingParameter.Missing".into())
        );
        assert_eq!(
            q.opt_str("Bad").map_err(|e| e.code),
            Err("InvalidParameter.Bad".into())
        );
        let mut r = p(serde_json::json!({"PageSize": "-1", "Extra": 1, "Action": "X"}));
        assert_eq!(
            r.opt_u64("PageSize").map_err(|e| e.code),
            Err("InvalidParameter.PageSize".into())
        );
        assert_eq!(
            r.finish().map_err(|e| e.code),
            Err("InvalidParameter.Extra".into())
        );
    }
}
