//! One module per `facegate` command, each with its own typed arguments and a `run`. What
//! more than one command needs (the global flags, reading a photo, default file locations)
//! lives here.

pub mod audit;
pub mod bench;
pub mod chips;
pub mod compare;
pub mod demo;
pub mod detect;
pub mod doctor;
pub mod door;
pub mod embed;
pub mod enroll;
pub mod eval;
pub mod eval_liveness;
pub mod liveness;
pub mod serve;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use facegate_core::config::EmbedderKind;
use facegate_core::engine::Engine;

/// Flags every command takes.
#[derive(clap::Args)]
pub struct GlobalArgs {
    /// Configuration file (TOML). Without it the built-in defaults apply.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Use this embedder instead of the configured one: arcface512 or dlib128.
    #[arg(long, global = true, value_name = "NAME")]
    pub embedder: Option<EmbedderKind>,
}

/// Decode a photo with the engine's limits.
pub fn read_frame(engine: &Engine, path: &Path) -> Result<image::RgbImage> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    engine
        .decode(&bytes)
        .with_context(|| format!("{}", path.display()))
}

/// The fixture photos `make models` puts in a checkout's `tests/fixtures`: the working
/// directory's, else the one of the checkout the executable was built in (found beside the
/// executable, as the models are), else `tests/fixtures` as given. Nothing of the build
/// machine is compiled in.
pub fn fixture_dir() -> PathBuf {
    let relative = Path::new("tests/fixtures");
    if relative.is_dir() {
        return relative.to_owned();
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| facegate_core::engine::runtime::near_executable(&exe, relative))
        .unwrap_or_else(|| relative.to_owned())
}

/// A fixture photo by file name (see [`fixture_dir`]).
pub fn fixture(name: &str) -> PathBuf {
    fixture_dir().join(name)
}
