//! `facegate door`: the reference door controller (verify signed access messages, drive the
//! relay) until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};

use facegate_core::clock::SystemClock;
use facegate_core::config::{Config, RelayKind};
use facegate_daemon::daemon::shutdown;
use facegate_daemon::door::relay::{Backend, GpioLine};
use facegate_daemon::door::Controller;

#[derive(clap::Args)]
pub struct Args {
    /// Folder of the controller's state (default: store.data_dir).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

pub fn run(config: &Config, args: &Args) -> Result<()> {
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| config.store.resolved_data_dir());
    let controller = Controller::from_config(config, &data_dir, Arc::new(SystemClock))?;
    let d = &config.door;
    let backend = match d.relay {
        RelayKind::Gpio => Backend::Line(Box::new(
            GpioLine::open(&d.gpio_chip, d.gpio_line, d.active_low)
                .context("the relay's GPIO line (door.gpio_chip, door.gpio_line)")?,
        )),
        RelayKind::Command => Backend::Command(d.command.clone()),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let (stop, stop_rx) = shutdown::channel();
        let mut task = tokio::spawn(controller.run(backend, stop_rx));
        // The controller ends by itself only on an error (its state cannot be read, say).
        let ended = tokio::select! {
            _ = shutdown::signals() => None,
            ended = &mut task => Some(ended),
        };
        stop.request();
        let ended = match ended {
            Some(e) => e,
            None => task.await,
        };
        ended
            .context("the controller task")?
            .map_err(anyhow::Error::from)
    })
}
