//! `facegate embed`: the template of every face in a photo, with its box and landmarks.

use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;

use facegate_core::config::Config;
use facegate_core::engine::{Engine, FivePoints};
use facegate_daemon::api::face_json::DetectedFace;

#[derive(clap::Args)]
pub struct Args {
    image: PathBuf,
}

/// A face as `detect` prints it, plus its template.
#[derive(Serialize)]
struct EmbeddedFace<'a> {
    #[serde(flatten)]
    face: DetectedFace,
    embedding: &'a [f32],
}

pub fn run(config: &Config, args: &Args) -> Result<()> {
    let mut engine = Engine::open(config)?;
    let frame = super::read_frame(&engine, &args.image)?;
    let faces = engine.analyse(&frame)?;
    let out: Vec<_> = faces
        .iter()
        .filter_map(|f| {
            Some(EmbeddedFace {
                face: DetectedFace::new(
                    &f.detection.bbox,
                    &FivePoints::from_landmarks(&f.landmarks),
                    f.detection.score,
                    frame.dimensions(),
                ),
                embedding: f.embedding.as_deref()?,
            })
        })
        .collect();
    println!("{}", serde_json::to_string(&out)?);
    Ok(())
}
