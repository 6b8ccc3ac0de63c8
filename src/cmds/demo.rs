//! `facegate demo`: the main job as a demo (what `make run` starts): finds or starts mosquitto
//! on 127.0.0.1:1883, serves the API, enrols a demo person through it, replays other photos
//! of that person and of strangers as a camera, and prints the MQTT messages.

use std::path::PathBuf;

use anyhow::{Context, Result};

use facegate_core::config::Config;
use facegate_tools::demo::{self, DemoOptions};

#[derive(clap::Args)]
pub struct Args {
    /// Folder of the demo's store, replay frames and broker config.
    #[arg(long, default_value = "data/demo")]
    data_dir: PathBuf,
    /// Folder with the fixture photos (made by `make models`); default: the checkout's
    /// tests/fixtures.
    #[arg(long)]
    photos: Option<PathBuf>,
}

pub fn run(mut config: Config, args: &Args) -> Result<()> {
    // The demo serves with its first key; the plain keys do not stay in the config.
    let api_key = std::mem::take(&mut config.server.api_keys)
        .into_iter()
        .next()
        .context("the demo needs an API key: set FACEGATE_API_KEYS (make run generates one)")?;
    demo::run(DemoOptions {
        config,
        data_dir: args.data_dir.clone(),
        photos: args.photos.clone().unwrap_or_else(super::fixture_dir),
        api_key,
    })?;
    Ok(())
}
