//! Secrets Manager, read once per cold start. A function's environment names
//! secrets (`*_SECRET_ID`, an ARN or a name), never holds them; what they
//! hold is laid over the environment ([`Env::overlay`](crate::settings::Env::overlay)):
//!
//! - `DATABASE_SECRET_ID`: an RDS-style JSON secret (`username`, `password`,
//!   optionally `host`, `port`, `dbname`) → `DATABASE_URL`, with
//!   `DATABASE_HOST` / `DATABASE_PORT` / `DATABASE_NAME` taking precedence
//!   (the proxy's endpoint, not the instance's) and `sslmode` from
//!   `DATABASE_SSLMODE` (default `require`).
//! - `OPENAI_API_KEY_SECRET_ID`, `LLAMA_CLOUD_API_KEY_SECRET_ID`,
//!   `RERANK_API_KEY_SECRET_ID`, `SIGV4_KEYS_SECRET_ID`,
//!   `PAGE_TOKEN_KEY_SECRET_ID`: a plain string → `OPENAI_API_KEY`,
//!   `LLAMA_CLOUD_API_KEY`, `RERANK_API_KEY`, `SIGV4_KEYS` (the API's
//!   SigV4 key pairs), `PAGE_TOKEN_KEY`. The template's placeholder value
//!   `unset` counts as no key.

use crate::error::ConfigError;
use crate::settings::Env;
use serde::Deserialize;
use std::collections::HashMap;

/// The value a new API key secret holds until an operator puts the key.
pub const PLACEHOLDER: &str = "unset";

const API_KEYS: [(&str, &str); 5] = [
    ("OPENAI_API_KEY", "OPENAI_API_KEY_SECRET_ID"),
    ("LLAMA_CLOUD_API_KEY", "LLAMA_CLOUD_API_KEY_SECRET_ID"),
    ("RERANK_API_KEY", "RERANK_API_KEY_SECRET_ID"),
    ("SIGV4_KEYS", "SIGV4_KEYS_SECRET_ID"),
    ("PAGE_TOKEN_KEY", "PAGE_TOKEN_KEY_SECRET_ID"),
];

/// Settings read from the secrets the environment names, by variable name.
pub async fn resolve(
    client: &aws_sdk_secretsmanager::Client,
    env: &Env,
) -> Result<HashMap<&'static str, String>, ConfigError> {
    let mut settings = HashMap::new();
    for (name, id_name) in API_KEYS {
        if let Some(id) = env.get(id_name) {
            let key = fetch(client, id_name, id).await?;
            if key.trim() != PLACEHOLDER && !key.trim().is_empty() {
                settings.insert(name, key.trim().to_string());
            }
        }
    }
    if let Some(id) = env.get("DATABASE_SECRET_ID") {
        let secret = fetch(client, "DATABASE_SECRET_ID", id).await?;
        settings.insert("DATABASE_URL", database_url(&secret, env)?);
    }
    Ok(settings)
}

async fn fetch(
    client: &aws_sdk_secretsmanager::Client,
    id_name: &'static str,
    id: &str,
) -> Result<String, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        name: id_name.into(),
        value: id.to_string(),
        reason,
    };
    let output = client
        .get_secret_value()
        .secret_id(id)
        .send()
        .await
        .map_err(|e| {
            invalid(format!(
                "cannot read the secret: {}",
                aws_sdk_secretsmanager::error::DisplayErrorContext(e)
            ))
        })?;
    output
        .secret_string
        .ok_or_else(|| invalid("the secret holds no string".into()))
}

#[derive(Deserialize)]
struct DatabaseSecret {
    username: String,
    password: String,
    host: Option<String>,
    port: Option<u16>,
    dbname: Option<String>,
}

/// A libpq key/value connection string from the secret and the environment.
fn database_url(secret: &str, env: &Env) -> Result<String, ConfigError> {
    let invalid = |reason: &str| ConfigError::Invalid {
        name: "DATABASE_SECRET_ID".into(),
        value: "(hidden)".into(),
        reason: reason.into(),
    };
    let secret: DatabaseSecret = serde_json::from_str(secret)
        .map_err(|_| invalid("not JSON with string `username` and `password`"))?;
    let setting = |name: &str| env.get(name).map(String::from);
    let host = setting("DATABASE_HOST")
        .or(secret.host)
        .ok_or_else(|| invalid("no host: set DATABASE_HOST or put `host` in the secret"))?;
    let port = setting("DATABASE_PORT")
        .or(secret.port.map(|p| p.to_string()))
        .unwrap_or_else(|| "5432".into());
    let dbname = setting("DATABASE_NAME")
        .or(secret.dbname)
        .unwrap_or_else(|| "postgres".into());
    let sslmode = setting("DATABASE_SSLMODE").unwrap_or_else(|| "require".into());
    Ok([
        ("host", host.as_str()),
        ("port", &port),
        ("dbname", &dbname),
        ("user", &secret.username),
        ("password", &secret.password),
        ("sslmode", &sslmode),
    ]
    .iter()
    .map(|(key, value)| format!("{key}='{}'", quote(value)))
    .collect::<Vec<_>>()
    .join(" "))
}

/// Escapes a value for a single-quoted libpq connection string value.
fn quote(value: &str) -> String {
    value.replace('\\', "\\\\").replace('\'', "\\'")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn env(vars: &[(&str, &str)]) -> Env {
        Env::from_pairs(vars.iter().copied())
    }

    #[test]
    fn the_proxy_endpoint_wins_and_odd_passwords_survive() {
        let secret = r#"{"username":"docpipe","password":"p@ss w'o\\rd=1","host":"db-instance","port":5432,"dbname":"docpipe","engine":"postgres"}"#;
        let url = database_url(secret, &env(&[("DATABASE_HOST", "proxy.example")])).unwrap();
        let config = tokio_postgres::Config::from_str(&url).unwrap();
        assert_eq!(
            config.get_hosts(),
            [tokio_postgres::config::Host::Tcp("proxy.example".into())]
        );
        assert_eq!(config.get_password(), Some(&b"p@ss w'o\\rd=1"[..]));
        assert_eq!(config.get_user(), Some("docpipe"));
        assert_eq!(config.get_dbname(), Some("docpipe"));
        assert_eq!(
            config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
    }

    #[test]
    fn a_secret_without_a_host_or_password_is_a_clear_error() {
        let err = database_url(r#"{"username":"u","password":"p"}"#, &env(&[])).unwrap_err();
        assert!(err.to_string().contains("no host"), "{err}");
        let err = database_url(r#"{"username":"u"}"#, &env(&[])).unwrap_err();
        assert!(err.to_string().contains("not JSON with string"), "{err}");
        assert!(
            !err.to_string().contains("\"u\""),
            "never echoes the secret"
        );
    }
}
