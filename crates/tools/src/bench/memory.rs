//! `facegate bench memory`: resident memory of `facegate serve` with N persons enrolled
//! (random templates, `NoStorage`), next to the same server on an empty store, after one
//! `POST /face-search` has gone through both.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use serde::Serialize;

use facegate_core::clock::SystemClock;
use facegate_core::config::{Config, EmbedderKind};
use facegate_core::engine::embedder::{fingerprint, Metric};
use facegate_core::engine::runtime::model_dir;
use facegate_core::store::{ModelId, Store, StoreOptions};

const KEY: &str = "bench-key";

#[derive(Debug, Clone, Serialize)]
pub struct MemoryReport {
    pub persons: usize,
    pub dim: usize,
    /// Size of the LMDB file.
    pub store_file_mib: f64,
    /// VmRSS of the server after start-up and one search.
    pub rss_mib: f64,
    /// VmHWM: the peak resident set.
    pub peak_rss_mib: f64,
    /// The same server on an empty store.
    pub empty_rss_mib: f64,
    pub empty_peak_rss_mib: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum MemoryBenchError {
    #[error("{0}")]
    Setup(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

fn setup<E: std::fmt::Display>(e: E) -> MemoryBenchError {
    MemoryBenchError::Setup(e.to_string())
}

pub fn bench_memory(
    config: &Config,
    exe: &Path,
    image: &Path,
    persons: usize,
) -> Result<MemoryReport, MemoryBenchError> {
    let kind = config.inference.embedder;
    let (dim, metric) = match kind {
        EmbedderKind::Arcface512 => (512, Metric::Cosine),
        EmbedderKind::Dlib128 => (128, Metric::Euclidean),
    };
    let model = ModelId {
        id: fingerprint(
            &model_dir(&config.inference),
            kind,
            config.inference.precision,
        )?,
        dim,
        metric,
    };
    let root = std::env::temp_dir().join(format!("facegate-bench-mem-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let (full, empty) = (root.join("full"), root.join("empty"));
    for (dir, n) in [(&full, persons), (&empty, 0)] {
        let store = Store::open(
            dir,
            model.clone(),
            &StoreOptions::default(),
            Arc::new(SystemClock),
        )
        .map_err(setup)?;
        store.create_collection("bench").map_err(setup)?;
        super::enrol_random(&store, "bench", n, 11).map_err(setup)?;
    }
    let photo = std::fs::read(image)?;
    let (rss, peak) = measure(exe, kind, &full, &photo)?;
    let (empty_rss, empty_peak) = measure(exe, kind, &empty, &photo)?;
    let store_file = std::fs::metadata(full.join("data.mdb"))?.len();
    let _ = std::fs::remove_dir_all(&root);
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    Ok(MemoryReport {
        persons,
        dim,
        store_file_mib: mib(store_file),
        rss_mib: mib(rss),
        peak_rss_mib: mib(peak),
        empty_rss_mib: mib(empty_rss),
        empty_peak_rss_mib: mib(empty_peak),
    })
}

/// Start `facegate serve` on `dir`, run one search, read VmRSS and VmHWM (bytes).
fn measure(
    exe: &Path,
    kind: EmbedderKind,
    dir: &PathBuf,
    photo: &[u8],
) -> Result<(u64, u64), MemoryBenchError> {
    let mut child = Command::new(exe)
        .args([
            "--embedder",
            kind.name(),
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--api-key",
            KEY,
        ])
        .arg("--data-dir")
        .arg(dir)
        .env("FACEGATE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().expect("piped");
    let mut addr = None;
    for line in BufReader::new(stdout).lines() {
        if let Some(a) = line?.strip_prefix("facegate: listening on http://") {
            addr = Some(a.to_owned());
            break;
        }
    }
    let result = (|| {
        let addr: std::net::SocketAddr = addr
            .ok_or_else(|| setup("the server did not start"))?
            .parse()
            .map_err(setup)?;
        let body = serde_json::json!({
            "collection_name": "bench",
            "face_base_64": facegate_daemon::api::extract::encode_base64(photo),
        })
        .to_string();
        let request = format!(
            "POST /face-search HTTP/1.1\r\nhost: bench\r\nx-api-key: {KEY}\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let status = runtime.block_on(async {
            let mut stream = tokio::net::TcpStream::connect(addr).await?;
            super::http::exchange(&mut stream, request.as_bytes()).await
        })?;
        if status != 200 {
            return Err(setup(format!("the search answered {status}")));
        }
        let field = |name| super::proc_status_kib(child.id(), name).unwrap_or(0) * 1024;
        Ok((field("VmRSS:"), field("VmHWM:")))
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}
