//! The HTTP listener. hyper is driven directly (not through `axum::serve`) because the
//! appliance sits on a shared LAN and must keep serving while hostile clients try to hold it:
//!
//! - at most `server.max_connections` connections are open; one more is answered
//!   `503 ERR_BUSY` at once and closed, so file descriptors never run out;
//! - a client has `server.header_read_timeout_s` to send a request's headers, counted from
//!   the connection's start and again from the end of each response (hyper starts the timer
//!   whenever it waits for a request head), which also closes idle keep-alive connections;
//! - the TLS handshake has the same budget;
//! - the whole request, body upload included, has `server.request_timeout_s` (the
//!   `request_deadline` middleware of the router);
//! - a response the client stops reading fails after [`WRITE_STALL`] without progress, so a
//!   client with a closed receive window cannot hold a connection either;
//! - HTTPS with rustls when `server.tls_cert_file`/`tls_key_file` are set, the certificate
//!   and key read again on SIGHUP (a bad new pair is logged and the old one kept).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower_service::Service;

use super::{router, AppState};
use facegate_core::config::{path_text, ServerConfig};

/// A response write that makes no progress for this long fails and closes the connection.
pub const WRITE_STALL: Duration = Duration::from_secs(30);
/// On shutdown, how long requests in progress may take to finish before their connections
/// are dropped: the daemon still has to stop its cameras and flush the outbox within
/// systemd's stop timeout (20 s).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Refusals (503 answers to connections over the cap) in progress at most; past that a
/// connection over the cap is closed at once, so a flood cannot turn refusals into the file
/// descriptors the cap protects.
const MAX_REFUSING: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{what} {path} holds no PEM {expected}")]
    Empty {
        what: &'static str,
        path: String,
        expected: &'static str,
    },
    #[error("the certificate and key of server.tls_cert_file / tls_key_file do not work: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The rustls configuration built from the configured PEM files.
pub fn load_tls(server: &ServerConfig) -> Result<Option<Arc<rustls::ServerConfig>>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let read = |what, path: &Option<std::path::PathBuf>| {
        std::fs::read(path.as_deref().unwrap_or(std::path::Path::new(""))).map_err(|source| {
            TlsError::Read {
                what,
                path: path_text(path),
                source,
            }
        })
    };
    if server.tls_cert_file.is_none() {
        return Ok(None);
    }
    let cert_pem = read("server.tls_cert_file", &server.tls_cert_file)?;
    let key_pem = read("server.tls_key_file", &server.tls_key_file)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&cert_pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::Empty {
            what: "server.tls_cert_file",
            path: path_text(&server.tls_cert_file),
            expected: "CERTIFICATE",
        });
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::Empty {
        what: "server.tls_key_file",
        path: path_text(&server.tls_key_file),
        expected: "PRIVATE KEY",
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Arc::new(config)))
}

/// Whether the API is served over TLS, and a warning when it is reachable from the network in
/// plain text (for `/health` and `facegate doctor`).
pub fn transport_json(server: &ServerConfig) -> serde_json::Value {
    let tls = server.tls_cert_file.is_some();
    serde_json::json!({
        "listen": server.listen,
        "tls": tls,
        "warning": plaintext_warning(server),
    })
}

/// The warning for plain HTTP on a non-loopback address, if that is the case.
pub fn plaintext_warning(server: &ServerConfig) -> Option<String> {
    let addr = server.listen;
    (server.tls_cert_file.is_none() && !addr.ip().is_loopback()).then(|| {
        format!(
            "the API listens on {addr} without TLS: API keys, photos and templates cross the \
             network in clear text (set server.tls_cert_file and server.tls_key_file)"
        )
    })
}

/// Serve `state` on `listener` until `shutdown` resolves; open requests get
/// [`SHUTDOWN_GRACE`] to finish.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let config = state.config.server.clone();
    let tls = load_tls(&config)
        .map_err(std::io::Error::other)?
        .map(|c| Arc::new(RwLock::new(TlsAcceptor::from(c))));
    // Always handled: SIGHUP's default action would end the daemon (`systemctl reload`).
    tokio::spawn(reload_on_sighup(tls.clone(), config.clone()));
    if let Some(w) = plaintext_warning(&config) {
        tracing::warn!("{w}");
    }
    let app = router(state.clone());
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let header_timeout = Duration::from_secs(config.header_read_timeout_s.max(1) as u64);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning on the error.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            state.metrics.connections_refused.inc();
            if let Ok(refusal) = refusing.clone().try_acquire_owned() {
                tokio::spawn(async move {
                    refuse(stream).await;
                    drop(refusal);
                });
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            app.clone().call(req)
        });
        let http = http.clone();
        let watcher = graceful.watcher();
        let acceptor = tls.as_ref().map(|t| t.read().unwrap().clone());
        let open = OpenConnection::new(state.clone(), permit);
        tokio::spawn(async move {
            let _open = open;
            match acceptor {
                None => {
                    let io = TokioIo::new(WriteStallTimeout::new(stream));
                    let _ = watcher.watch(http.serve_connection(io, service)).await;
                }
                Some(acceptor) => {
                    match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls_stream)) => {
                            let io = TokioIo::new(WriteStallTimeout::new(tls_stream));
                            let _ = watcher.watch(http.serve_connection(io, service)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_s = SHUTDOWN_GRACE.as_secs(),
            "requests still running at shutdown were cut off"
        );
    }
    Ok(())
}

/// One open client connection: its slot under `server.max_connections` and the gauge, both
/// given back when the connection's task ends, however it ends.
struct OpenConnection {
    state: Arc<AppState>,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl OpenConnection {
    fn new(state: Arc<AppState>, slot: tokio::sync::OwnedSemaphorePermit) -> Self {
        state.metrics.connections_open.inc();
        Self { state, _slot: slot }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.state.metrics.connections_open.dec();
    }
}

/// A stream whose writes fail with `TimedOut` after [`WRITE_STALL`] without progress.
struct WriteStallTimeout<S> {
    inner: S,
    stall: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteStallTimeout<S> {
    fn new(inner: S) -> Self {
        Self { inner, stall: None }
    }

    /// After a pending write: arm the timer if it is not running; fail once it has fired.
    fn stalled(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Error> {
        let timer = self
            .stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(WRITE_STALL)));
        timer.as_mut().poll(cx).map(|()| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client stopped reading the response",
            )
        })
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteStallTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteStallTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Pending => self.stalled(cx).map(Err),
            ready => {
                self.stall = None;
                ready
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Pending => self.stalled(cx).map(Err),
            ready => {
                self.stall = None;
                ready
            }
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The answer to a connection over the cap: `503 ERR_BUSY`, then close. Bounded in time, so a
/// client that never reads cannot hold this task either.
async fn refuse(mut stream: TcpStream) {
    let body = super::error::ApiError::busy(1).body();
    let json = serde_json::to_string(&body).unwrap_or_default();
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{json}",
        json.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
        // Read what the client sent until it closes: closing with unread data would reset
        // the connection, and the client could see the reset instead of the 503.
        let mut sink = [0u8; 1024];
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// Read the certificate and key again on every SIGHUP; keep the old pair if the new one fails.
/// Without TLS there is nothing to reload, and SIGHUP is only logged.
async fn reload_on_sighup(current: Option<Arc<RwLock<TlsAcceptor>>>, config: ServerConfig) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        let Some(current) = &current else {
            tracing::info!("SIGHUP: nothing to reload (no TLS certificate configured)");
            continue;
        };
        match load_tls(&config) {
            Ok(Some(c)) => {
                *current.write().unwrap() = TlsAcceptor::from(c);
                tracing::info!(cert = %path_text(&config.tls_cert_file), "TLS certificate reloaded (SIGHUP)");
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "TLS reload failed; keeping the previous certificate")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_warned_about_only_where_the_network_can_reach_it() {
        let mut s = ServerConfig::default();
        assert_eq!(plaintext_warning(&s), None, "loopback");
        for listen in ["0.0.0.0:8080", "192.0.2.10:8080", "[::]:8080"] {
            s.listen = listen.parse().unwrap();
            let w = plaintext_warning(&s).unwrap_or_default();
            assert!(w.contains("without TLS"), "{listen}: {w}");
            assert_eq!(transport_json(&s)["warning"], serde_json::json!(w));
        }
        s.tls_cert_file = Some("/etc/facegate/cert.pem".into());
        assert_eq!(plaintext_warning(&s), None, "HTTPS");
        assert_eq!(transport_json(&s)["tls"], true);
    }
}
