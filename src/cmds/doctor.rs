//! `facegate doctor`: check the installation. Exit status 1 when something needs fixing.

use std::path::PathBuf;

use anyhow::{bail, Result};

use facegate_core::config::Config;
use facegate_daemon::doctor::{self, Level};

#[derive(clap::Args)]
pub struct Args {
    /// Folder of the LMDB store (default: store.data_dir).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

pub fn run(config: &Config, args: &Args) -> Result<()> {
    let dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| config.store.resolved_data_dir());
    let findings = doctor::run(config, &dir);
    for f in &findings {
        println!("{f}");
    }
    let to_fix = findings.iter().filter(|f| f.level == Level::Fix).count();
    if to_fix > 0 {
        bail!("{to_fix} thing(s) to fix");
    }
    Ok(())
}
