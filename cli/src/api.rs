//! `docpipe --api URL`: search and status through the HTTP API instead of
//! the database, as any client would (the API key decides the tenant).

use anyhow::{Context, bail};
use docpipe_core::cost::ledger::Estimates;
use docpipe_core::cost::usd;
use docpipe_search::context::ContextRequest;
use docpipe_search::{SearchHit, SearchMode};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::time::Duration;

pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl ApiClient {
    pub fn new(base: &str, key: Option<String>) -> anyhow::Result<ApiClient> {
        let key = key.context("--api needs an API key: set DOCPIPE_API_KEY (or --api-key)")?;
        docpipe_core::ops::tls::crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(ApiClient {
            http,
            base: base.trim_end_matches('/').to_string(),
            key,
        })
    }

    /// `body` is sent as JSON when present; a non-2xx answer becomes an
    /// error carrying the API's own message.
    async fn call<T: DeserializeOwned>(
        &self,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base);
        let request = match body {
            Some(body) => self.http.post(&url).json(&body),
            None => self.http.get(&url),
        };
        let response = request
            .bearer_auth(&self.key)
            .send()
            .await
            .with_context(|| format!("calling {url}"))?;
        let status = response.status();
        let answer: Value = response
            .json()
            .await
            .with_context(|| format!("reading the answer of {url}"))?;
        // Health answers 503 with its report when a part is down.
        if !status.is_success() && answer.get("status").is_none() {
            let message = answer["error"]["message"].as_str().unwrap_or("no message");
            bail!("{url} answered {status}: {message}");
        }
        Ok(serde_json::from_value(answer)?)
    }

    pub async fn search(
        &self,
        query: &str,
        (top_k, mode): (u32, SearchMode),
        (context, rerank): (Option<ContextRequest>, bool),
        filter: Option<Value>,
    ) -> anyhow::Result<Vec<SearchHit>> {
        #[derive(serde::Deserialize)]
        struct Hits {
            hits: Vec<SearchHit>,
        }
        let mut body = json!({"query": query, "top_k": top_k, "mode": mode, "rerank": rerank});
        if let Some(filter) = filter {
            body["filter"] = filter;
        }
        if let Some(context) = context {
            body["context"] = json!(context);
        }
        Ok(self.call::<Hits>("/v1/search", Some(body)).await?.hits)
    }

    /// The caller's metrics, the pipeline's health and recent failures.
    pub async fn status(&self) -> anyhow::Result<Value> {
        let (metrics, health, failures) = tokio::try_join!(
            self.call::<Value>("/v1/metrics", None),
            self.call::<Value>("/v1/health", None),
            self.call::<Value>("/v1/jobs?state=failed&limit=10", None),
        )?;
        Ok(json!({"metrics": metrics, "health": health, "recent_failures": failures["jobs"]}))
    }
}

/// `docpipe status --api` for a person.
pub fn print_status(status: &Value) {
    let metrics = &status["metrics"];
    let health = &status["health"];
    say!(
        "tenant {}, health {}",
        text(&metrics["tenant"]),
        text(&health["status"])
    );
    say!("jobs per state:");
    for (state, count) in metrics["jobs_by_state"].as_object().into_iter().flatten() {
        say!("  {state:<11} {count}");
    }
    say!(
        "completed in the last hour {}; today {} tokens, {} pages, {} of a {} budget; {} of {} paid requests in the last hour",
        metrics["completed_last_hour"],
        metrics["tokens_today"],
        metrics["pages_today"],
        usd(metrics["usd_today"].as_f64().unwrap_or(0.0)),
        usd(metrics["daily_budget_usd"].as_f64().unwrap_or(0.0)),
        metrics["requests_last_hour"],
        metrics["hourly_request_cap"],
    );
    let estimates: Estimates =
        serde_json::from_value(metrics["spend_estimates"].clone()).unwrap_or_default();
    say!("{estimates}");
    let change = &metrics["model_change"];
    if change.is_object() {
        let state = if change["switched"] == true {
            "switched"
        } else {
            "building"
        };
        say!(
            "model change {} -> {}: {state}, {}/{} chunks with the next model's vectors",
            text(&change["current"]),
            text(&change["next"]),
            change["ready"],
            change["chunks"]
        );
    }
    for queue in health["queues"].as_array().into_iter().flatten() {
        say!(
            "queue {:<8} {}  waiting {}, in flight {}, delayed {}, dead letters {}",
            text(&queue["name"]),
            text(&queue["status"]),
            figure(&queue["waiting"]),
            figure(&queue["in_flight"]),
            figure(&queue["delayed"]),
            figure(&queue["dead_letters"])
        );
    }
    for service in health["services"].as_array().into_iter().flatten() {
        say!(
            "{} circuit breaker: {}",
            text(&service["service"]),
            text(&service["breaker"])
        );
    }
    let failures = status["recent_failures"].as_array().into_iter().flatten();
    for (i, job) in failures.enumerate() {
        if i == 0 {
            say!("recent failures:");
        }
        say!(
            "  {}  {}  {}: {}",
            text(&job["state_changed_at"]),
            text(&job["source_key"]),
            text(&job["error_code"]),
            text(&job["error_message"])
        );
    }
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("")
}

/// A count the API may withhold (queue figures are for operators): `—` then.
fn figure(value: &Value) -> String {
    value.as_u64().map_or("—".to_string(), |n| n.to_string())
}
