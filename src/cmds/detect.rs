//! `facegate detect`: boxes, five landmarks and detection scores of every face in a photo.

use std::path::PathBuf;

use anyhow::Result;

use facegate_core::config::Config;
use facegate_core::engine::{Engine, FivePoints};
use facegate_daemon::api::face_json::DetectedFace;

#[derive(clap::Args)]
pub struct Args {
    image: PathBuf,
}

pub fn run(config: &Config, args: &Args) -> Result<()> {
    // Detection and landmarks only: no embedding is computed for `detect`.
    let mut engine = Engine::open(config)?;
    let frame = super::read_frame(&engine, &args.image)?;
    let out: Vec<_> = engine
        .locate(&frame)?
        .iter()
        .map(|(d, lm)| {
            DetectedFace::new(
                &d.bbox,
                &FivePoints::from_landmarks(lm),
                d.score,
                frame.dimensions(),
            )
        })
        .collect();
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
