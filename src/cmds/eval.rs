//! `facegate eval`: verification accuracy over a CSV of `left,right,same` pairs, or, with
//! `--open-set`, open-set identification over the photos it names.

use std::path::PathBuf;

use anyhow::Result;

use facegate_core::config::Config;
use facegate_tools::{eval, eval_open_set};

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
    /// Open-set identification instead (NIST 1:N protocol on the listed photos, identity =
    /// folder): half the identities enrolled, the others' photos as strangers.
    #[arg(long)]
    open_set: bool,
    /// Seed of the open-set split.
    #[arg(long, default_value_t = 1, requires = "open_set")]
    seed: u64,
    /// Open-set: besides the standard run, runs with these numbers of enrolment photos per
    /// person (e.g. 1,2,3: only people with 4 or more photos enrolled, every run probing with
    /// the same photos).
    #[arg(long, value_delimiter = ',', default_value = "1", requires = "open_set",
          value_parser = clap::value_parser!(u32).range(1..=20))]
    enrol_photos: Vec<u32>,
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
    if args.open_set {
        let report = eval_open_set::evaluate(
            config,
            &list.images,
            args.seed,
            &args
                .enrol_photos
                .iter()
                .map(|&k| k as usize)
                .collect::<Vec<_>>(),
            threads,
            &progress,
        )?;
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let report = eval::evaluate(config, &list, threads, args.all_pairs, &progress)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
