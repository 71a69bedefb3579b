//! A document's metadata attributes: what users attach to a document (in a
//! Bedrock-KB-style sidecar, at upload, or as the S3 object's user metadata)
//! and filter searches by. Every rule about their names, types and sizes is
//! here, so a sidecar, an upload request and an object's headers are held to
//! the same ones.

use serde_json::{Map, Value};

/// Attributes as stored: a JSON object of strings, numbers, booleans and
/// lists of strings.
pub type Attributes = Map<String, Value>;

/// Names docpipe sets itself, from the document and the chunk: a filter on
/// one of these reads docpipe's value, so no user attribute may take it.
pub const RESERVED: &[&str] = &[
    "source_key",
    "document_id",
    "content_type",
    "chunk_index",
    "page_start",
    "page_end",
    "row_start",
    "row_end",
    "headings",
];
/// Names under this prefix are Bedrock Knowledge Bases' own (its Retrieve
/// answers use them), reserved like [`RESERVED`].
pub const RESERVED_PREFIX: &str = "x-amz-bedrock-kb-";

/// A sidecar is read up to this size (Bedrock KB's limit for one).
pub const MAX_SIDECAR_BYTES: u64 = 10 * 1024;
pub const MAX_ATTRIBUTES: usize = 50;
pub const MAX_NAME_BYTES: usize = 100;
/// Longest string value, or string in a list.
pub const MAX_STRING_BYTES: usize = 1024;
pub const MAX_LIST_ITEMS: usize = 100;

/// Whether docpipe sets the attribute `name` itself.
pub fn is_reserved(name: &str) -> bool {
    RESERVED.contains(&name) || name.starts_with(RESERVED_PREFIX)
}

/// Checks a name: 1 to [`MAX_NAME_BYTES`] bytes without control characters,
/// not reserved.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(format!(
            "attribute name {name:?} must be 1 to {MAX_NAME_BYTES} bytes"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("attribute name {name:?} has control characters"));
    }
    if is_reserved(name) {
        return Err(format!(
            "attribute {name:?} is reserved: docpipe sets it (reserved: {}, and names \
             starting {RESERVED_PREFIX})",
            RESERVED.join(", ")
        ));
    }
    Ok(())
}

fn check_string(name: &str, text: &str) -> Result<(), String> {
    if text.contains('\0') {
        // Postgres cannot store one (nor could the filters match it).
        return Err(format!("attribute {name:?} has a NUL character"));
    }
    if text.len() > MAX_STRING_BYTES {
        return Err(format!(
            "attribute {name:?} has a string of {} bytes; at most {MAX_STRING_BYTES}",
            text.len()
        ));
    }
    Ok(())
}

/// Checks one attribute's value: a string, a number, a boolean or a list of
/// strings, within the size limits.
fn check_value(name: &str, value: &Value) -> Result<(), String> {
    match value {
        Value::String(text) => check_string(name, text),
        Value::Number(_) | Value::Bool(_) => Ok(()),
        Value::Array(items) => {
            if items.len() > MAX_LIST_ITEMS {
                return Err(format!(
                    "attribute {name:?} lists {} items; at most {MAX_LIST_ITEMS}",
                    items.len()
                ));
            }
            items.iter().try_for_each(|item| match item {
                Value::String(text) => check_string(name, text),
                _ => Err(format!(
                    "attribute {name:?} is a list holding a non-string; lists hold strings only"
                )),
            })
        }
        Value::Null | Value::Object(_) => Err(format!(
            "attribute {name:?} must be a string, number, boolean or list of strings"
        )),
    }
}

/// Checks attributes as a user gave them (a sidecar's, an upload request's):
/// each within its limits, and all of them within a sidecar's size.
pub fn check(attributes: &Attributes) -> Result<(), String> {
    if attributes.len() > MAX_ATTRIBUTES {
        return Err(format!(
            "{} attributes; at most {MAX_ATTRIBUTES}",
            attributes.len()
        ));
    }
    attributes.iter().try_for_each(|(name, value)| {
        check_name(name)?;
        check_value(name, value)
    })?;
    let bytes = sidecar_bytes(attributes).len() as u64;
    if bytes > MAX_SIDECAR_BYTES {
        return Err(format!(
            "the attributes are {bytes} bytes as a sidecar; at most {MAX_SIDECAR_BYTES}"
        ));
    }
    Ok(())
}

/// A sidecar's value in Bedrock KB's typed form:
/// `{"value": {"type": "NUMBER", "numberValue": 2024}, "includeForEmbedding": false}`.
fn typed_value(name: &str, typed: &Map<String, Value>) -> Result<Value, String> {
    let inner = typed
        .get("value")
        .and_then(Value::as_object)
        .ok_or_else(|| format!("attribute {name:?}: a typed value needs a \"value\" object"))?;
    if let Some(other) = typed
        .keys()
        .find(|key| *key != "value" && *key != "includeForEmbedding")
    {
        return Err(format!(
            "attribute {name:?}: unknown field {other:?}; a typed value has value and includeForEmbedding"
        ));
    }
    let (field, is_type): (&str, fn(&Value) -> bool) =
        match inner.get("type").and_then(Value::as_str) {
            Some("STRING") => ("stringValue", Value::is_string),
            Some("NUMBER") => ("numberValue", Value::is_number),
            Some("BOOLEAN") => ("booleanValue", Value::is_boolean),
            Some("STRING_LIST") => ("stringListValue", Value::is_array),
            _ => {
                return Err(format!(
                    "attribute {name:?}: type must be STRING, NUMBER, BOOLEAN or STRING_LIST"
                ));
            }
        };
    match inner.get(field) {
        Some(value) if is_type(value) => Ok(value.clone()),
        Some(value) => Err(format!(
            "attribute {name:?}: {field} must be of its type, not {value}"
        )),
        None => Err(format!("attribute {name:?}: a typed value needs {field:?}")),
    }
}

/// A sidecar as read: its attributes, and what of them its chunks are
/// embedded with.
#[derive(Debug, Clone, PartialEq)]
pub struct Sidecar {
    pub attributes: Attributes,
    /// The attributes marked `"includeForEmbedding": true`, one
    /// `name: value` line each, by name; none when no attribute is.
    pub for_embedding: Option<String>,
}

/// Longest text of the attributes a sidecar includes for embedding: it is
/// embedded with every chunk of its document, in the room of the chunk.
pub const MAX_EMBEDDED_CHARS: usize = 256;

/// `name: value` lines of `names`' attributes, by name (a list's items
/// joined by commas); bounded by [`MAX_EMBEDDED_CHARS`].
fn embedding_text(attributes: &Attributes, names: &[&String]) -> Result<Option<String>, String> {
    let mut names = names.to_vec();
    names.sort();
    let line = |name: &String| {
        let value = match &attributes[name.as_str()] {
            Value::String(text) => text.clone(),
            Value::Array(items) => items
                .iter()
                .map(|item| {
                    item.as_str()
                        .map_or_else(|| item.to_string(), str::to_string)
                })
                .collect::<Vec<_>>()
                .join(", "),
            other => other.to_string(),
        };
        format!("{name}: {value}")
    };
    let text = names.into_iter().map(line).collect::<Vec<_>>().join("\n");
    let chars = text.chars().count();
    if chars > MAX_EMBEDDED_CHARS {
        return Err(format!(
            "the attributes included for embedding are {chars} characters as text; at most {MAX_EMBEDDED_CHARS}"
        ));
    }
    Ok((!text.is_empty()).then_some(text))
}

/// Reads a sidecar, `{"metadataAttributes": {"year": 2024, "team": "legal"}}`,
/// each value plain or in Bedrock KB's typed form (whose
/// `includeForEmbedding` marks it to be embedded with the chunks).
pub fn parse_sidecar(bytes: &[u8]) -> Result<Sidecar, String> {
    let document: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
    let Some(Value::Object(given)) = document.get("metadataAttributes") else {
        return Err("needs a \"metadataAttributes\" object".into());
    };
    let mut attributes = Attributes::new();
    let mut embedded = Vec::new();
    for (name, value) in given {
        let value = match value {
            Value::Object(typed) => {
                match typed.get("includeForEmbedding") {
                    None | Some(Value::Bool(false)) => {}
                    Some(Value::Bool(true)) => embedded.push(name),
                    Some(other) => {
                        return Err(format!(
                            "attribute {name:?}: includeForEmbedding must be true or false, not {other}"
                        ));
                    }
                }
                typed_value(name, typed)?
            }
            plain => plain.clone(),
        };
        attributes.insert(name.clone(), value);
    }
    check(&attributes)?;
    let for_embedding = embedding_text(&attributes, &embedded)?;
    Ok(Sidecar {
        attributes,
        for_embedding,
    })
}

/// The sidecar that sets `attributes`, as the upload API writes it.
pub fn sidecar_bytes(attributes: &Attributes) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "metadataAttributes": attributes }))
        .expect("a JSON object serializes")
}

/// An S3 object's user metadata (`x-amz-meta-*`, strings) as attributes.
/// Headers that break a rule (a reserved name, say) are left out, and named
/// in the second list: they are often set by tools, not meant as attributes.
pub fn from_object<'a>(
    user_metadata: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> (Attributes, Vec<String>) {
    let mut attributes = Attributes::new();
    let mut ignored = Vec::new();
    for (name, value) in user_metadata {
        let value = Value::String(value.clone());
        match check_name(name).and_then(|()| check_value(name, &value)) {
            Ok(()) if attributes.len() < MAX_ATTRIBUTES => {
                attributes.insert(name.clone(), value);
            }
            _ => ignored.push(name.clone()),
        }
    }
    (attributes, ignored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_sidecar_gives_plain_and_typed_values() {
        let sidecar = json!({"metadataAttributes": {
            "year": 2024, "team": "legal", "tags": ["a", "b"], "draft": false,
            "region": {"value": {"type": "STRING", "stringValue": "eu"}, "includeForEmbedding": true},
            "pages": {"value": {"type": "NUMBER", "numberValue": 12}},
        }});
        let read = parse_sidecar(sidecar.to_string().as_bytes()).unwrap();
        assert_eq!(
            Value::Object(read.attributes),
            json!({"year": 2024, "team": "legal", "tags": ["a", "b"], "draft": false,
                   "region": "eu", "pages": 12})
        );
        assert_eq!(read.for_embedding.as_deref(), Some("region: eu"));
    }

    #[test]
    fn attributes_for_embedding_are_lines_by_name_within_a_bound() {
        let typed = |value: Value, kind: &str, field: &str| json!({"value": {"type": kind, field: value}, "includeForEmbedding": true});
        let sidecar = json!({"metadataAttributes": {
            "team": typed(json!("harbour"), "STRING", "stringValue"),
            "tags": typed(json!(["fog", "log"]), "STRING_LIST", "stringListValue"),
            "year": typed(json!(2026), "NUMBER", "numberValue"),
            "plain": "not embedded",
        }});
        let read = parse_sidecar(sidecar.to_string().as_bytes()).unwrap();
        assert_eq!(
            read.for_embedding.as_deref(),
            Some("tags: fog, log\nteam: harbour\nyear: 2026")
        );
        let none = json!({"metadataAttributes": {"team": "harbour"}});
        assert_eq!(
            parse_sidecar(none.to_string().as_bytes())
                .unwrap()
                .for_embedding,
            None
        );
        let long = json!({"metadataAttributes": {"note": typed(json!("x".repeat(300)), "STRING", "stringValue")}});
        let error = parse_sidecar(long.to_string().as_bytes()).unwrap_err();
        assert!(error.contains("at most 256"), "{error}");
        let odd = json!({"metadataAttributes": {"team": {"value": {"type": "STRING", "stringValue": "x"}, "includeForEmbedding": "yes"}}});
        assert!(
            parse_sidecar(odd.to_string().as_bytes())
                .unwrap_err()
                .contains("true or false")
        );
    }

    #[test]
    fn a_bad_sidecar_says_what_is_wrong() {
        let cases = [
            (json!({"year": 2024}), "metadataAttributes"),
            (
                json!({"metadataAttributes": {"source_key": "x"}}),
                "reserved",
            ),
            (
                json!({"metadataAttributes": {"x-amz-bedrock-kb-source-uri": "s3://x"}}),
                "reserved",
            ),
            (
                json!({"metadataAttributes": {"n": null}}),
                "string, number, boolean",
            ),
            (
                json!({"metadataAttributes": {"deep": {"a": 1}}}),
                "\"value\" object",
            ),
            (
                json!({"metadataAttributes": {"ids": [1, 2]}}),
                "strings only",
            ),
            (
                json!({"metadataAttributes": {"s": "x".repeat(1025)}}),
                "1025 bytes",
            ),
            (json!({"metadataAttributes": {"": 1}}), "1 to 100 bytes"),
            (
                json!({"metadataAttributes": {"a\nb": 1}}),
                "control characters",
            ),
            (
                json!({"metadataAttributes": {"t": {"value": {"type": "DATE", "stringValue": "x"}}}}),
                "type must be",
            ),
            (
                json!({"metadataAttributes": {"year": {"value": {"type": "NUMBER", "numberValue": "2024"}}}}),
                "numberValue must be of its type, not \"2024\"",
            ),
            (
                json!({"metadataAttributes": {"team": "le\u{0}gal"}}),
                "NUL character",
            ),
        ];
        for (sidecar, says) in cases {
            let error = parse_sidecar(sidecar.to_string().as_bytes()).unwrap_err();
            assert!(error.contains(says), "{sidecar}: {error}");
        }
        let many: Attributes = (0..51).map(|i| (format!("a{i}"), json!(i))).collect();
        assert!(check(&many).unwrap_err().contains("at most 50"));
        assert!(
            parse_sidecar(b"{nope")
                .unwrap_err()
                .contains("not valid JSON")
        );
    }

    #[test]
    fn object_metadata_keeps_what_follows_the_rules() {
        let headers = [
            ("team".to_string(), "legal".to_string()),
            ("content_type".to_string(), "text/evil".to_string()),
        ];
        let (attributes, ignored) = from_object(headers.iter().map(|(k, v)| (k, v)));
        assert_eq!(Value::Object(attributes), json!({"team": "legal"}));
        assert_eq!(ignored, ["content_type"]);
    }

    #[test]
    fn a_written_sidecar_reads_back() {
        let attributes: Attributes =
            serde_json::from_value(json!({"year": 2024, "tags": ["x"]})).unwrap();
        assert_eq!(
            parse_sidecar(&sidecar_bytes(&attributes)).map(|read| read.attributes),
            Ok(attributes)
        );
    }
}
