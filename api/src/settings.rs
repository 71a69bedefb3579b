//! The API's own settings, read as every other concern's are
//! ([`Env::load`](docpipe_core::settings::Env::load)).

use docpipe_core::ConfigError;
use docpipe_core::settings::{Secret, Settings, invalid, secs};
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ApiSettings {
    /// `UPLOADS_QUEUE_URL` and the dead-letter queues (`UPLOADS_DLQ_URL`,
    /// `PARSE_DLQ_URL`, `CHUNK_DLQ_URL`, `EMBED_DLQ_URL`) `GET /v1/health`
    /// reports, beside the stage queues.
    pub uploads_queue_url: Option<String>,
    pub uploads_dlq_url: Option<String>,
    pub parse_dlq_url: Option<String>,
    pub chunk_dlq_url: Option<String>,
    pub embed_dlq_url: Option<String>,
    /// `UPLOAD_URL_TTL_SECS` (900, 60 to 604 800): how long a presigned
    /// upload URL stays valid.
    #[serde(rename = "upload_url_ttl_secs", deserialize_with = "secs")]
    pub upload_url_ttl: Duration,
    /// `TENANT_API_REQUESTS_PER_MINUTE` (600): each tenant's requests a
    /// minute, unless its `tenant_limits` row says otherwise.
    pub tenant_api_requests_per_minute: u32,
    /// `API_OPERATOR_TENANTS` (none): tenants that see deployment-wide
    /// figures (every tenant's messages in the queues), comma-separated.
    pub api_operator_tenants: Vec<String>,
    /// `TENANT_CLAIM` (tenant): in Lambda, the authorizer's claim that
    /// names the tenant (`custom:tenant` for a Cognito attribute).
    pub tenant_claim: String,
    /// `API_KEYS` (the local server): `key:tenant` pairs, comma-separated.
    pub api_keys: Option<Secret>,
    /// `API_LISTEN` (127.0.0.1:3000): the local server's address.
    pub api_listen: String,
    /// `API_MAX_CONNECTIONS` (512, 1 to 65 536): connections the local
    /// server serves at once; keep it below the process's open-file limit.
    pub api_max_connections: usize,
    /// `TENANT_SEARCH_SLOTS` (4, at least 1): searches of one tenant in
    /// flight in a process, each taking a slot per 500 rows it reads (hits
    /// and context). Keep it below `DB_POOL_SIZE`, so another tenant always
    /// finds a connection.
    pub tenant_search_slots: u32,
    /// `KNOWLEDGE_BASES` (none): Bedrock knowledge base ids, each searching
    /// a tenant's documents or those under a prefix of its folder:
    /// `id:tenant[:prefix]`, comma-separated; ids are 10 letters and digits.
    pub knowledge_bases: String,
    /// `SIGV4_KEYS` (none; in AWS from `SIGV4_KEYS_SECRET_ID`): the SigV4
    /// key pairs Bedrock clients sign with, `id:secret:tenant`,
    /// comma-separated, at most two per tenant (`docpipe keys issue`).
    pub sigv4_keys: Option<Secret>,
    /// `SIGV4_REGION` (the API's own AWS region): the region SigV4
    /// signatures must be made for.
    pub sigv4_region: Option<String>,
    /// `PAGE_TOKEN_KEY` (none; in AWS from `PAGE_TOKEN_KEY_SECRET_ID`): the
    /// key Bedrock's `nextToken`s are signed with. Without it each process
    /// has its own, and a page token is good only on the process that gave it.
    pub page_token_key: Option<Secret>,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            uploads_queue_url: None,
            uploads_dlq_url: None,
            parse_dlq_url: None,
            chunk_dlq_url: None,
            embed_dlq_url: None,
            upload_url_ttl: Duration::from_secs(900),
            tenant_api_requests_per_minute: 600,
            api_operator_tenants: Vec::new(),
            tenant_claim: "tenant".into(),
            api_keys: None,
            api_listen: "127.0.0.1:3000".into(),
            api_max_connections: 512,
            tenant_search_slots: 4,
            knowledge_bases: String::new(),
            sigv4_keys: None,
            sigv4_region: None,
            page_token_key: None,
        }
    }
}

impl Settings for ApiSettings {
    fn check(mut self) -> Result<Self, ConfigError> {
        let ttl = self.upload_url_ttl.as_secs();
        if !(60..=7 * 24 * 3600).contains(&ttl) {
            return Err(invalid("UPLOAD_URL_TTL_SECS", ttl, "must be 60 to 604800"));
        }
        if self.tenant_api_requests_per_minute == 0 {
            return Err(invalid(
                "TENANT_API_REQUESTS_PER_MINUTE",
                0,
                "must be a whole number of 1 or more",
            ));
        }
        if !(1..=65_536).contains(&self.api_max_connections) {
            return Err(invalid(
                "API_MAX_CONNECTIONS",
                self.api_max_connections,
                "must be 1 to 65536",
            ));
        }
        if self.tenant_search_slots == 0 {
            return Err(invalid("TENANT_SEARCH_SLOTS", 0, "must be 1 or more"));
        }
        self.api_operator_tenants = self
            .api_operator_tenants
            .iter()
            .map(|tenant| tenant.trim().to_string())
            .filter(|tenant| !tenant.is_empty())
            .collect();
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use docpipe_core::settings::Env;

    #[test]
    fn limits_are_checked_and_operators_listed() {
        let env = |vars: &[(&str, &str)]| Env::from_pairs(vars.iter().copied());
        let settings: ApiSettings = env(&[("API_OPERATOR_TENANTS", "acme, ops,")])
            .load()
            .unwrap();
        assert_eq!(settings.api_operator_tenants, ["acme", "ops"]);
        assert_eq!(settings.upload_url_ttl, Duration::from_secs(900));
        let err = env(&[("UPLOAD_URL_TTL_SECS", "30")])
            .load::<ApiSettings>()
            .unwrap_err();
        assert!(err.to_string().contains("must be 60 to 604800"), "{err}");
        let err = env(&[("TENANT_API_REQUESTS_PER_MINUTE", "0")])
            .load::<ApiSettings>()
            .unwrap_err();
        assert!(err.to_string().contains("1 or more"), "{err}");
    }
}
