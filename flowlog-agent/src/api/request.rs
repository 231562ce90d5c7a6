//! Reading a request: its action from the path or the `Action` parameter,
//! and its parameters from the query string and the JSON body. Pure, so
//! the fuzz target can drive it.

use serde_json::{Map, Value};

use super::{ApiError, Params};

/// A request's action and parameters: the action from `/v1/<Action>` or
/// the `Action` parameter; parameters from the query string, then the JSON
/// object body (body wins). Pure, so it can be fuzzed.
pub fn parse_request(path: &str, query: Option<&str>, body: &[u8]) -> Result<(String, Params), ApiError> {
    let mut map: Map<String, Value> = Map::new();
    if let Some(q) = query {
        for pair in q.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let (k, v) = (percent_decode(k), percent_decode(v));
            match (k, v) {
                (Some(k), Some(v)) => {
                    map.insert(k, Value::String(v));
                }
                _ => {
                    return Err(ApiError::invalid(
                        "Query",
                        "the query string is not valid UTF-8 percent-encoding",
                    ));
                }
            }
        }
    }
    if !body.iter().all(u8::is_ascii_whitespace) {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(body)) => {
                for (k, v) in body {
                    map.insert(k, v);
                }
            }
            Ok(_) => {
                return Err(ApiError::invalid(
                    "Body",
                    "the request body must be a JSON object",
                ));
            }
            Err(e) => {
                return Err(ApiError::invalid(
                    "Body",
                    format!("the request body is not valid JSON: {e}"),
                ));
            }
        }
    }
    let from_path = path
        .strip_prefix("/v1/")
        .filter(|a| !a.is_empty() && !a.contains('/'));
    let action = match (from_path, map.get("Action")) {
        (Some(a), _) => a.to_owned(),
        (None, Some(Value::String(a))) => a.clone(),
        (None, Some(_)) => return Err(ApiError::invalid("Action", "Action must be a string")),
        (None, None) => return Err(ApiError::missing("Action")),
    };
    Ok((action, Params::new(map)))
}

/// Decodes `%XX` escapes and `+` (as space) of a query component; `None`
/// when the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let spaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(std::borrow::Cow::into_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_components_decode() {
        assert_eq!(percent_decode("a%20b+c").as_deref(), Some("a b c"));
        assert_eq!(percent_decode("%FF"), None, "not UTF-8");
        assert_eq!(
            percent_decode("%zz").as_deref(),
            Some("%zz"),
            "not an escape: as written"
        );
        assert_eq!(percent_decode("%E4%B8%AD").as_deref(), Some("中"));
    }
}
