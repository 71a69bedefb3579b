//! CloudWatch metrics as Embedded Metric Format lines: one JSON line per
//! unit of work (a stage message, an upload, a sweep), which CloudWatch Logs
//! turns into metrics. No API call on the hot path.
//!
//! Code anywhere inside [`scope`] adds to the current line with [`add`]; the
//! scope writes it when the work ends. `EMF_OUTPUT` says where lines go:
//! `stdout` (the default in Lambda), `off` (the default elsewhere), or a file
//! path to append to.

use serde_json::{Map, Value, json};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// The CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "docpipe";

/// A metric; its name is the variant's (`strum`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, strum::IntoStaticStr)]
pub enum Metric {
    /// Stage messages handled (or uploads, or sweeps).
    Messages,
    /// Time to handle one, in milliseconds.
    Duration,
    /// Uploads that became new work.
    DocumentsIngested,
    JobsCompleted,
    JobsFailed,
    ChunksCreated,
    /// Chunks whose vector came from `embedding_cache`.
    CacheHits,
    EmbeddingTokens,
    PagesParsed,
    /// Search units billed by the rerank service.
    RerankSearchUnits,
    ExternalRequests,
    CostUsd,
    /// A job told to wait: the daily budget or the hourly request cap.
    SpendingStopped,
    /// Paid calls never settled, closed by the sweeper at their estimate.
    SpendEstimated,
    /// Stage messages that let another tenant's waiting work go first.
    FairShareYields,
    /// Failures, by `ErrorKind` (a rejection's code, or `transient`).
    Errors,
    /// 1 when a service's circuit breaker is open or probing, 0 when closed.
    BreakerOpen,
    JobsResumed,
}

impl Metric {
    pub fn name(self) -> &'static str {
        self.into()
    }

    fn unit(self) -> &'static str {
        match self {
            Metric::Duration => "Milliseconds",
            Metric::CostUsd | Metric::BreakerOpen => "None",
            _ => "Count",
        }
    }
}

/// What one unit of work measured so far.
#[derive(Debug, Default)]
struct Line {
    values: BTreeMap<Metric, f64>,
    error_kind: Option<String>,
}

tokio::task_local! {
    static CURRENT: RefCell<Line>;
}

/// Runs `work` as one unit named `stage` (the `Stage` dimension); writes its
/// line when it ends, with `Messages` 1 and its `Duration`.
pub async fn scope<F: Future>(stage: &'static str, work: F) -> F::Output {
    let started = std::time::Instant::now();
    let (output, line) = CURRENT
        .scope(RefCell::new(Line::default()), async {
            let output = work.await;
            (
                output,
                CURRENT.with(|line| std::mem::take(&mut *line.borrow_mut())),
            )
        })
        .await;
    if enabled() {
        let mut line = line;
        *line.values.entry(Metric::Messages).or_default() += 1.0;
        let millis = started.elapsed().as_secs_f64() * 1000.0;
        line.values.insert(Metric::Duration, millis);
        write(stage_line(stage, &line));
    }
    output
}

/// Adds `value` to `metric` on the current unit's line; outside a scope, nothing.
pub fn add(metric: Metric, value: f64) {
    let _ = CURRENT.try_with(|line| *line.borrow_mut().values.entry(metric).or_default() += value);
}

/// Counts one failure of the current unit, of `kind`.
pub fn error(kind: &str) {
    let _ = CURRENT.try_with(|line| {
        let mut line = line.borrow_mut();
        *line.values.entry(Metric::Errors).or_default() += 1.0;
        line.error_kind = Some(kind.to_string());
    });
}

/// Writes a service's breaker state (1 open or probing, 0 closed).
pub fn breaker(service: &str, open: bool) {
    if enabled() {
        write(breaker_line(service, open));
    }
}

fn breaker_line(service: &str, open: bool) -> Map<String, Value> {
    let directive = json!({
        "Namespace": NAMESPACE,
        "Dimensions": [["Service"]],
        "Metrics": [{"Name": Metric::BreakerOpen.name(), "Unit": Metric::BreakerOpen.unit()}],
    });
    let mut root = envelope(vec![directive]);
    root.insert("Service".into(), service.into());
    root.insert(Metric::BreakerOpen.name().into(), u8::from(open).into());
    root
}

fn envelope(directives: Vec<Value>) -> Map<String, Value> {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut root = Map::new();
    root.insert(
        "_aws".into(),
        json!({"Timestamp": millis, "CloudWatchMetrics": directives}),
    );
    root
}

/// Every metric by `Stage`; `Errors` also by `Stage` and `ErrorKind`.
fn stage_line(stage: &str, line: &Line) -> Map<String, Value> {
    let definitions = |metrics: &mut dyn Iterator<Item = &Metric>| -> Vec<Value> {
        metrics
            .map(|m| json!({"Name": m.name(), "Unit": m.unit()}))
            .collect()
    };
    let mut directives = vec![json!({
        "Namespace": NAMESPACE,
        "Dimensions": [["Stage"]],
        "Metrics": definitions(&mut line.values.keys()),
    })];
    if line.error_kind.is_some() {
        directives.push(json!({
            "Namespace": NAMESPACE,
            "Dimensions": [["Stage", "ErrorKind"]],
            "Metrics": definitions(&mut [Metric::Errors].iter()),
        }));
    }
    let mut root = envelope(directives);
    root.insert("Stage".into(), stage.into());
    if let Some(kind) = &line.error_kind {
        root.insert("ErrorKind".into(), kind.as_str().into());
    }
    for (metric, value) in &line.values {
        root.insert(metric.name().into(), json!(value));
    }
    root
}

enum Sink {
    Off,
    Stdout,
    File(Mutex<std::fs::File>),
}

fn sink() -> &'static Sink {
    static SINK: OnceLock<Sink> = OnceLock::new();
    SINK.get_or_init(|| {
        let settings = crate::settings::TelemetrySettings::from_process();
        match settings.emf_output.as_deref() {
            Some("off") => Sink::Off,
            Some("stdout") => Sink::Stdout,
            None if settings.in_lambda() => Sink::Stdout,
            None => Sink::Off,
            Some(path) => match std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                Ok(file) => Sink::File(Mutex::new(file)),
                Err(error) => {
                    tracing::error!(path, %error, "EMF_OUTPUT cannot be opened; no metrics");
                    Sink::Off
                }
            },
        }
    })
}

fn enabled() -> bool {
    !matches!(sink(), Sink::Off)
}

/// One line, written whole.
fn write(root: Map<String, Value>) {
    let mut text = Value::Object(root).to_string();
    text.push('\n');
    let written = match sink() {
        Sink::Off => Ok(()),
        Sink::Stdout => std::io::stdout().lock().write_all(text.as_bytes()),
        Sink::File(file) => file.lock().unwrap().write_all(text.as_bytes()),
    };
    if let Err(error) = written {
        tracing::warn!(%error, "could not write a metrics line");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_breaker_line_carries_its_service_dimension_and_value() {
        let line = Value::Object(breaker_line("openai", true));
        let directive = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], NAMESPACE);
        assert_eq!(directive["Dimensions"], json!([["Service"]]));
        assert_eq!(directive["Metrics"][0]["Name"], "BreakerOpen");
        assert_eq!(line["Service"], "openai");
        assert_eq!(line["BreakerOpen"], 1);
        assert_eq!(
            Value::Object(breaker_line("openai", false))["BreakerOpen"],
            0
        );
    }

    #[test]
    fn errors_get_their_own_directive_by_kind() {
        let mut line = Line::default();
        line.values.insert(Metric::Messages, 1.0);
        line.values.insert(Metric::Errors, 1.0);
        line.error_kind = Some("not_utf8".into());
        let root = Value::Object(stage_line("parse", &line));
        let directives = root["_aws"]["CloudWatchMetrics"].as_array().unwrap();
        assert_eq!(directives.len(), 2);
        assert_eq!(directives[1]["Dimensions"], json!([["Stage", "ErrorKind"]]));
        assert_eq!(
            directives[1]["Metrics"],
            json!([{"Name": "Errors", "Unit": "Count"}])
        );
        assert_eq!(root["ErrorKind"], "not_utf8");
        assert_eq!(root["Stage"], "parse");
        assert_eq!(root["Errors"], 1.0);
    }
}
