//! A cold start's settings from Secrets Manager (LocalStack): the database
//! URL from an RDS-style secret, API keys from plain ones, the template's
//! placeholder as no key, and clear errors that never show a secret.

use docpipe_core::db;
use docpipe_core::ops::secrets;
use docpipe_core::settings::{DatabaseSettings, Env};
use docpipe_tests::TestDb;
use docpipe_tests::local_aws::sdk_config;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls::pki_types::PrivateKeyDer;

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

fn lookup(vars: Vec<(&'static str, String)>) -> Env {
    Env::from_pairs(vars)
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
            "password": String::from_utf8_lossy(url.get_password().unwrap_or_default()),
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
    let config: DatabaseSettings = env.overlay(settings).load().unwrap();
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
async fn a_missing_secret_names_the_setting() {
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
}

/// A Postgres endpoint with TLS, in front of the local cluster (whose build
/// has none): answers the client's SSLRequest with `S`, terminates TLS with
/// `cert`, and passes the session on in plaintext. Returns its address and
/// a count of completed handshakes.
async fn tls_front(
    cert: &rcgen::CertifiedKey<rcgen::KeyPair>,
) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let key = PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(
        docpipe_core::ops::tls::crypto_provider(),
    )
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let cluster: tokio_postgres::Config = docpipe_tests::admin_url().parse().unwrap();
    let cluster_port = cluster.get_ports()[0];
    let handshakes = Arc::new(AtomicUsize::new(0));
    let count = handshakes.clone();
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let (acceptor, count) = (acceptor.clone(), count.clone());
            tokio::spawn(async move {
                let mut ssl_request = [0u8; 8];
                socket.read_exact(&mut ssl_request).await?;
                assert_eq!(ssl_request, [0, 0, 0, 8, 4, 210, 22, 47], "an SSLRequest");
                socket.write_all(b"S").await?;
                let mut tls = acceptor.accept(socket).await?;
                count.fetch_add(1, Ordering::SeqCst);
                let mut server =
                    tokio::net::TcpStream::connect(("127.0.0.1", cluster_port)).await?;
                tokio::io::copy_bidirectional(&mut tls, &mut server).await
            });
        }
    });
    (address, handshakes)
}

#[tokio::test]
async fn sslmode_require_verifies_the_server_and_never_falls_back_to_plaintext() {
    let test_db = TestDb::migrated(&[]).await;
    let with = |url: String, ca_file: Option<PathBuf>| DatabaseSettings {
        database_url: Some(url.into()),
        database_ca_file: ca_file,
        ..test_db.config(&[]).database
    };

    // The local cluster has no TLS: `require` fails, it does not go on in plaintext.
    let plain = with(format!("{}?sslmode=require", test_db.url), None);
    let error = db::connect(&plain).await.unwrap_err().to_string();
    assert!(error.contains("TLS") || error.contains("SSL"), "{error}");

    // A server whose certificate no trusted root signed: refused.
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let (front, handshakes) = tls_front(&cert).await;
    let port = test_db
        .url
        .parse::<tokio_postgres::Config>()
        .unwrap()
        .get_ports()[0];
    let url = test_db
        .url
        .replace(&format!(":{port}/"), &format!(":{}/", front.port()))
        + "?sslmode=require";
    let error = db::connect(&with(url.clone(), None))
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("UnknownIssuer"), "{error}");
    assert_eq!(handshakes.load(Ordering::SeqCst), 0);

    // Trusted through DATABASE_CA_FILE: connected over TLS.
    let scratch = docpipe_tests::ScratchDir::new();
    let ca_file = scratch.0.join("ca.pem");
    std::fs::write(&ca_file, cert.cert.pem()).unwrap();
    let pool = db::connect(&with(url, Some(ca_file))).await.unwrap();
    let one: i32 = pool
        .get()
        .await
        .unwrap()
        .query_one("SELECT 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(one, 1);
    assert!(handshakes.load(Ordering::SeqCst) >= 1);
}
