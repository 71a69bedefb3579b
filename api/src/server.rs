//! The local server (`docpipe-api`): the router over HTTP/1.1 with the
//! timeouts a server open to untrusted clients needs. (In AWS, API Gateway
//! stands in front of the function and enforces its own.)

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::time::Duration;
use tokio::net::TcpListener;
use tower_http::timeout::TimeoutLayer;

#[derive(Debug, Clone, Copy)]
pub struct ServerTimeouts {
    /// A client must send its request line and headers within this: a
    /// connection that trickles them (or sends nothing) is closed, so
    /// half-open connections cannot pile up.
    pub header_read: Duration,
    /// The whole request, body and answer included (408 after it).
    pub request: Duration,
}

impl Default for ServerTimeouts {
    fn default() -> Self {
        ServerTimeouts {
            header_read: Duration::from_secs(10),
            request: Duration::from_secs(60),
        }
    }
}

/// Serves `app` on `listener` until accepting fails.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    timeouts: ServerTimeouts,
) -> std::io::Result<()> {
    let app = app.layer(TimeoutLayer::with_status_code(
        axum::http::StatusCode::REQUEST_TIMEOUT,
        timeouts.request,
    ));
    loop {
        let (stream, _) = listener.accept().await?;
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(timeouts.header_read);
            // A client that goes away or times out ends only its connection.
            let _ = http.serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_client_that_trickles_its_headers_is_cut_off() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let timeouts = ServerTimeouts {
            header_read: Duration::from_millis(300),
            request: Duration::from_secs(5),
        };
        let app = Router::new().route("/", get(|| async { "ok" }));
        tokio::spawn(serve(listener, app, timeouts));

        // Half-open: a request line and no end of headers.
        let mut slow = tokio::net::TcpStream::connect(address).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let mut rest = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(3), slow.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "the server kept a half-open connection");

        // A whole request is answered.
        let mut good = tokio::net::TcpStream::connect(address).await.unwrap();
        good.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        good.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
}
