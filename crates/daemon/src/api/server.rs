//! Starting the API: inference workers, the store, and the listener with graceful shutdown.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpListener;

use super::{metrics::Metrics, ApiKeys, AppState};
use facegate_core::clock::SystemClock;
use facegate_core::config::{Config, Precision};
use facegate_core::engine::precision::{self, Settled};
use facegate_core::engine::runtime::Runtime;
use facegate_core::engine::workers::InferenceWorkers;
use facegate_core::engine::EngineError;
use facegate_core::store::{ModelId, Store, StoreError, StoreOptions};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("event log: {0}")]
    Audit(#[from] facegate_core::audit::AuditError),
    #[error("strangers: {0}")]
    Strangers(#[from] facegate_core::strangers::StrangerError),
}

/// Workers and threads per ONNX Runtime session for this machine: `server.inference_workers`
/// (0: one per core, at most 4), and the cores shared out between them when
/// `inference.threads` is 0, so that concurrent requests do not oversubscribe the CPU.
pub fn worker_layout(config: &Config) -> (usize, usize) {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let workers = match config.server.inference_workers {
        0 => cores.clamp(1, 4),
        n => n,
    };
    let threads = match config.inference.threads {
        0 => (cores / workers).max(1),
        n => n,
    };
    (workers, threads)
}

/// Open the engines and the store in `data_dir`.
pub fn open_state(
    mut config: Config,
    data_dir: &Path,
    keys: ApiKeys,
) -> Result<AppState, StartError> {
    let (workers, threads) = worker_layout(&config);
    if config.inference.precision == Precision::Auto {
        let mut timing_config = config.clone();
        timing_config.inference.threads = threads;
        // Settled once, for every engine of this process: the API workers here, and the
        // cameras' engines, which the main job builds from `AppState::config`.
        config.inference.precision = auto_precision(&timing_config, data_dir)?;
    }
    let mut engine_config = config.clone();
    engine_config.inference.threads = threads;
    let workers = InferenceWorkers::start(&engine_config, workers, config.server.inference_queue)?;
    let info = workers.info();
    let model = ModelId {
        id: info.fingerprint.clone(),
        dim: info.dimension,
        metric: info.metric,
    };
    let options = StoreOptions {
        // Saturating: on a 32-bit board 16384 MiB does not fit in a usize.
        map_size: config.store.map_size_mib.saturating_mul(1 << 20),
        max_map_size: config.store.max_map_mib.saturating_mul(1 << 20),
        max_faces_per_person: config.store.max_faces_per_person,
        ..StoreOptions::default()
    };
    let store = Store::open(data_dir, model, &options, Arc::new(SystemClock))?;
    let audit = if config.events.enabled {
        Some(Arc::new(facegate_core::audit::EventLog::open(
            &data_dir.join("events"),
            config.events.max_events,
            config.events.max_age_days,
            config.events.map_mib,
        )?))
    } else {
        None
    };
    let strangers = if config.strangers.enabled {
        let s = &config.strangers;
        Some(Arc::new(facegate_core::strangers::Strangers::open(
            &data_dir.join("strangers"),
            facegate_core::strangers::Limits {
                max_count: s.max_count,
                max_age_ms: i64::from(s.max_age_days) * 86_400_000,
                faces_kept: s.faces_kept,
            },
            s.map_mib,
            &info.fingerprint,
        )?))
    } else {
        None
    };
    let throttle = super::auth::AuthThrottle::new(
        config.server.auth_failures_per_minute,
        config.server.auth_failures_per_minute_global,
    );
    Ok(AppState {
        config,
        store: Arc::new(store),
        workers,
        throttle,
        keys,
        metrics: Metrics::new(),
        started: Instant::now(),
        daemon: std::sync::OnceLock::new(),
        audit,
        strangers,
        live: Default::default(),
    })
}

/// `inference.precision = "auto"`: the model recorded with the store in `data_dir`; for a new
/// store, the faster of the embedder's models on this device, timed now (engine::precision).
fn auto_precision(config: &Config, data_dir: &Path) -> Result<Precision, StartError> {
    let runtime = Runtime::load(&config.inference).map_err(EngineError::from)?;
    let recorded = Store::recorded_model(data_dir)?;
    let settled = precision::settle(&runtime, &config.inference, recorded.as_deref())?;
    match &settled {
        Settled::Timed(choice) => tracing::info!(
            precision = ?choice.precision,
            fp32_ms = ?choice.median_ms(Precision::Fp32),
            int8_ms = ?choice.median_ms(Precision::Int8),
            reason = %choice.reason,
            "precision: both models timed for the new store, the choice is recorded with it"
        ),
        Settled::Recorded { precision, model } => {
            tracing::info!(precision = ?precision, model = %model, "precision: the one recorded with the store")
        }
        Settled::Configured(_) => {}
    }
    Ok(settled.precision())
}

/// Serve until `shutdown` resolves; requests in progress are finished first (see
/// [`super::listener`] for the connection limits and timeouts).
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    super::listener::serve(listener, state, shutdown).await
}
