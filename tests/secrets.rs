//! A cold start's settings from Secrets Manager (LocalStack): the database
//! URL from an RDS-style secret, API keys from plain ones, the template's
//! placeholder as no key, and clear errors that never show a secret.

use docpipe_shared::config::{Config, Env};
use docpipe_shared::{db, secrets};
use docpipe_tests::TestDb;
use docpipe_tests::local_aws::sdk_config;

async fn client() -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(&sdk_config().await)
}

/// Creates a secret with a unique name; returns its ARN.
async fn secret(client: &aws_sdk_secretsmanager::Client, value: &str) -> String {
    client
        .create_secret()
        .name(format!("docpipe-test-{}", uuid::Uuid::new_v4()))
        .secret_string(value)
        .send()
        .await
        .expect("create secret")
        .arn
        .unwrap()
}

fn lookup(vars: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> {
    move |name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    }
}

#[tokio::test]
async fn secrets_become_the_database_url_and_the_api_keys() {
    let test_db = TestDb::migrated(&[]).await;
    let url: tokio_postgres::Config = test_db.url.parse().unwrap();
    let client = client().await;
    let database = secret(
        &client,
        &serde_json::json!({
            "username": url.get_user().unwrap(),
            "password": "not checked by the local cluster",
            "host": "db-instance.invalid",
            "port": 1,
            "dbname": "postgres",
        })
        .to_string(),
    )
    .await;
    let openai = secret(&client, "sk-from-secrets-manager\n").await;
    let llama = secret(&client, secrets::PLACEHOLDER).await;
    let port = url.get_ports()[0].to_string();
    let env = lookup(vec![
        ("DATABASE_SECRET_ID", database),
        ("DATABASE_HOST", "127.0.0.1".into()),
        ("DATABASE_PORT", port),
        ("DATABASE_NAME", url.get_dbname().unwrap().into()),
        ("DATABASE_SSLMODE", "disable".into()),
        ("OPENAI_API_KEY_SECRET_ID", openai),
        ("LLAMA_CLOUD_API_KEY_SECRET_ID", llama),
    ]);

    let settings = secrets::resolve(&client, &env).await.unwrap();
    assert_eq!(settings["OPENAI_API_KEY"], "sk-from-secrets-manager");
    assert!(
        !settings.contains_key("LLAMA_CLOUD_API_KEY"),
        "the placeholder is no key"
    );
    let config = Config::from_lookup(Env(|name| {
        settings.get(name).cloned().or_else(|| {
            [("EMBEDDING_DIMS", "1536")]
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }))
    .unwrap();
    let pool = db::connect(&config)
        .await
        .expect("the URL from the secret connects");
    let row = pool
        .get()
        .await
        .unwrap()
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, String>(0),
        test_db.url.rsplit('/').next().unwrap()
    );
}

#[tokio::test]
async fn a_missing_secret_names_the_setting_and_sslmode_require_never_falls_back() {
    let client = client().await;
    let env = lookup(vec![(
        "OPENAI_API_KEY_SECRET_ID",
        "docpipe-test-no-such-secret".into(),
    )]);
    let error = secrets::resolve(&client, &env)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.starts_with("OPENAI_API_KEY_SECRET_ID=\"docpipe-test-no-such-secret\" is invalid: cannot read the secret"), "{error}");

    // The local cluster has no TLS: `require` must fail, not go on in plaintext.
    let test_db = TestDb::migrated(&[]).await;
    let config = test_db.config(&[]);
    let url = format!("{}?sslmode=require", test_db.url);
    let config = Config {
        database_url: docpipe_shared::config::Secret::new(url),
        ..config
    };
    let error = db::connect(&config).await.unwrap_err().to_string();
    assert!(error.contains("TLS") || error.contains("SSL"), "{error}");
}
