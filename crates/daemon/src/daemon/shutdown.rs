//! The daemon's one shutdown signal, for threads and tasks alike (after moonfire-nvr's
//! `base/shutdown.rs`). A [`Sender`] requests shutdown by [`Sender::request`] or by being
//! dropped; every [`Receiver`] clone sees it, threads by polling
//! [`Receiver::is_requested`] between units of work, async tasks by awaiting
//! [`Receiver::requested`]. Staged stops (capture and pipelines before the MQTT flush) are
//! one channel per stage, each the same kind of signal.

use tokio::sync::watch;

/// A new signal: the sender for whoever decides, receivers for whoever must stop.
pub fn channel() -> (Sender, Receiver) {
    let (tx, rx) = watch::channel(false);
    (Sender(tx), Receiver(rx))
}

/// Requests shutdown; dropping it does too (receivers see the channel closed), so a daemon
/// that is gone never leaves threads running.
#[derive(Debug)]
pub struct Sender(watch::Sender<bool>);

impl Sender {
    pub fn request(&self) {
        self.0.send_replace(true);
    }
}

#[derive(Debug, Clone)]
pub struct Receiver(watch::Receiver<bool>);

impl Receiver {
    /// Whether shutdown has been requested, or the sender is gone. Cheap: a read lock.
    pub fn is_requested(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }

    /// Resolves once shutdown is requested (or the sender is gone).
    pub async fn requested(mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

/// Resolves on SIGINT or SIGTERM (systemd's stop), after telling systemd that the service
/// is stopping.
pub async fn signals() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    super::systemd::stopping();
    tracing::info!("shutting down: finishing requests in progress");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_reaches_every_receiver() {
        let (tx, rx) = channel();
        let other = rx.clone();
        assert!(!rx.is_requested());
        tx.request();
        assert!(rx.is_requested() && other.is_requested());
    }

    #[tokio::test]
    async fn a_dropped_sender_is_a_request() {
        let (tx, rx) = channel();
        drop(tx);
        assert!(rx.is_requested());
        // Resolves rather than waiting forever.
        rx.requested().await;
    }

    #[tokio::test]
    async fn tasks_wake_on_a_request_made_before_or_after_they_wait() {
        let (tx, rx) = channel();
        let waiting = tokio::spawn(rx.clone().requested());
        tokio::task::yield_now().await;
        tx.request();
        waiting.await.unwrap();
        rx.requested().await;
    }
}
