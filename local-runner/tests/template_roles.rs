//! Each API key's secret is named to, and readable by, only the functions
//! that read it: the ones whose parts need that provider
//! (`functions/runtime`: embed, the sweeper and the API build the embedder;
//! parse the parsers).

use docpipe_local_runner::provision;
use serde_json::Value;
use std::collections::BTreeSet;

fn names(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|name| name.to_string()).collect()
}

/// Whether `value` refers to the resource `name` (`Ref` or `Fn::GetAtt`).
fn refers_to(value: &Value, name: &str) -> bool {
    match value {
        Value::Object(object) => object.iter().any(|(key, inner)| {
            (key == "Ref" && inner == name)
                || (key == "Fn::GetAtt" && inner[0] == name)
                || refers_to(inner, name)
        }),
        Value::Array(items) => items.iter().any(|item| refers_to(item, name)),
        _ => false,
    }
}

/// The functions that may read `secret`, through a managed policy they
/// attach or a policy of their own.
fn readers(template: &Value, secret: &str) -> BTreeSet<String> {
    let resources = template["Resources"].as_object().unwrap();
    let grants = |document: &Value| {
        document["Statement"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|statement| {
                statement["Action"]
                    .to_string()
                    .contains("secretsmanager:GetSecretValue")
                    && refers_to(&statement["Resource"], secret)
            })
    };
    let granting: Vec<&String> = resources
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::IAM::ManagedPolicy")
        .filter(|(_, r)| grants(&r["Properties"]["PolicyDocument"]))
        .map(|(name, _)| name)
        .collect();
    functions(template)
        .filter(|(_, function)| {
            function["Properties"]["Policies"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|policy| {
                    granting.iter().any(|name| policy["Ref"] == name.as_str()) || grants(policy)
                })
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// The functions whose environment names `variable`.
fn named_to(template: &Value, variable: &str) -> BTreeSet<String> {
    functions(template)
        .filter(|(_, function)| {
            !function["Properties"]["Environment"]["Variables"][variable].is_null()
        })
        .map(|(name, _)| name.clone())
        .collect()
}

fn functions(template: &Value) -> impl Iterator<Item = (&String, &Value)> {
    template["Resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
}

#[test]
fn each_api_key_is_read_only_by_the_functions_that_use_it() {
    let template = provision::template().unwrap();
    let globals = &template["Globals"]["Function"]["Environment"]["Variables"];
    let embedders = names(&["EmbedFunction", "SweeperFunction", "ApiFunction"]);
    let parsers = names(&["ParseFunction"]);
    for (secret, variable, users) in [
        (
            "EmbeddingApiKeySecret",
            "OPENAI_API_KEY_SECRET_ID",
            &embedders,
        ),
        (
            "LlamaParseApiKeySecret",
            "LLAMA_CLOUD_API_KEY_SECRET_ID",
            &parsers,
        ),
        (
            "RerankApiKeySecret",
            "RERANK_API_KEY_SECRET_ID",
            &names(&["ApiFunction"]),
        ),
    ] {
        assert!(
            globals[variable].is_null(),
            "{variable} is named to every function"
        );
        assert_eq!(&readers(&template, secret), users, "who may read {secret}");
        assert_eq!(
            &named_to(&template, variable),
            users,
            "who is told {variable}"
        );
    }
    // The database's secret, every function.
    assert_eq!(
        readers(&template, "Database").len(),
        functions(&template).count(),
        "every function reads the database's secret"
    );
}
