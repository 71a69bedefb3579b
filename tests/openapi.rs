//! Every answer of the API checked against `api/openapi.yaml`: the route and
//! status are documented and the body matches the status's schema.

use serde_json::{Value, json};
use std::sync::LazyLock;

/// `api/openapi.yaml`, parsed.
pub static OPENAPI: LazyLock<Value> = LazyLock::new(|| {
    serde_norway::from_str(docpipe_api::OPENAPI).expect("api/openapi.yaml is YAML")
});

/// Whether `path` (no query) fits a template such as `/v1/jobs/{id}`.
fn fits(template: &str, path: &str) -> bool {
    let (template, path): (Vec<&str>, Vec<&str>) =
        (template.split('/').collect(), path.split('/').collect());
    template.len() == path.len()
        && template
            .iter()
            .zip(&path)
            .all(|(t, p)| t == p || (t.starts_with('{') && !p.is_empty()))
}

/// Panics unless the OpenAPI document has this route and status and the
/// body matches the status's schema (JSON Schema 2020-12).
pub fn check_documented(method: &str, path: &str, status: u16, body: &Value) {
    let doc = &*OPENAPI;
    let path = path.split('?').next().unwrap();
    let what = format!("{method} {path} -> {status}");
    let Some((_, item)) = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(template, _)| fits(template, path))
    else {
        if status == 404 && body["error"]["message"] == "no such route" {
            return;
        }
        panic!("{what}: path not in api/openapi.yaml");
    };
    // A method the path does not serve: the error JSON, for every path.
    if status == 405 && item.get(method.to_lowercase()).is_none() {
        assert_eq!(
            body["error"]["code"], "method_not_allowed",
            "{what}: {body}"
        );
        return;
    }
    let mut response = &item[method.to_lowercase()]["responses"][status.to_string()];
    if let Some(reference) = response["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap();
        response = &doc["components"]["responses"][name];
    }
    assert!(response.is_object(), "{what}: not in api/openapi.yaml");
    let Some(schema) = response["content"]["application/json"].get("schema") else {
        assert!(
            body.is_null(),
            "{what}: documented without a body, answered {body}"
        );
        return;
    };
    let root = json!({"components": doc["components"], "allOf": [schema]});
    let validator = jsonschema::draft202012::new(&root).expect("a valid schema");
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{what}: {errors:?} in {body}");
}
