//! A checked filter as SQL: a condition over `document_chunks` whose every
//! key and value is a parameter.

use super::{Comparison, Condition};
use crate::Location;
use serde_json::{Map, Value};
use tokio_postgres::types::ToSql;

/// A filter as a SQL condition over `document_chunks`, with its parameters
/// numbered from the one it was made for.
pub struct SqlCondition {
    pub sql: String,
    pub params: Vec<Box<dyn ToSql + Sync + Send>>,
    /// The number of the first parameter.
    first: usize,
    /// Where the chunks' objects are, as Bedrock names them.
    location: Option<Location>,
}

/// The chunk columns a reserved key reads, as JSON (a missing value is NULL).
fn reserved_column(key: &str) -> Option<&'static str> {
    Some(match key {
        "x-amz-bedrock-kb-document-page-number" => "to_jsonb(page_start)",
        "source_key" => "to_jsonb(source_key)",
        "document_id" => "to_jsonb(document_id::text)",
        "content_type" => "to_jsonb(content_type)",
        "chunk_index" => "to_jsonb(chunk_index)",
        "page_start" => "to_jsonb(page_start)",
        "page_end" => "to_jsonb(page_end)",
        "row_start" => "to_jsonb(row_start)",
        "row_end" => "to_jsonb(row_end)",
        "headings" => "headings",
        _ => return None,
    })
}

impl SqlCondition {
    /// `condition` as SQL whose first parameter is `$first`; Bedrock's
    /// source URI and data source read `location`.
    pub fn new(condition: &Condition, first: usize, location: Option<&Location>) -> SqlCondition {
        let mut sql = SqlCondition {
            sql: String::new(),
            params: Vec::new(),
            first,
            location: location.cloned(),
        };
        sql.sql = sql.write(condition);
        sql
    }

    /// The JSON a reserved `key` reads, if it is one.
    fn column(&mut self, key: &str) -> Option<String> {
        let location = self.location.clone();
        let known = |value: Option<String>| value.unwrap_or_else(|| "NULL".to_string());
        Some(match key {
            "x-amz-bedrock-kb-source-uri" => {
                let prefix = location.map(|at| self.param(at.source_uri_prefix));
                format!("to_jsonb({}::text || source_key)", known(prefix))
            }
            "x-amz-bedrock-kb-data-source-id" => {
                let id = location.map(|at| self.param(at.data_source_id));
                format!("to_jsonb({}::text)", known(id))
            }
            _ => reserved_column(key)?.to_string(),
        })
    }

    /// A placeholder for `value`.
    fn param(&mut self, value: impl ToSql + Sync + Send + 'static) -> String {
        self.params.push(Box::new(value));
        format!("${}", self.first + self.params.len() - 1)
    }

    fn write(&mut self, condition: &Condition) -> String {
        let (conditions, joiner) = match condition {
            Condition::All(conditions) => (conditions, " AND "),
            Condition::Any(conditions) => (conditions, " OR "),
            Condition::Compare {
                comparison,
                key,
                value,
            } => return self.compare(*comparison, key, value),
        };
        let parts: Vec<String> = conditions.iter().map(|c| self.write(c)).collect();
        format!("({})", parts.join(joiner))
    }

    fn compare(&mut self, comparison: Comparison, key: &str, value: &Value) -> String {
        let column = self.column(key);
        // An attribute's equals and listContains are `metadata @> {key: …}`
        // alone (the same test, for the scalars they take): the GIN index
        // serves it, and the planner reads it against the column's
        // statistics. Said twice, its estimate of the chunks that pass
        // would be the product of both, far too few, and it would sort them
        // all instead of walking the HNSW graph.
        if column.is_none() {
            let inner = match comparison {
                Comparison::Equals => Some(value.clone()),
                Comparison::ListContains => Some(Value::Array(vec![value.clone()])),
                _ => None,
            };
            if let Some(inner) = inner {
                let object = Value::Object(Map::from_iter([(key.to_string(), inner)]));
                return format!("(metadata @> {}::jsonb)", self.param(object));
            }
        }
        let field = match column {
            Some(column) => column,
            None => format!("(metadata -> {}::text)", self.param(key.to_string())),
        };
        let sql = match comparison {
            Comparison::Equals => {
                let v = self.param(value.clone());
                format!("{field} = {v}::jsonb")
            }
            Comparison::NotEquals => {
                format!(
                    "{field} IS DISTINCT FROM {}::jsonb",
                    self.param(value.clone())
                )
            }
            Comparison::GreaterThan
            | Comparison::GreaterThanOrEquals
            | Comparison::LessThan
            | Comparison::LessThanOrEquals => {
                let operator = match comparison {
                    Comparison::GreaterThan => ">",
                    Comparison::GreaterThanOrEquals => ">=",
                    Comparison::LessThan => "<",
                    _ => "<=",
                };
                let n = self.param(value.as_f64().unwrap_or_default());
                format!(
                    "CASE WHEN jsonb_typeof({field}) = 'number' \
                     THEN ({field})::float8 {operator} {n}::float8 ELSE false END"
                )
            }
            Comparison::In | Comparison::NotIn => {
                let values: Vec<Value> = value.as_array().cloned().unwrap_or_default();
                let any = format!(
                    "coalesce({field} = ANY({}::jsonb[]), false)",
                    self.param(values)
                );
                if comparison == Comparison::In {
                    any
                } else {
                    // Bedrock's notIn: the attribute is there, and none of these.
                    format!("{field} IS NOT NULL AND NOT {any}")
                }
            }
            Comparison::StartsWith => {
                let s = self.param(value.as_str().unwrap_or_default().to_string());
                format!(
                    "CASE WHEN jsonb_typeof({field}) = 'string' \
                     THEN starts_with({field} #>> '{{}}', {s}::text) ELSE false END"
                )
            }
            Comparison::ListContains => {
                let list = self.param(Value::Array(vec![value.clone()]));
                format!("coalesce({field} @> {list}::jsonb, false)")
            }
            Comparison::StringContains => {
                let s = self.param(value.as_str().unwrap_or_default().to_string());
                format!(
                    "CASE jsonb_typeof({field}) \
                     WHEN 'string' THEN strpos({field} #>> '{{}}', {s}::text) > 0 \
                     WHEN 'array' THEN EXISTS (SELECT 1 FROM jsonb_array_elements_text({field}) \
                                                AS item WHERE strpos(item, {s}::text) > 0) \
                     ELSE false END"
                )
            }
        };
        format!("({sql})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use docpipe_core::domain::metadata;

    #[test]
    fn every_reserved_name_reads_its_column() {
        for name in metadata::RESERVED {
            assert!(reserved_column(name).is_some(), "{name}");
        }
    }
}
