//! `facegate liveness`: the still-image liveness checks of each photo, every value measured.

use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;

use facegate_core::config::Config;
use facegate_core::engine::liveness::Verdict;
use facegate_core::engine::Engine;

#[derive(clap::Args)]
pub struct Args {
    images: Vec<PathBuf>,
    /// Also report the PAD model's live probability for the largest face even when the
    /// geometric checks fail (for measuring the model, never for a verdict).
    #[arg(long)]
    pad_always: bool,
}

#[derive(Serialize)]
struct Row {
    image: String,
    verdict: Verdict,
    /// With `--pad-always`: the model's probability (null without a PAD model).
    #[serde(skip_serializing_if = "Option::is_none")]
    pad_live_probability: Option<Option<f32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    face_px: Option<f32>,
}

pub fn run(config: &Config, args: &Args) -> Result<()> {
    let mut engine = Engine::open(config)?;
    let mut out = Vec::new();
    for image in &args.images {
        let frame = super::read_frame(&engine, image)?;
        let faces = engine.locate(&frame)?;
        let verdict = engine.liveness(&frame, &faces, &config.liveness)?;
        let mut row = Row {
            image: image.display().to_string(),
            verdict,
            pad_live_probability: None,
            face_px: None,
        };
        let largest = faces
            .iter()
            .max_by(|a, b| a.0.bbox.width().total_cmp(&b.0.bbox.width()));
        if let (true, Some((det, _))) = (args.pad_always, largest) {
            row.pad_live_probability = Some(engine.pad_live_probability(&frame, &det.bbox)?);
            row.face_px = Some(det.bbox.width().min(det.bbox.height()));
        }
        out.push(row);
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
