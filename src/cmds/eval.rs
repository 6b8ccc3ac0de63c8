//! `facegate eval`: verification accuracy over a CSV of `left,right,same` pairs.

use std::path::PathBuf;

use anyhow::Result;

use facegate_core::config::Config;
use facegate_tools::eval;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, value_name = "FILE.csv")]
    pairs: PathBuf,
    /// Also score every pair of the listed images (identity = folder name).
    #[arg(long)]
    all_pairs: bool,
    /// Worker threads (one engine each); default: every core.
    #[arg(long)]
    threads: Option<usize>,
}

pub fn run(config: &Config, args: &Args) -> Result<()> {
    let list = eval::read_pairs(&args.pairs)?;
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let progress = |done: usize, total: usize| {
        if done.is_multiple_of(250) || done == total {
            eprintln!("eval: {done}/{total} images");
        }
    };
    let report = eval::evaluate(config, &list, threads, args.all_pairs, &progress)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
