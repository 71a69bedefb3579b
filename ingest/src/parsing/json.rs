//! JSON (`.json`, `.jsonl`) as `path: value` lines, one record to a
//! paragraph: the elements of a top-level array, or the lines of a JSON
//! Lines file. serde_json refuses nesting past 128 levels.

use super::layout::{Layout, TextBuilder};
use super::{Format, OutputBounds};
use docpipe_core::error::Rejection;
use serde_json::Value;

pub fn parse(
    text: &str,
    format: Format,
    bounds: &OutputBounds,
) -> Result<(String, Layout), Rejection> {
    let unreadable = |line: usize, e: serde_json::Error| {
        let at = if line > 0 {
            format!("line {line}: ")
        } else {
            String::new()
        };
        super::unreadable(format.name(), format!("{at}{e}"))
    };
    let mut doc = TextBuilder::new(bounds.max_chars);
    if format == Format::Jsonl {
        for (number, line) in (1..).zip(text.lines()) {
            if !line.trim().is_empty() {
                let record = serde_json::from_str(line).map_err(|e| unreadable(number, e))?;
                write_record(&mut doc, &record)?;
            }
        }
    } else {
        match serde_json::from_str(text).map_err(|e| unreadable(0, e))? {
            Value::Array(records) => {
                for record in &records {
                    write_record(&mut doc, record)?;
                }
            }
            record => write_record(&mut doc, &record)?,
        }
    }
    Ok(doc.finish())
}

fn write_record(doc: &mut TextBuilder, record: &Value) -> Result<(), Rejection> {
    let mut lines = String::new();
    flatten(record, &mut String::new(), &mut lines);
    doc.paragraph(&lines)
}

/// Appends a `path: value` line for each scalar under `value`.
fn flatten(value: &Value, path: &mut String, out: &mut String) {
    let at = path.len();
    match value {
        Value::Object(fields) => {
            for (key, field) in fields {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                flatten(field, path, out);
                path.truncate(at);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push_str(&format!("[{i}]"));
                flatten(item, path, out);
                path.truncate(at);
            }
        }
        scalar => {
            let text = match scalar {
                Value::String(s) => s.split_whitespace().collect::<Vec<_>>().join(" "),
                other => other.to_string(),
            };
            if path.is_empty() {
                out.push_str(&text);
            } else {
                out.push_str(&format!("{path}: {text}"));
            }
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use docpipe_core::settings::ParseLimits;

    fn parsed(text: &str, format: Format) -> Result<String, Rejection> {
        let bounds = ParseLimits::default().bounds(format, text.len());
        parse(text, format, &bounds).map(|(text, _)| text)
    }

    #[test]
    fn records_become_path_value_paragraphs() {
        let json = r#"[{"name": "Ada", "tags": ["x", "y"], "address": {"city": "London"}}, {"name": "Bob", "age": 7}]"#;
        assert_eq!(
            parsed(json, Format::Json).unwrap(),
            // serde_json's objects keep their keys sorted.
            "address.city: London\nname: Ada\ntags[0]: x\ntags[1]: y\n\nage: 7\nname: Bob"
        );
        let lines = "{\"a\": 1}\n\n{\"b\": \"two\\nlines\"}\n";
        assert_eq!(
            parsed(lines, Format::Jsonl).unwrap(),
            "a: 1\n\nb: two lines"
        );
    }

    #[test]
    fn bad_json_names_where() {
        let err = parsed("{\"a\": 1}\n{oops", Format::Jsonl).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(matches!(
            parsed(&deep, Format::Json),
            Err(Rejection::UnreadableDocument { detail, .. }) if detail.contains("recursion")
        ));
    }
}
