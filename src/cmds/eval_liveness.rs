//! `facegate eval-liveness`: track liveness on synthetic presentations (planar photo attacks
//! rendered through the pipeline, bona fide head motion from real faces' 3-D landmarks).

use std::path::PathBuf;

use anyhow::Result;

use facegate_core::config::Config;
use facegate_core::engine::Engine;
use facegate_core::pipeline::track_liveness::TrackLimits;

#[derive(clap::Args)]
pub struct Args {
    /// Photos with one face (files or folders): the attack sources and face models.
    #[arg(required = true)]
    photos: Vec<PathBuf>,
    #[arg(long, default_value_t = 500)]
    attacks: usize,
    #[arg(long, default_value_t = 500)]
    bona_fide: usize,
    #[arg(long, default_value_t = 8)]
    frames: usize,
    /// Include every sequence's (motion, residual) in the output.
    #[arg(long)]
    points: bool,
}

pub fn run(config: &Config, args: &Args) -> Result<()> {
    // Faces in the 640×480 frames are 90 px or more: no small-face tiles needed.
    let mut config = config.clone();
    config.detector.min_face_px = config.detector.min_face_px.max(60.0);
    let mut engine = Engine::open(&config)?;
    let mut images = Vec::new();
    for path in facegate_daemon::api::client::photo_files(&args.photos)? {
        images.push(super::read_frame(&engine, &path)?);
    }
    let progress = |done: usize, total: usize| {
        if done.is_multiple_of(100) || done == total {
            eprintln!("eval-liveness: {done}/{total} sequences");
        }
    };
    let mut report = facegate_tools::eval_liveness::evaluate(
        &mut engine,
        &images,
        args.attacks,
        args.bona_fide,
        args.frames,
        &TrackLimits::default(),
        &progress,
    )?;
    if !args.points {
        report.attack_points.clear();
        report.bona_fide_points.clear();
    }
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
