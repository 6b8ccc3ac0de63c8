//! `facegate chips`: the embedder's input for every face of the photos (aligned, normalised
//! chips as raw little-endian f32, 3 × side × side each), to calibrate the int8 model
//! (`make models-int8`).

use std::path::PathBuf;

use anyhow::Result;

use facegate_core::config::{Config, Precision};
use facegate_core::engine::Engine;

#[derive(clap::Args)]
pub struct Args {
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    /// JPEG/PNG photos.
    #[arg(required = true)]
    photos: Vec<PathBuf>,
}

pub fn run(config: &Config, args: &Args) -> Result<()> {
    // The chips are the network's input, the same for every precision; fp32 is the model
    // that exists before `make models-int8` has run.
    let mut config = config.clone();
    config.inference.precision = Precision::Fp32;
    let mut engine = Engine::open(&config)?;
    std::fs::create_dir_all(&args.out)?;
    let mut n = 0;
    for photo in &args.photos {
        let frame = super::read_frame(&engine, photo)?;
        let located = engine.locate(&frame)?;
        let lms: Vec<_> = located.iter().map(|(_, l)| l).collect();
        for chip in engine.chips(&frame, &lms) {
            let bytes: Vec<u8> = chip.iter().flat_map(|v| v.to_le_bytes()).collect();
            std::fs::write(args.out.join(format!("chip{n:04}.f32")), bytes)?;
            n += 1;
        }
    }
    println!("{n} chips written to {}", args.out.display());
    Ok(())
}
