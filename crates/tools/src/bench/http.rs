//! `facegate bench http`: a load run of `POST /face-search` against the real server (in
//! process, on a loopback port, with a temporary store), next to one engine pass (decode,
//! detect, landmarks, embed) of the same image on the same workers, measured in the same run.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::percentiles;
use facegate_core::config::Config;
use facegate_daemon::api::{server, ApiKeys};

const KEY: &str = "bench-key";

#[derive(Debug, Clone, Serialize)]
pub struct LoadRow {
    pub clients: usize,
    pub requests: usize,
    pub ok: usize,
    /// Answered 503 ERR_BUSY (the queue was full).
    pub busy: usize,
    pub requests_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// p99 of this row over the median engine pass.
    pub p99_over_engine_pass: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct HttpReport {
    pub image: String,
    pub persons: usize,
    pub workers: usize,
    pub threads_per_worker: usize,
    pub engine_pass_ms: f64,
    pub engine_pass_p99_ms: f64,
    pub rows: Vec<LoadRow>,
}

#[derive(Debug, thiserror::Error)]
pub enum HttpBenchError {
    #[error(transparent)]
    Start(#[from] server::StartError),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Setup(String),
}

/// Enrol `persons` random templates, then measure. `requests_per_client` requests per client
/// for each concurrency level.
pub fn bench_http(
    config: &Config,
    image: &std::path::Path,
    persons: usize,
    concurrency: &[usize],
    requests_per_client: usize,
) -> Result<HttpReport, HttpBenchError> {
    let photo = std::fs::read(image)?;
    let dir = std::env::temp_dir().join(format!("facegate-bench-http-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let state = server::open_state(config.clone(), &dir, ApiKeys::new(&[KEY.to_owned()]))?;
    let (workers, threads) = server::worker_layout(config);
    state
        .store
        .create_collection("bench")
        .map_err(|e| HttpBenchError::Setup(e.to_string()))?;
    super::enrol_random(&state.store, "bench", persons, 7)
        .map_err(|e| HttpBenchError::Setup(e.to_string()))?;
    let state = Arc::new(state);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(async {
        // One engine pass at a time on the server's own workers: the reference.
        let mut passes = Vec::new();
        for _ in 0..(requests_per_client * 2).max(10) {
            let bytes = photo.clone();
            let ms = state
                .workers
                .run(move |engine| {
                    let t = Instant::now();
                    let frame = engine.decode(&bytes).ok()?;
                    let faces = engine.locate(&frame).ok()?;
                    let refs: Vec<_> = faces.iter().map(|(_, lm)| lm).collect();
                    engine.embed(&frame, &refs).ok()?;
                    Some(t.elapsed().as_secs_f64() * 1e3)
                })
                .await
                .map_err(|_| HttpBenchError::Setup("workers busy".into()))?
                .map_err(|_| HttpBenchError::Setup("worker stopped".into()))?
                .ok_or_else(|| HttpBenchError::Setup("the bench image has no face".into()))?;
            passes.push(ms);
        }
        let (pass_ms, pass_p99) = percentiles(&mut passes);

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(server::serve(listener, state.clone(), async {
            let _ = stop_rx.await;
        }));
        let body = serde_json::json!({
            "collection_name": "bench",
            "face_base_64": facegate_daemon::api::extract::encode_base64(&photo),
            "min_similarity_score": 0.7,
            "max_results": 1,
        })
        .to_string();
        let request = Arc::new(
            format!(
                "POST /face-search HTTP/1.1\r\nhost: bench\r\nx-api-key: {KEY}\r\n\
                 content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
        );
        // Warm the connection path once.
        let mut warm = TcpStream::connect(addr).await?;
        exchange(&mut warm, &request).await?;
        let mut rows = Vec::new();
        for &clients in concurrency {
            rows.push(load(addr, request.clone(), clients, requests_per_client, pass_ms).await?);
        }
        let _ = stop_tx.send(());
        let _ = serving.await;
        Ok::<_, HttpBenchError>(HttpReport {
            image: image.display().to_string(),
            persons,
            workers,
            threads_per_worker: threads,
            engine_pass_ms: pass_ms,
            engine_pass_p99_ms: pass_p99,
            rows,
        })
    });
    drop(state);
    let _ = std::fs::remove_dir_all(&dir);
    report
}

async fn load(
    addr: SocketAddr,
    request: Arc<Vec<u8>>,
    clients: usize,
    per_client: usize,
    pass_ms: f64,
) -> Result<LoadRow, HttpBenchError> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await?;
            let mut out = Vec::with_capacity(per_client);
            for _ in 0..per_client {
                let t = Instant::now();
                let status = exchange(&mut stream, &request).await?;
                out.push((status, t.elapsed().as_secs_f64() * 1e3));
            }
            Ok::<_, std::io::Error>(out)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(
            t.await
                .map_err(|e| HttpBenchError::Setup(e.to_string()))??,
        );
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut ok: Vec<f64> = all
        .iter()
        .filter(|(s, _)| *s == 200)
        .map(|(_, ms)| *ms)
        .collect();
    let busy = all.iter().filter(|(s, _)| *s == 503).count();
    let (p50, p99) = percentiles(&mut ok);
    Ok(LoadRow {
        clients,
        requests: all.len(),
        ok: ok.len(),
        busy,
        requests_per_s: ok.len() as f64 / seconds,
        p50_ms: p50,
        p99_ms: p99,
        p99_over_engine_pass: p99 / pass_ms,
    })
}

/// Send one request on a keep-alive connection and read the whole response; the status.
pub(crate) async fn exchange(stream: &mut TcpStream, request: &[u8]) -> std::io::Result<u16> {
    stream.write_all(request).await?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < header_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(status)
}

pub fn format_http_report(r: &HttpReport) -> String {
    let mut out = format!(
        "POST /face-search, {} persons enrolled, {} workers x {} thread(s); one engine pass \
         (decode+detect+landmarks+embed) of the same image: median {:.1} ms, p99 {:.1} ms\n",
        r.persons, r.workers, r.threads_per_worker, r.engine_pass_ms, r.engine_pass_p99_ms
    );
    out += &format!(
        "{:>7} {:>8} {:>6} {:>6} {:>8} {:>9} {:>9} {:>14}\n",
        "clients", "requests", "ok", "busy", "req/s", "p50 ms", "p99 ms", "p99/engine"
    );
    for row in &r.rows {
        out += &format!(
            "{:>7} {:>8} {:>6} {:>6} {:>8.2} {:>9.1} {:>9.1} {:>14.2}\n",
            row.clients,
            row.requests,
            row.ok,
            row.busy,
            row.requests_per_s,
            row.p50_ms,
            row.p99_ms,
            row.p99_over_engine_pass
        );
    }
    out
}
