//! Postgres: the connection pool (here), the migrations and the startup
//! schema check (`schema`), and the search indexes (`indexes`).

pub mod indexes;
pub mod schema;

use crate::error::ConfigError;
use crate::settings::DatabaseSettings;
use deadpool_postgres::{Manager, ManagerConfig, RecyclingMethod, Runtime};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;
use tokio_postgres::NoTls;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

pub use deadpool_postgres::{Client, Pool, Transaction};

/// A `timestamptz` as the API and the CLI show it: RFC 3339 in UTC, to the
/// second (`2026-11-28T21:04:05Z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct UtcTime(time::OffsetDateTime);

impl<'a> tokio_postgres::types::FromSql<'a> for UtcTime {
    fn from_sql(
        ty: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let at = time::OffsetDateTime::from_sql(ty, raw)?;
        Ok(UtcTime(
            at.to_offset(time::UtcOffset::UTC).replace_nanosecond(0)?,
        ))
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        <time::OffsetDateTime as tokio_postgres::types::FromSql>::accepts(ty)
    }
}

impl std::fmt::Display for UtcTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = self
            .0
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|_| std::fmt::Error)?;
        f.write_str(&text)
    }
}

impl serde::Serialize for UtcTime {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const POOL_WAIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `step` until it succeeds, again while it fails for a transient
/// reason (the database restarting, a connection cut), for up to `patience`;
/// then its last error. For writes that must outlive an outage: the record
/// of a call already paid for.
pub async fn outlast_outage<Step>(
    patience: Duration,
    mut step: impl FnMut() -> Step,
) -> crate::error::Result<()>
where
    Step: Future<Output = crate::error::Result<()>>,
{
    let deadline = tokio::time::Instant::now() + patience;
    let mut pause = Duration::from_millis(100);
    loop {
        match step().await {
            Err(error)
                if error.is_transient() && tokio::time::Instant::now() + pause < deadline =>
            {
                tracing::warn!(%error, "database unavailable; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            result => return result,
        }
    }
}

fn pg_config(url: &str) -> Result<tokio_postgres::Config, ConfigError> {
    let mut config = tokio_postgres::Config::from_str(url).map_err(|e| ConfigError::Invalid {
        name: "DATABASE_URL".into(),
        value: "(hidden)".to_string(),
        reason: e.to_string(),
    })?;
    config.connect_timeout(CONNECT_TIMEOUT);
    config.keepalives_idle(Duration::from_secs(30));
    Ok(config)
}

/// A pool over `DATABASE_URL`. Connections are made lazily. With
/// `sslmode=require` they use TLS, verifying the server against the system's
/// roots plus `DATABASE_CA_FILE` (a PEM bundle, e.g. RDS's) if set.
pub fn pool(config: &DatabaseSettings) -> Result<Pool, ConfigError> {
    let pg = pg_config(config.url())?;
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = if pg.get_ssl_mode() == SslMode::Require {
        let tls = tls_connector(config.database_ca_file.as_deref())?;
        Manager::from_config(pg, tls, manager_config)
    } else {
        Manager::from_config(pg, NoTls, manager_config)
    };
    Pool::builder(manager)
        .max_size(config.db_pool_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(POOL_WAIT_TIMEOUT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .build()
        .map_err(|e| ConfigError::Database(e.to_string()))
}

fn tls_connector(ca_file: Option<&Path>) -> Result<MakeRustlsConnect, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        name: "DATABASE_CA_FILE".into(),
        value: ca_file.map_or_else(String::new, |p| p.display().to_string()),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    // Unreadable system certificates are skipped; none at all fails below.
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(path) = ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| invalid(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(e.to_string()))?;
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(invalid("no certificate in the file".into()));
        }
    }
    if roots.is_empty() {
        return Err(invalid(
            "no trusted root certificates on this system".into(),
        ));
    }
    let tls = rustls::ClientConfig::builder_with_provider(crate::ops::tls::crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(tls))
}

/// A failure to connect, with its causes: "error performing TLS handshake"
/// alone would not say that the server's certificate has an unknown issuer.
pub(super) fn not_connected(error: deadpool_postgres::PoolError) -> ConfigError {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !message.contains(&cause_text) {
            message = format!("{message}: {cause_text}");
        }
        source = cause.source();
    }
    ConfigError::Database(message)
}

/// Connects, checks that the schema exists with the configured vector size,
/// and returns a pool. Every long-running process starts here.
pub async fn connect(config: &DatabaseSettings) -> Result<Pool, ConfigError> {
    let pool = pool(config)?;
    let client = pool.get().await.map_err(not_connected)?;
    if schema::check_vectors(&client, config).await?.is_none() {
        return Err(ConfigError::NotMigrated(
            "table upload_pipeline.document_chunks is missing".into(),
        ));
    }
    drop(client);
    Ok(pool)
}
