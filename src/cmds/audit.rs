//! `facegate audit verify`: check the event log's hash chain and name the first bad record.

use std::path::PathBuf;

use anyhow::{bail, Result};

use facegate_core::audit::EventLog;
use facegate_core::config::Config;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(clap::Subcommand)]
pub enum Action {
    /// Check every record's hash and link; prints a summary as JSON, exits 1 naming the first
    /// record that was edited or deleted.
    Verify {
        /// Folder of the store (default: store.data_dir); the log is its `events` folder.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
}

pub fn run(config: &Config, args: &Args) -> Result<()> {
    match &args.action {
        Action::Verify { data_dir } => {
            let dir = data_dir
                .clone()
                .unwrap_or_else(|| config.store.resolved_data_dir())
                .join("events");
            if !dir.join("data.mdb").exists() {
                bail!("no event log in {}", dir.display());
            }
            let log = EventLog::open(
                &dir,
                config.events.max_events,
                config.events.max_age_days,
                config.events.map_mib,
            )?;
            match log.verify()? {
                Ok(v) => {
                    println!("{}", serde_json::to_string_pretty(&v)?);
                    Ok(())
                }
                Err(broken) => {
                    println!("{}", serde_json::to_string_pretty(&broken)?);
                    bail!("the event log's chain is broken at {broken}")
                }
            }
        }
    }
}
