//! systemd integration (`Type=notify`): `READY=1` once models, store, API listener, cameras and
//! the MQTT client are up; `WATCHDOG=1` only while every camera thread is alive, so a wedged
//! capture or inference thread gets the service restarted; `STOPPING=1` on shutdown. Outside
//! systemd (no `NOTIFY_SOCKET`) every call is a no-op.

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;

use super::DaemonStatus;

pub fn ready(status: &str) {
    if let Err(e) = sd_notify::notify(&[NotifyState::Status(status), NotifyState::Ready]) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

pub fn stopping() {
    let _ = sd_notify::notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// Pet the watchdog at half its period while no camera thread is stuck for a whole period.
/// Returns at once when systemd has no watchdog for this service.
pub async fn watchdog(status: Arc<DaemonStatus>) {
    let Some(period) = sd_notify::watchdog_enabled() else {
        return;
    };
    tracing::info!(period = ?period, "systemd watchdog enabled");
    let mut tick = tokio::time::interval((period / 2).max(Duration::from_millis(100)));
    let mut reported = false;
    loop {
        tick.tick().await;
        match status.stuck(period) {
            None => {
                reported = false;
                let _ = sd_notify::notify(&[NotifyState::Watchdog]);
            }
            Some(why) => {
                if !reported {
                    tracing::error!(%why, "not petting the systemd watchdog: the service will be restarted");
                    let _ = sd_notify::notify(&[NotifyState::Status(&format!("stuck: {why}"))]);
                    reported = true;
                }
            }
        }
    }
}
