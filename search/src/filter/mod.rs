//! Metadata filters in Amazon Bedrock Knowledge Bases' `RetrievalFilter`
//! grammar: `{"andAll": [{"equals": {"key": "team", "value": "legal"}},
//! {"greaterThan": {"key": "year", "value": 2022}}]}`. A filter is read
//! from JSON once, checked against every limit, each problem named with its
//! path; then it becomes a SQL condition whose every key and value is a
//! parameter.
//!
//! A key names a metadata attribute, or one docpipe sets itself (`source_key`,
//! `content_type`, `page_start`, `headings`…, [`metadata::RESERVED`]), or,
//! in Bedrock's own requests ([`Condition::parse`]), one of the attributes
//! Bedrock sets on every result ([`BEDROCK_KEYS`]). A chunk without the
//! attribute matches only `notEquals` (as Bedrock's documentation has it,
//! `notIn` needs the attribute).

mod sql;

pub use sql::SqlCondition;

use docpipe_core::domain::metadata::{self, MAX_NAME_BYTES, MAX_STRING_BYTES};
use serde_json::{Map, Value};

/// Most levels of `andAll`/`orAll` inside one another.
pub const MAX_DEPTH: usize = 5;
/// Most comparisons in one filter.
pub const MAX_CONDITIONS: usize = 50;
/// Most values in one `in` or `notIn`.
pub const MAX_LIST_VALUES: usize = 100;

/// The attributes Bedrock sets on every result, filterable in its requests:
/// the object's `s3://` URI, the knowledge base's data source, the page.
pub const BEDROCK_KEYS: &[&str] = &[
    "x-amz-bedrock-kb-source-uri",
    "x-amz-bedrock-kb-data-source-id",
    "x-amz-bedrock-kb-document-page-number",
];

/// A comparison of one attribute with a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    Equals,
    NotEquals,
    GreaterThan,
    GreaterThanOrEquals,
    LessThan,
    LessThanOrEquals,
    In,
    NotIn,
    StartsWith,
    ListContains,
    StringContains,
}

/// What a comparison's value must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operand {
    /// A string, number or boolean.
    Scalar,
    Number,
    String,
    /// A list of 1 to [`MAX_LIST_VALUES`] scalars.
    Scalars,
}

const COMPARISONS: &[(&str, Comparison, Operand)] = &[
    ("equals", Comparison::Equals, Operand::Scalar),
    ("notEquals", Comparison::NotEquals, Operand::Scalar),
    ("greaterThan", Comparison::GreaterThan, Operand::Number),
    (
        "greaterThanOrEquals",
        Comparison::GreaterThanOrEquals,
        Operand::Number,
    ),
    ("lessThan", Comparison::LessThan, Operand::Number),
    (
        "lessThanOrEquals",
        Comparison::LessThanOrEquals,
        Operand::Number,
    ),
    ("in", Comparison::In, Operand::Scalars),
    ("notIn", Comparison::NotIn, Operand::Scalars),
    ("startsWith", Comparison::StartsWith, Operand::String),
    ("listContains", Comparison::ListContains, Operand::Scalar),
    (
        "stringContains",
        Comparison::StringContains,
        Operand::String,
    ),
];
const ALL: &str = "andAll";
const ANY: &str = "orAll";

/// A checked filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    Compare {
        comparison: Comparison,
        key: String,
        value: Value,
    },
    All(Vec<Condition>),
    Any(Vec<Condition>),
}

fn operator_names() -> String {
    let mut names: Vec<&str> = COMPARISONS.iter().map(|(name, ..)| *name).collect();
    names.extend([ALL, ANY]);
    names.join(", ")
}

fn type_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Reads filters, counting comparisons across the whole filter.
struct Reader {
    comparisons: usize,
    /// Whether [`BEDROCK_KEYS`] may be filtered on (a Bedrock request).
    bedrock_keys: bool,
}

impl Condition {
    /// The condition among `members` (an object's): none, or exactly one
    /// operator, at `path` (`filter`).
    pub fn from_members(
        members: &Map<String, Value>,
        path: &str,
    ) -> Result<Option<Condition>, String> {
        let mut reader = Reader {
            comparisons: 0,
            bedrock_keys: false,
        };
        match members.len() {
            0 => Ok(None),
            1 => reader.members(members, path, 0).map(Some),
            _ => Err(format!(
                "{path}: one operator per object ({}); combine conditions with andAll or orAll",
                members.keys().cloned().collect::<Vec<_>>().join(", ")
            )),
        }
    }

    /// The condition `value` (an object with one operator) at `path`, of a
    /// Bedrock request: [`BEDROCK_KEYS`] may be filtered on.
    pub fn parse(value: &Value, path: &str) -> Result<Condition, String> {
        let mut reader = Reader {
            comparisons: 0,
            bedrock_keys: true,
        };
        reader.condition(value, path, 0)
    }
}

impl Reader {
    fn condition(&mut self, value: &Value, path: &str, depth: usize) -> Result<Condition, String> {
        match value {
            Value::Object(members) if members.len() == 1 => self.members(members, path, depth),
            Value::Object(members) if members.is_empty() => Err(format!(
                "{path}: an empty object; expected one operator of {}",
                operator_names()
            )),
            Value::Object(_) => Err(format!(
                "{path}: one operator per object; combine conditions with andAll or orAll"
            )),
            other => Err(format!(
                "{path}: must be an object with one operator, not {}",
                type_of(other)
            )),
        }
    }

    fn members(
        &mut self,
        members: &Map<String, Value>,
        path: &str,
        depth: usize,
    ) -> Result<Condition, String> {
        let (name, operand) = members.iter().next().expect("one member");
        let path = format!("{path}.{name}");
        if name == ALL || name == ANY {
            return self.group(name, operand, &path, depth + 1);
        }
        let Some(&(_, comparison, expected)) = COMPARISONS.iter().find(|(n, ..)| n == name) else {
            return Err(format!(
                "{path}: unknown operator {name:?}; expected one of {}",
                operator_names()
            ));
        };
        self.comparisons += 1;
        if self.comparisons > MAX_CONDITIONS {
            return Err(format!("filter has more than {MAX_CONDITIONS} comparisons"));
        }
        let Value::Object(fields) = operand else {
            return Err(format!(
                "{path}: must be an object {{\"key\": …, \"value\": …}}, not {}",
                type_of(operand)
            ));
        };
        if let Some(other) = fields.keys().find(|f| *f != "key" && *f != "value") {
            return Err(format!(
                "{path}: unknown field {other:?}; expected key and value"
            ));
        }
        let key = match fields.get("key") {
            Some(Value::String(key)) => check_key(key, &path, self.bedrock_keys)?,
            Some(other) => {
                return Err(format!(
                    "{path}.key: must be a string, not {}",
                    type_of(other)
                ));
            }
            None => return Err(format!("{path}: needs a key")),
        };
        let value = fields
            .get("value")
            .ok_or_else(|| format!("{path}: needs a value"))?;
        check_operand(value, expected, &format!("{path}.value"))?;
        Ok(Condition::Compare {
            comparison,
            key,
            value: value.clone(),
        })
    }

    fn group(
        &mut self,
        name: &str,
        operand: &Value,
        path: &str,
        depth: usize,
    ) -> Result<Condition, String> {
        if depth > MAX_DEPTH {
            return Err(format!(
                "{path}: andAll and orAll nest more than {MAX_DEPTH} deep"
            ));
        }
        let members = match operand {
            Value::Array(members) if !members.is_empty() => members,
            Value::Array(_) => return Err(format!("{path}: needs at least one condition")),
            other => {
                return Err(format!(
                    "{path}: must be a list of conditions, not {}",
                    type_of(other)
                ));
            }
        };
        let conditions = members
            .iter()
            .enumerate()
            .map(|(i, member)| self.condition(member, &format!("{path}[{i}]"), depth))
            .collect::<Result<Vec<_>, String>>()?;
        Ok(if name == ALL {
            Condition::All(conditions)
        } else {
            Condition::Any(conditions)
        })
    }
}

fn check_key(key: &str, path: &str, bedrock_keys: bool) -> Result<String, String> {
    if key.is_empty() || key.len() > MAX_NAME_BYTES || key.chars().any(char::is_control) {
        return Err(format!(
            "{path}.key: must be 1 to {MAX_NAME_BYTES} bytes without control characters"
        ));
    }
    if key.starts_with(metadata::RESERVED_PREFIX) && !(bedrock_keys && BEDROCK_KEYS.contains(&key))
    {
        return Err(format!(
            "{path}.key: {key:?} is Bedrock's own attribute; filter on source_key instead \
             (Bedrock's requests may filter on {})",
            BEDROCK_KEYS.join(", ")
        ));
    }
    Ok(key.to_string())
}

fn check_operand(value: &Value, expected: Operand, path: &str) -> Result<(), String> {
    let scalar = |value: &Value| match value {
        Value::String(text) if text.len() > MAX_STRING_BYTES => Err(format!(
            "{path}: a string of {} bytes; at most {MAX_STRING_BYTES}",
            text.len()
        )),
        Value::String(text) if text.contains('\0') => Err(format!(
            "{path}: a string with a NUL character, which no attribute holds"
        )),
        Value::String(_) | Value::Number(_) | Value::Bool(_) => Ok(()),
        other => Err(format!(
            "{path}: must be a string, number or boolean, not {}",
            type_of(other)
        )),
    };
    match (expected, value) {
        (Operand::Scalar, value) => scalar(value),
        (Operand::Number, Value::Number(_)) => Ok(()),
        (Operand::Number, other) => {
            Err(format!("{path}: must be a number, not {}", type_of(other)))
        }
        (Operand::String, Value::String(_)) => scalar(value),
        (Operand::String, other) => {
            Err(format!("{path}: must be a string, not {}", type_of(other)))
        }
        (Operand::Scalars, Value::Array(items)) if (1..=MAX_LIST_VALUES).contains(&items.len()) => {
            items.iter().try_for_each(scalar)
        }
        (Operand::Scalars, Value::Array(_)) => {
            Err(format!("{path}: must list 1 to {MAX_LIST_VALUES} values"))
        }
        (Operand::Scalars, other) => Err(format!("{path}: must be a list, not {}", type_of(other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problem(filter: Value) -> String {
        Condition::parse(&filter, "filter").unwrap_err()
    }

    #[test]
    fn every_operator_of_the_grammar_is_read() {
        for (name, _, operand) in COMPARISONS {
            let value = match operand {
                Operand::Scalar | Operand::String => json!("x"),
                Operand::Number => json!(3),
                Operand::Scalars => json!(["x", 2, true]),
            };
            let filter = json!({ *name: {"key": "team", "value": value} });
            let nested = json!({"andAll": [filter, {"orAll": [filter, filter]}]});
            assert!(Condition::parse(&nested, "filter").is_ok(), "{nested}");
        }
    }

    #[test]
    fn every_malformed_filter_names_its_problem_and_where() {
        let cases = [
            (
                json!({"equal": {"key": "a", "value": 1}}),
                "filter.equal: unknown operator \"equal\"",
            ),
            (
                json!({"equals": {"key": "a", "value": 1}, "in": {}}),
                "filter: one operator per object",
            ),
            (json!({}), "filter: an empty object"),
            (
                json!([]),
                "filter: must be an object with one operator, not a list",
            ),
            (
                json!({"equals": {"key": "a"}}),
                "filter.equals: needs a value",
            ),
            (
                json!({"equals": {"value": 1}}),
                "filter.equals: needs a key",
            ),
            (
                json!({"equals": {"key": 7, "value": 1}}),
                "filter.equals.key: must be a string",
            ),
            (
                json!({"equals": {"key": "", "value": 1}}),
                "must be 1 to 100 bytes",
            ),
            (
                json!({"equals": {"key": "a", "value": 1, "x": 2}}),
                "unknown field \"x\"",
            ),
            (
                json!({"equals": {"key": "a", "value": {"b": 1}}}),
                "must be a string, number or boolean, not an object",
            ),
            (json!({"equals": {"key": "a", "value": null}}), "not null"),
            (
                json!({"greaterThan": {"key": "year", "value": "2022"}}),
                "filter.greaterThan.value: must be a number, not a string",
            ),
            (
                json!({"startsWith": {"key": "a", "value": 1}}),
                "must be a string, not a number",
            ),
            (
                json!({"in": {"key": "a", "value": "x"}}),
                "must be a list, not a string",
            ),
            (
                json!({"in": {"key": "a", "value": []}}),
                "must list 1 to 100 values",
            ),
            (json!({"notIn": {"key": "a", "value": [[1]]}}), "not a list"),
            (
                json!({"andAll": []}),
                "filter.andAll: needs at least one condition",
            ),
            (
                json!({"orAll": {"equals": {}}}),
                "filter.orAll: must be a list of conditions",
            ),
            (
                json!({"andAll": [{"equals": {"key": "a", "value": 1}}, {"lessThan": {"key": "b", "value": true}}]}),
                "filter.andAll[1].lessThan.value: must be a number, not a boolean",
            ),
            (
                json!({"equals": {"key": "x-amz-bedrock-kb-chunk-id", "value": "c"}}),
                "filter on source_key",
            ),
            (
                json!({"equals": {"key": "a", "value": "x".repeat(1025)}}),
                "1025 bytes",
            ),
        ];
        for (filter, says) in cases {
            let error = problem(filter.clone());
            assert!(error.contains(says), "{filter}: {error}");
        }
    }

    #[test]
    fn bedrock_s_own_keys_are_filterable_in_its_requests_only() {
        let uri = json!({"equals": {"key": "x-amz-bedrock-kb-source-uri", "value": "s3://b/k"}});
        assert!(Condition::parse(&uri, "filter").is_ok());
        let members = uri.as_object().unwrap();
        let error = Condition::from_members(members, "filter").unwrap_err();
        assert!(error.contains("filter on source_key"), "{error}");
    }

    #[test]
    fn depth_and_size_are_bounded() {
        let leaf = json!({"equals": {"key": "a", "value": 1}});
        let nest =
            |levels: usize| (0..levels).fold(leaf.clone(), |inner, _| json!({"andAll": [inner]}));
        assert!(Condition::parse(&nest(MAX_DEPTH), "filter").is_ok());
        assert!(problem(nest(MAX_DEPTH + 1)).contains("nest more than 5 deep"));
        let wide = json!({"orAll": vec![leaf.clone(); MAX_CONDITIONS]});
        assert!(Condition::parse(&wide, "filter").is_ok());
        let wider = json!({"orAll": vec![leaf; MAX_CONDITIONS + 1]});
        assert!(problem(wider).contains("more than 50 comparisons"));
    }

    #[test]
    fn keys_and_values_are_parameters_never_sql() {
        let filter = json!({"orAll": [
            {"equals": {"key": "a'; DROP TABLE x; --", "value": "'; DROP TABLE y; --"}},
            {"startsWith": {"key": "source_key", "value": "uploads/acme/"}},
        ]});
        let condition = Condition::parse(&filter, "filter").unwrap();
        let sql = SqlCondition::new(&condition, 7, None);
        assert!(!sql.sql.contains("DROP"), "{}", sql.sql);
        assert!(
            sql.sql.contains("$7") && sql.sql.contains("to_jsonb(source_key)"),
            "{}",
            sql.sql
        );
        // The attribute's equals is one containment test: its key and value
        // are one parameter.
        assert!(
            sql.sql.starts_with("((metadata @> $7::jsonb) OR "),
            "{}",
            sql.sql
        );
        assert_eq!(sql.params.len(), 2);
    }
}
