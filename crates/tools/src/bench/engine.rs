//! Per-stage latency of the face engine on 1280×720 frames (`facegate bench engine`), measured side by side.

use std::time::Instant;

use image::{imageops, RgbImage};
use serde::Serialize;

use facegate_core::config::{Config, DetectorConfig, EmbedderKind, Precision};
use facegate_core::engine::align::{chip_to_frame, cut_chip};
use facegate_core::engine::detector::Detector;
use facegate_core::engine::embedder::{Embedder, OnnxEmbedder};
use facegate_core::engine::runtime::Runtime;
use facegate_core::engine::{Engine, EngineError};

/// Place `photo` on a 1280×720 canvas, scaled to fit, as a camera frame would show it.
pub fn frame_1280x720(photo: &RgbImage) -> RgbImage {
    let (w, h) = (1280u32, 720u32);
    let s = (w as f32 / photo.width() as f32).min(h as f32 / photo.height() as f32);
    let (pw, ph) = (
        (photo.width() as f32 * s) as u32,
        (photo.height() as f32 * s) as u32,
    );
    let scaled = imageops::resize(photo, pw, ph, imageops::FilterType::Triangle);
    let mut canvas = RgbImage::from_pixel(w, h, image::Rgb([90, 90, 90]));
    imageops::overlay(
        &mut canvas,
        &scaled,
        ((w - pw) / 2) as i64,
        ((h - ph) / 2) as i64,
    );
    canvas
}

#[derive(Debug, Clone, Serialize)]
pub struct StageTimes {
    pub embedder: &'static str,
    pub threads: String,
    pub frame: String,
    pub faces: usize,
    /// Median milliseconds per call, per stage; landmarks/align/embed are per frame (all faces).
    pub decode_ms: f64,
    /// Both detector ranges over the whole frame only (what a camera with large faces needs).
    pub detect_single_pass_ms: f64,
    /// As configured: plus the tiles that find faces down to `detector.min_face_px`.
    pub detect_ms: f64,
    pub landmarks_ms: f64,
    pub align_ms: f64,
    /// Embedding inference for every face and its mirror, in one batch (alignment excluded).
    pub embed_ms: f64,
    pub per_face_ms: f64,
    pub total_ms: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn time<T>(samples: &mut Vec<f64>, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let out = f();
    samples.push(t.elapsed().as_secs_f64() * 1000.0);
    out
}

/// Time every stage `iterations` times on one encoded frame.
pub fn bench_frame(
    runtime: &Runtime,
    config: &Config,
    label: &str,
    jpeg: &[u8],
    iterations: usize,
) -> Result<StageTimes, EngineError> {
    let mut engine = Engine::with_runtime(runtime, config)?;
    let mut detector = Detector::open(runtime, &config.detector)?;
    let mut single_pass = Detector::open(
        runtime,
        &DetectorConfig {
            min_face_px: 0.0,
            ..config.detector.clone()
        },
    )?;
    let mut single = Vec::new();
    let mut embedder = OnnxEmbedder::open(
        runtime,
        config.inference.embedder,
        config.inference.precision,
        config.inference.mirror_average,
    )?;
    let (mut dec, mut det, mut lm, mut al, mut emb) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut faces = 0;
    let iterations = iterations.max(1); // a median needs at least one sample
    for i in 0..iterations + 2 {
        let warm = i < 2; // first runs allocate and optimise; not counted
        let mut d = Vec::new();
        let frame = time(&mut d, || engine.decode(jpeg))?;
        let detections = time(&mut d, || detector.detect(&frame))?;
        let mut s = Vec::new();
        time(&mut s, || single_pass.detect(&frame))?;
        let mut lms = Vec::new();
        time(&mut d, || -> Result<(), EngineError> {
            for det in &detections {
                lms.push(engine.landmarks(&frame, det)?);
            }
            Ok(())
        })?;
        let template = *embedder.template();
        let mut chip = vec![0f32; 3 * template.size * template.size];
        time(&mut d, || {
            for l in &lms {
                if let Some(m) = chip_to_frame(&template, l) {
                    cut_chip(&frame, &template, &m, &mut chip);
                }
            }
        });
        let refs: Vec<_> = lms.iter().collect();
        time(&mut d, || embedder.embed(&frame, &refs))?;
        faces = detections.len();
        if !warm {
            single.push(s[0]);
            dec.push(d[0]);
            det.push(d[1]);
            lm.push(d[2]);
            al.push(d[3]);
            emb.push(d[4] - d[3]); // embed() aligns too; report inference alone
        }
    }
    let (landmarks_ms, align_ms, embed_ms) = (median(lm), median(al), median(emb));
    let decode_ms = median(dec);
    let detect_ms = median(det);
    Ok(StageTimes {
        embedder: match (
            config.inference.embedder,
            config
                .inference
                .precision
                .resolve(config.inference.embedder),
        ) {
            (EmbedderKind::Arcface512, Precision::Int8) => "arcface512-int8",
            (EmbedderKind::Dlib128, Precision::Int8) => "dlib128-int8",
            (kind, _) => kind.name(),
        },
        threads: if config.inference.threads == 0 {
            "default".into()
        } else {
            config.inference.threads.to_string()
        },
        frame: label.into(),
        faces,
        decode_ms,
        detect_single_pass_ms: median(single),
        detect_ms,
        landmarks_ms,
        align_ms,
        embed_ms,
        per_face_ms: if faces > 0 {
            (landmarks_ms + align_ms + embed_ms) / faces as f64
        } else {
            0.0
        },
        total_ms: decode_ms + detect_ms + landmarks_ms + align_ms + embed_ms,
    })
}

/// The full table: both embedders (fp32, and int8 where `make models-int8` made it) ×
/// single/default threads × one/six faces.
pub fn bench_engine(
    base: &Config,
    frames: &[(String, Vec<u8>)],
    iterations: usize,
) -> Result<Vec<StageTimes>, EngineError> {
    let runtime = Runtime::load(&base.inference)?;
    let mut rows = Vec::new();
    let variants = [EmbedderKind::Arcface512, EmbedderKind::Dlib128]
        .into_iter()
        .flat_map(|k| [(k, Precision::Fp32), (k, Precision::Int8)])
        .filter(|&(k, p)| {
            p == Precision::Fp32
                || runtime
                    .model_path(facegate_core::engine::embedder::model_file(k, p))
                    .exists()
        });
    for (kind, precision) in variants {
        // Single-threaded, then the configured count (0: ONNX Runtime's default, one per core).
        let configured = base.inference.threads;
        for threads in if configured == 1 {
            vec![1]
        } else {
            vec![1, configured]
        } {
            let mut cfg = base.clone();
            cfg.inference.embedder = kind;
            cfg.inference.precision = precision;
            cfg.inference.threads = threads;
            for (label, jpeg) in frames {
                rows.push(bench_frame(&runtime, &cfg, label, jpeg, iterations)?);
            }
        }
    }
    Ok(rows)
}

/// The rows as an aligned text table (milliseconds).
pub fn format_table(rows: &[StageTimes], iterations: usize) -> String {
    let mut out = format!(
        "{:<10} {:>7} {:<18} {:>5} {:>7} {:>11} {:>7} {:>9} {:>6} {:>7} {:>8} {:>7}\n",
        "embedder",
        "threads",
        "frame",
        "faces",
        "decode",
        "detect 1pass",
        "detect",
        "landmarks",
        "align",
        "embed",
        "per face",
        "total"
    );
    for r in rows {
        out += &format!(
            "{:<10} {:>7} {:<18} {:>5} {:>7.2} {:>11.2} {:>7.2} {:>9.2} {:>6.2} {:>7.2} {:>8.2} {:>7.2}\n",
            r.embedder,
            r.threads,
            r.frame,
            r.faces,
            r.decode_ms,
            r.detect_single_pass_ms,
            r.detect_ms,
            r.landmarks_ms,
            r.align_ms,
            r.embed_ms,
            r.per_face_ms,
            r.total_ms
        );
    }
    out += &format!(
        "(milliseconds, median of {iterations} runs; \"detect 1pass\": both ranges on the whole frame; \"detect\": \
         plus the tiles for faces down to detector.min_face_px; landmarks, align and embed cover every face; \
         total uses \"detect\")\n"
    );
    out
}
