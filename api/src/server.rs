//! The local server (`docpipe-api`): the router over HTTP/1.1 with the
//! timeouts and the connection cap a server open to untrusted clients
//! needs. (In AWS, API Gateway stands in front of the function and enforces
//! its own.)

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower_http::timeout::TimeoutLayer;

/// Headers hyper takes before it refuses a request itself (431, no body):
/// above the router's own limit, so that the router answers with the error
/// JSON. (Past hyper's fixed limits, a 64 KiB target or a 400 KiB head, its
/// bodiless 414/431 remain.)
const SERVER_MAX_HEADERS: usize = 4 * crate::routes::MAX_HEADERS;

/// How long accepting waits after it failed (out of file descriptors, a
/// connection reset before it was taken) before it tries again.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// A client must send its request line and headers within this: a
    /// connection that trickles them (or sends nothing) is closed, so
    /// half-open connections cannot pile up.
    pub header_read: Duration,
    /// The whole request, body and answer included (408 after it).
    pub request: Duration,
    /// Connections served at once (`API_MAX_CONNECTIONS`); more wait in the
    /// listen backlog until one closes. Below the process's open-file limit,
    /// so a flood never takes the descriptors the database and S3 need.
    pub max_connections: usize,
}

impl ServerLimits {
    pub fn new(max_connections: usize) -> Self {
        ServerLimits {
            header_read: Duration::from_secs(10),
            request: Duration::from_secs(60),
            max_connections,
        }
    }
}

/// Serves `app` on `listener` for as long as the process runs: a failure to
/// accept is logged and retried, never the end of the server.
pub async fn serve(listener: TcpListener, app: Router, limits: ServerLimits) {
    let app = app.layer(TimeoutLayer::with_status_code(
        axum::http::StatusCode::REQUEST_TIMEOUT,
        limits.request,
    ));
    let open = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    loop {
        let permit = Arc::clone(&open)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "could not accept a connection; trying again");
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(limits.header_read)
                .max_headers(SERVER_MAX_HEADERS);
            // A client that goes away or times out ends only its connection.
            let _ = http.serve_connection(TokioIo::new(stream), service).await;
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn served(limits: ServerLimits) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let app = Router::new().route("/", get(|| async { "ok" }));
        (address, tokio::spawn(serve(listener, app, limits)))
    }

    /// One whole request; its answer's first line.
    async fn request(address: SocketAddr) -> String {
        let mut good = TcpStream::connect(address).await.unwrap();
        good.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        good.read_to_string(&mut answer).await.unwrap();
        answer.lines().next().unwrap_or_default().to_string()
    }

    fn quick(max_connections: usize) -> ServerLimits {
        ServerLimits {
            header_read: Duration::from_millis(300),
            request: Duration::from_secs(5),
            max_connections,
        }
    }

    /// A head past the router's limits but within the server's reaches the
    /// router, which answers it with the error JSON; the server's own
    /// refusals (hyper's 414/431) have no body.
    #[tokio::test]
    async fn heads_within_the_servers_limits_reach_the_router() {
        let (address, _server) = served(quick(64)).await;
        let mut client = TcpStream::connect(address).await.unwrap();
        let mut head = format!("GET /?q={} HTTP/1.1\r\nHost: x\r\n", "q".repeat(20_000));
        for i in 0..300 {
            head.push_str(&format!("x-filler-{i}: 1\r\n"));
        }
        head.push_str("Connection: close\r\n\r\n");
        client.write_all(head.as_bytes()).await.unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    #[tokio::test]
    async fn a_client_that_trickles_its_headers_is_cut_off() {
        let (address, _server) = served(quick(64)).await;

        // Half-open: a request line and no end of headers.
        let mut slow = TcpStream::connect(address).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let mut rest = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(3), slow.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "the server kept a half-open connection");

        // A whole request is answered.
        assert_eq!(request(address).await, "HTTP/1.1 200 OK");
    }

    /// The red team's flood: idle connections, no key, until the process
    /// runs out of file descriptors. (nextest runs each test in a process
    /// of its own, so the lowered limit is this test's alone.)
    #[tokio::test]
    async fn a_flood_past_the_open_file_limit_does_not_end_the_server() {
        let limit = libc::rlimit {
            rlim_cur: 256,
            rlim_max: 256,
        };
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
        // A cap above the limit: accepting itself runs out of descriptors.
        let (address, server) = served(quick(10_000)).await;
        let mut flood = Vec::new();
        while flood.len() < 1_000 {
            match TcpStream::connect(address).await {
                Ok(stream) => flood.push(stream),
                Err(_) => break, // this process is out of descriptors too
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!server.is_finished(), "the flood ended the server");
        drop(flood);
        let answered = tokio::time::timeout(Duration::from_secs(10), request(address)).await;
        assert_eq!(answered.as_deref(), Ok("HTTP/1.1 200 OK"));
        assert!(!server.is_finished());
    }

    #[tokio::test]
    async fn connections_past_the_cap_wait_until_one_closes() {
        let limits = ServerLimits {
            header_read: Duration::from_secs(30),
            ..quick(2)
        };
        let (address, _server) = served(limits).await;
        let idle = [
            TcpStream::connect(address).await.unwrap(),
            TcpStream::connect(address).await.unwrap(),
        ];
        tokio::time::sleep(Duration::from_millis(100)).await;
        let waiting = tokio::spawn(request(address));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            !waiting.is_finished(),
            "a third connection was served at a cap of 2"
        );
        drop(idle);
        let answered = tokio::time::timeout(Duration::from_secs(5), waiting).await;
        assert_eq!(answered.unwrap().unwrap(), "HTTP/1.1 200 OK");
    }
}
