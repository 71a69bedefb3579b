//! Creates the deployed stack's bucket and queues in an emulator from
//! `infrastructure/template.yaml` itself: the resources it deploys with
//! `DeployCompute=false` (those without a condition: the key, the bucket
//! with its policy and its S3 → SQS notifications, each queue with its
//! dead-letter queue and redrive, the uploads queue's policy) go up as a
//! CloudFormation stack, so local runs and the integration tests use what
//! production deploys. The template itself cannot go up as it is: the SAM
//! transform refuses its local `CodeUri`s even on functions whose condition
//! is false (LocalStack's, as `sam deploy` would before `sam package`), and
//! it is over CreateStack's 51 200-byte body.

use aws_sdk_cloudformation::types::{Parameter, StackStatus};
use aws_sdk_sqs::types::QueueAttributeName;
use docpipe_core::settings::QueueUrls;
use serde_json::{Map, Value};
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

pub type Error = Box<dyn std::error::Error + Send + Sync>;

const TEMPLATE: &str = include_str!("../../infrastructure/template.yaml");

const STACK_TIMEOUT: Duration = Duration::from_secs(180);

/// How the queues behave: the template's parameters of the same names.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    /// `QueueVisibilityTimeoutSeconds`: seconds a received message stays invisible (the retry delay).
    pub visibility_timeout_secs: u32,
    /// `MaxReceiveCount`: receives before a message moves to its dead-letter queue.
    pub max_receive_count: u32,
}

/// One consumer's queue.
#[derive(Debug, Clone)]
pub struct ProvisionedQueue {
    pub url: String,
    pub arn: String,
    pub dlq_url: String,
}

#[derive(Debug, Clone)]
pub struct Resources {
    pub bucket: String,
    /// S3 notifications, consumed by `ingest`.
    pub uploads: ProvisionedQueue,
    pub parse: ProvisionedQueue,
    pub chunk: ProvisionedQueue,
    pub embed: ProvisionedQueue,
}

impl Resources {
    pub fn stage_queue_urls(&self) -> QueueUrls {
        QueueUrls {
            parse: self.parse.url.clone(),
            chunk: self.chunk.url.clone(),
            embed: self.embed.url.clone(),
        }
    }

    /// The settings functions and tools read, by name.
    pub fn env(&self) -> [(&'static str, &str); 9] {
        [
            ("DOCPIPE_BUCKET", &self.bucket),
            ("UPLOADS_QUEUE_URL", &self.uploads.url),
            ("PARSE_QUEUE_URL", &self.parse.url),
            ("CHUNK_QUEUE_URL", &self.chunk.url),
            ("EMBED_QUEUE_URL", &self.embed.url),
            ("UPLOADS_DLQ_URL", &self.uploads.dlq_url),
            ("PARSE_DLQ_URL", &self.parse.dlq_url),
            ("CHUNK_DLQ_URL", &self.chunk.dlq_url),
            ("EMBED_DLQ_URL", &self.embed.dlq_url),
        ]
    }

    /// [`Resources::env`] as `export NAME=value` lines.
    pub fn env_lines(&self) -> String {
        self.env()
            .iter()
            .map(|(name, value)| format!("export {name}={value}\n"))
            .collect()
    }
}

/// A queue's ARN, which event sources and redrive policies name it by.
pub async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<String, Error> {
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await?;
    attributes
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .ok_or_else(|| format!("queue {url} has no ARN").into())
}

/// YAML's short-form intrinsic functions (`!Ref x`, `!GetAtt a.b`, `!Sub …`)
/// as CloudFormation's JSON form.
fn to_json(yaml: serde_norway::Value) -> Result<Value, Error> {
    use serde_norway::Value as Yaml;
    Ok(match yaml {
        Yaml::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!');
            let value = to_json(tagged.value)?;
            match (name, value) {
                ("Ref", value) => serde_json::json!({ "Ref": value }),
                ("GetAtt", Value::String(path)) => {
                    let (resource, attribute) = path
                        .split_once('.')
                        .ok_or_else(|| format!("!GetAtt {path}: no attribute"))?;
                    serde_json::json!({ "Fn::GetAtt": [resource, attribute] })
                }
                (name, value) => Value::Object(Map::from_iter([(format!("Fn::{name}"), value)])),
            }
        }
        Yaml::Mapping(mapping) => {
            let mut object = Map::new();
            for (key, value) in mapping {
                let key = match key {
                    Yaml::String(key) => key,
                    other => serde_norway::to_string(&other)?.trim().to_string(),
                };
                object.insert(key, to_json(value)?);
            }
            Value::Object(object)
        }
        Yaml::Sequence(items) => {
            Value::Array(items.into_iter().map(to_json).collect::<Result<_, _>>()?)
        }
        scalar => serde_json::to_value(scalar)?,
    })
}

/// Names a piece of template refers to: `Ref`s, `${…}` in `Fn::Sub`,
/// `Fn::If` / `Condition` conditions, `Fn::FindInMap` maps.
fn references(value: &Value, names: &mut BTreeSet<String>) {
    match value {
        Value::Object(object) => {
            for (key, inner) in object {
                match (key.as_str(), inner) {
                    ("Ref" | "Condition", Value::String(name)) => {
                        names.insert(name.clone());
                    }
                    ("Fn::Sub", Value::String(text)) => {
                        for part in text.split("${").skip(1) {
                            let name = part.split(['}', '.']).next().unwrap_or_default();
                            names.insert(name.to_string());
                        }
                    }
                    ("Fn::If" | "Fn::FindInMap", Value::Array(args)) => {
                        if let Some(Value::String(name)) = args.first() {
                            names.insert(name.clone());
                        }
                    }
                    _ => {}
                }
                references(inner, names);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| references(item, names)),
        _ => {}
    }
}

/// The whole template, in CloudFormation's JSON form.
pub fn template() -> Result<Value, Error> {
    to_json(serde_norway::from_str(TEMPLATE)?)
}

/// The template cut down to what it deploys with `DeployCompute=false` (its
/// resources without a condition), with the parameters, conditions and
/// mappings they use.
pub fn storage_and_queues_template() -> Result<Value, Error> {
    let full = template()?;
    let section = |name: &str| full[name].as_object().cloned().unwrap_or_default();
    let resources: Map<String, Value> = section("Resources")
        .into_iter()
        .filter(|(_, resource)| resource.get("Condition").is_none())
        .collect();
    // Conditions may use other conditions and parameters: follow them to the end.
    let conditions = section("Conditions");
    let mut names = BTreeSet::new();
    references(&Value::Object(resources.clone()), &mut names);
    loop {
        let before = names.len();
        for name in names.clone() {
            if let Some(condition) = conditions.get(&name) {
                references(condition, &mut names);
            }
        }
        if names.len() == before {
            break;
        }
    }
    let used = |section: Map<String, Value>| -> Map<String, Value> {
        section
            .into_iter()
            .filter(|(name, _)| names.contains(name))
            .collect()
    };
    Ok(serde_json::json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "docpipe storage and queues (from infrastructure/template.yaml)",
        "Parameters": used(section("Parameters")),
        "Conditions": used(conditions),
        "Mappings": used(section("Mappings")),
        "Resources": resources,
    }))
}

/// Creates the stack `name` (or finds it created) and returns its bucket and queues.
pub async fn provision(
    cloudformation: &aws_sdk_cloudformation::Client,
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    settings: &QueueSettings,
) -> Result<Resources, Error> {
    let exists = cloudformation
        .describe_stacks()
        .stack_name(name)
        .send()
        .await
        .is_ok_and(|out| {
            out.stacks()
                .iter()
                .any(|s| s.stack_status() != Some(&StackStatus::DeleteComplete))
        });
    if !exists {
        let parameter = |key: &str, value: u32| {
            Parameter::builder()
                .parameter_key(key)
                .parameter_value(value.to_string())
                .build()
        };
        cloudformation
            .create_stack()
            .stack_name(name)
            .template_body(storage_and_queues_template()?.to_string())
            .parameters(parameter(
                "QueueVisibilityTimeoutSeconds",
                settings.visibility_timeout_secs,
            ))
            .parameters(parameter("MaxReceiveCount", settings.max_receive_count))
            .send()
            .await?;
    }
    wait_until_created(cloudformation, name).await?;

    let physical: HashMap<String, String> = cloudformation
        .describe_stack_resources()
        .stack_name(name)
        .send()
        .await?
        .stack_resources()
        .iter()
        .filter_map(|r| {
            Some((
                r.logical_resource_id()?.to_string(),
                r.physical_resource_id()?.to_string(),
            ))
        })
        .collect();
    let id = |logical: &str| {
        physical
            .get(logical)
            .cloned()
            .ok_or_else(|| Error::from(format!("stack {name} has no {logical}")))
    };
    let queue = async |prefix: &str| -> Result<ProvisionedQueue, Error> {
        let url = id(&format!("{prefix}Queue"))?;
        Ok(ProvisionedQueue {
            arn: queue_arn(sqs, &url).await?,
            url,
            dlq_url: id(&format!("{prefix}DeadLetters"))?,
        })
    };
    Ok(Resources {
        bucket: id("UploadBucket")?,
        uploads: queue("Uploads").await?,
        parse: queue("Parse").await?,
        chunk: queue("Chunk").await?,
        embed: queue("Embed").await?,
    })
}

async fn wait_until_created(
    cloudformation: &aws_sdk_cloudformation::Client,
    name: &str,
) -> Result<(), Error> {
    let started = Instant::now();
    loop {
        let stacks = cloudformation
            .describe_stacks()
            .stack_name(name)
            .send()
            .await?;
        let stack = stacks.stacks().first().ok_or("stack vanished")?;
        match stack.stack_status() {
            Some(StackStatus::CreateComplete | StackStatus::UpdateComplete) => return Ok(()),
            Some(StackStatus::CreateInProgress | StackStatus::UpdateInProgress) => {}
            status => {
                return Err(format!(
                    "stack {name} is {status:?}: {}",
                    stack.stack_status_reason().unwrap_or("no reason given")
                )
                .into());
            }
        }
        if started.elapsed() > STACK_TIMEOUT {
            return Err(format!("stack {name} not created within {STACK_TIMEOUT:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cut_template_keeps_only_what_its_resources_use() {
        let template = storage_and_queues_template().unwrap();
        let names = |section: &str| -> Vec<String> {
            template[section]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect()
        };
        assert_eq!(
            names("Resources"),
            [
                "ChunkDeadLetters",
                "ChunkQueue",
                "EmbedDeadLetters",
                "EmbedQueue",
                "Key",
                "ParseDeadLetters",
                "ParseQueue",
                "UploadBucket",
                "UploadBucketPolicy",
                "UploadsDeadLetters",
                "UploadsQueue",
                "UploadsQueuePolicy"
            ]
        );
        assert_eq!(
            names("Parameters"),
            [
                "FunctionTimeoutSeconds",
                "InventorySchedule",
                "MaxReceiveCount",
                "QueueVisibilityTimeoutSeconds"
            ]
        );
        assert_eq!(
            names("Conditions"),
            ["SixTimesFunctionTimeout", "TakesInventory"]
        );
        assert_eq!(names("Mappings"), ["QueueTimeouts"]);
        let parse = &template["Resources"]["ParseQueue"]["Properties"];
        assert_eq!(
            parse["RedrivePolicy"]["deadLetterTargetArn"],
            serde_json::json!({"Fn::GetAtt": ["ParseDeadLetters", "Arn"]})
        );
        assert_eq!(parse["KmsMasterKeyId"], serde_json::json!({"Ref": "Key"}));
    }
}
