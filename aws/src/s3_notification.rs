//! S3 event notifications as they arrive in an SQS message body.

use aws_lambda_events::s3::S3Event;
use docpipe_core::error::Rejection;
use percent_encoding::percent_decode_str;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectEvent {
    Created,
    Removed,
}

/// One object that was created or removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectChange {
    pub event: ObjectEvent,
    pub bucket: String,
    /// The key as stored, decoded from the notification's URL encoding.
    pub key: String,
    /// S3's request id for the change, when the notification carries one.
    pub request_id: Option<String>,
}

/// The object changes in a notification body. The test event S3 sends when
/// a notification is configured, and event kinds other than create and
/// remove, yield none. A body that is neither is an error.
pub fn parse(body: &str) -> Result<Vec<ObjectChange>, String> {
    let value: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    if value.get("Event").and_then(|e| e.as_str()) == Some("s3:TestEvent") {
        return Ok(Vec::new());
    }
    let event: S3Event =
        serde_json::from_value(value).map_err(|e| format!("not an S3 notification: {e}"))?;
    let mut changes = Vec::new();
    for record in event.records {
        let name = record.event_name.as_deref().unwrap_or_default();
        let name = name.strip_prefix("s3:").unwrap_or(name);
        let kind = if name.starts_with("ObjectCreated:") {
            ObjectEvent::Created
        } else if name.starts_with("ObjectRemoved:") {
            ObjectEvent::Removed
        } else {
            continue;
        };
        let raw_key = record
            .s3
            .object
            .key
            .ok_or_else(|| format!("{name} record without an object key"))?;
        changes.push(ObjectChange {
            event: kind,
            bucket: record.s3.bucket.name.unwrap_or_default(),
            key: decode_key(&raw_key).map_err(|e| e.to_string())?,
            request_id: record.response_elements.get("x-amz-request-id").cloned(),
        });
    }
    Ok(changes)
}

/// Keys in notifications are URL-encoded as in a form: `+` is a space (real
/// S3), `%20` too (some emulators), and `%xx` bytes spell UTF-8.
pub fn decode_key(raw: &str) -> Result<String, Rejection> {
    percent_decode_str(&raw.replace('+', " "))
        .decode_utf8()
        .map(|key| key.into_owned())
        .map_err(|_| Rejection::InvalidKey {
            key: raw.to_string(),
            detail: "the URL-decoded key is not UTF-8".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notification(event_name: &str, key: &str) -> String {
        serde_json::json!({"Records": [{
            "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
            "eventTime": "2026-11-23T03:00:00.000Z", "eventName": event_name,
            "userIdentity": {"principalId": "AWS:X"},
            "requestParameters": {"sourceIPAddress": "127.0.0.1"},
            "responseElements": {"x-amz-request-id": "REQ1", "x-amz-id-2": "id2"},
            "s3": {"s3SchemaVersion": "1.0", "configurationId": "uploads",
                   "bucket": {"name": "docs", "ownerIdentity": {"principalId": "X"}, "arn": "arn:aws:s3:::docs"},
                   "object": {"key": key, "size": 5, "eTag": "abc", "sequencer": "0A1B"}}
        }]})
        .to_string()
    }

    #[test]
    fn keys_are_url_decoded_both_ways_spaces_are_written() {
        for (raw, key) in [
            ("uploads/acme/my+report.txt", "uploads/acme/my report.txt"),
            ("uploads/acme/my%20report.txt", "uploads/acme/my report.txt"),
            (
                "uploads/acme/caf%C3%A9+%E6%97%A5%E6%9C%AC.md",
                "uploads/acme/café 日本.md",
            ),
            ("uploads/acme/a%2Bb.txt", "uploads/acme/a+b.txt"),
        ] {
            assert_eq!(decode_key(raw).unwrap(), key, "{raw}");
        }
        assert!(matches!(
            decode_key("uploads/acme/%FF.txt"),
            Err(Rejection::InvalidKey { .. })
        ));
    }

    #[test]
    fn created_and_removed_records_become_changes() {
        let created = parse(&notification("ObjectCreated:Put", "uploads/acme/a+b.txt")).unwrap();
        assert_eq!(
            created,
            [ObjectChange {
                event: ObjectEvent::Created,
                bucket: "docs".into(),
                key: "uploads/acme/a b.txt".into(),
                request_id: Some("REQ1".into()),
            }]
        );
        let removed = parse(&notification("ObjectRemoved:Delete", "uploads/acme/x.md")).unwrap();
        assert_eq!(removed[0].event, ObjectEvent::Removed);
        assert!(
            parse(&notification("ObjectRestore:Post", "uploads/acme/x.md"))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn the_test_event_is_empty_and_garbage_is_an_error() {
        let test_event = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-23T03:00:00.000Z","Bucket":"docs","RequestId":"R","HostId":"H"}"#;
        assert_eq!(parse(test_event).unwrap(), []);
        assert!(parse("not json").unwrap_err().starts_with("not JSON"));
        assert!(
            parse(r#"{"hello":1}"#)
                .unwrap_err()
                .starts_with("not an S3 notification")
        );
    }
}
