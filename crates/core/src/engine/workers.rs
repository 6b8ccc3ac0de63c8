//! Inference workers: each owns one [`Engine`] on its own OS thread (ort's `Session::run`
//! takes `&mut self`), fed from one bounded queue. A job that finds the queue full is refused
//! at once ([`Busy`]) instead of waiting, so an overloaded board answers `ERR_BUSY` rather
//! than piling up requests; async callers never run inference on executor threads.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_channel::{bounded, Sender, TrySendError};

use super::{Engine, EngineError};
use crate::config::Config;

type Job = Box<dyn FnOnce(&mut Engine) + Send>;

/// The queue was full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("every inference worker is busy and the queue is full")]
pub struct Busy;

/// The job was lost because its worker stopped (a panic in inference).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the inference worker stopped")]
pub struct WorkerGone;

/// Facts about the engines the workers run, for health and the store.
#[derive(Debug, Clone)]
pub struct EngineInfo {
    pub embedder: &'static str,
    pub fingerprint: String,
    pub dimension: usize,
    pub metric: super::embedder::Metric,
    pub calibration: super::similarity::Calibration,
    pub providers: Vec<(&'static str, &'static str)>,
}

pub struct InferenceWorkers {
    sender: Sender<Job>,
    workers: usize,
    capacity: usize,
    /// Jobs accepted and not yet finished (queued or running).
    in_flight: Arc<AtomicUsize>,
    info: EngineInfo,
}

impl InferenceWorkers {
    /// Open `workers` engines (failing fast if a model or the library is wrong) and start a
    /// thread for each. `queue` jobs may wait beyond the ones running.
    pub fn start(config: &Config, workers: usize, queue: usize) -> Result<Self, EngineError> {
        let workers = workers.max(1);
        let runtime = super::runtime::Runtime::load(&config.inference)?;
        let mut engines = Vec::with_capacity(workers);
        for _ in 0..workers {
            engines.push(Engine::with_runtime(&runtime, config)?);
        }
        let first = &engines[0];
        let info = EngineInfo {
            embedder: first.embedder_kind().name(),
            fingerprint: first.fingerprint().to_owned(),
            dimension: first.dimension(),
            metric: first.metric(),
            calibration: *first.calibration(),
            providers: first.providers(),
        };
        let (sender, receiver) = bounded::<Job>(queue);
        let in_flight = Arc::new(AtomicUsize::new(0));
        for (n, mut engine) in engines.into_iter().enumerate() {
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("inference-{n}"))
                .spawn(move || {
                    // Ends when every sender is dropped (shutdown).
                    for job in receiver {
                        job(&mut engine);
                    }
                })
                .map_err(|e| EngineError::Inference(format!("cannot start a worker: {e}")))?;
        }
        Ok(Self {
            sender,
            workers,
            capacity: queue,
            in_flight,
            info,
        })
    }

    pub fn info(&self) -> &EngineInfo {
        &self.info
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    pub fn queue_capacity(&self) -> usize {
        self.capacity
    }

    /// Jobs queued or running now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Run `f` on a worker and wait for its result without blocking the executor.
    pub async fn run<R, F>(&self, f: F) -> Result<Result<R, WorkerGone>, Busy>
    where
        R: Send + 'static,
        F: FnOnce(&mut Engine) -> R + Send + 'static,
    {
        let (tx, rx) = futures_channel::oneshot::channel();
        let in_flight = self.in_flight.clone();
        let job: Job = Box::new(move |engine| {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(engine)));
            in_flight.fetch_sub(1, Ordering::Relaxed);
            if let Ok(r) = result {
                let _ = tx.send(r);
            }
        });
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        match self.sender.try_send(job) {
            Ok(()) => Ok(rx.await.map_err(|_| WorkerGone)),
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.in_flight.fetch_sub(1, Ordering::Relaxed);
                Err(Busy)
            }
        }
    }
}
