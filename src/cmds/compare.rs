//! `facegate compare`: the similarity of the most central face of two photos.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use serde::Serialize;

use facegate_core::config::Config;
use facegate_core::engine::{most_central, Engine};

#[derive(clap::Args)]
pub struct Args {
    a: PathBuf,
    b: PathBuf,
    /// Similarity score at or above which the faces count as the same person.
    #[arg(long, default_value_t = 0.7)]
    min_similarity: f32,
}

#[derive(Serialize)]
struct Comparison {
    similarity_score: f64,
    is_match: bool,
    embedder: &'static str,
    /// The metric's own value, under its name (`cosine` or `distance`).
    #[serde(flatten)]
    raw: std::collections::BTreeMap<&'static str, f64>,
}

pub fn run(config: &Config, args: &Args) -> Result<()> {
    let mut engine = Engine::open(config)?;
    let ta = central_template(&mut engine, &args.a)?;
    let tb = central_template(&mut engine, &args.b)?;
    let raw = engine.compare(&ta, &tb);
    let score = engine.calibration().score(raw);
    let out = Comparison {
        similarity_score: round4(score),
        is_match: score >= args.min_similarity,
        embedder: engine.embedder_kind().name(),
        raw: [(engine.metric().raw_name(), round4(raw))].into(),
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// Rounded for printing: scores to four decimals.
fn round4(v: f32) -> f64 {
    (v as f64 * 10000.0).round() / 10000.0
}

fn central_template(engine: &mut Engine, path: &Path) -> Result<Vec<f32>> {
    let frame = super::read_frame(engine, path)?;
    let faces = engine.analyse(&frame)?;
    let Some(face) = most_central(&faces, frame.width(), frame.height()) else {
        bail!("no face found in {}", path.display());
    };
    match &face.embedding {
        Some(t) => Ok(t.clone()),
        None => bail!("the face in {} could not be aligned", path.display()),
    }
}
