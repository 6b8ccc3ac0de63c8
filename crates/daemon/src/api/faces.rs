//! What a request needs from the engine, computed on an inference worker: base64 and image
//! decoding, detection, landmarks, templates, thumbnails and still-image liveness. Nothing
//! here runs on the async executor.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::RgbImage;

use super::error::{ApiError, ErrorCode};
use super::extract::decode_base64_image;
use super::AppState;
use facegate_core::engine::geometry::BoundingBox;
use facegate_core::engine::liveness::Verdict;
use facegate_core::engine::one_face::{self, OneFace};
use facegate_core::engine::{align, Engine, FivePoints};

/// What to compute for each face.
#[derive(Debug, Clone, Copy, Default)]
pub struct Wanted {
    pub embeddings: bool,
    pub thumbnails: bool,
    pub liveness: bool,
    /// Keep the posted bytes (for `StoreFullImage`).
    pub original: bool,
}

#[derive(Debug, Clone)]
pub struct FaceResult {
    pub bbox: BoundingBox,
    pub score: f32,
    pub points: FivePoints,
    pub embedding: Option<Vec<f32>>,
    /// JPEG of the aligned crop.
    pub thumbnail: Option<Vec<u8>>,
    /// Found only at the border threshold ([`facegate_core::engine::Engine::is_faint`]).
    pub faint: bool,
}

#[derive(Debug, Clone)]
pub struct Analysis {
    pub width: u32,
    pub height: u32,
    /// Best detection first.
    pub faces: Vec<FaceResult>,
    pub liveness: Option<Verdict>,
    pub original: Option<Vec<u8>>,
}

impl Analysis {
    /// The one face of a photo that must show one ([`one_face::choose`]): none is
    /// `ERR_FACE_NOT_DETECTED`, several are `ERR_MULTIPLE_FACES` with their number.
    pub fn single_face(&self, ratio: f32) -> Result<&FaceResult, ApiError> {
        let usable = |f: &FaceResult| {
            f.embedding.is_some().then_some(one_face::Usable {
                bbox: f.bbox,
                faint: f.faint,
            })
        };
        match one_face::choose_among(&self.faces, usable, self.width, self.height, ratio) {
            OneFace::Chosen(i) => Ok(&self.faces[i]),
            OneFace::NoFace => Err(ApiError::new(ErrorCode::ErrFaceNotDetected)),
            OneFace::Several(n) => {
                Err(ApiError::new(ErrorCode::ErrMultipleFaces)
                    .with_metadata("faces", n.to_string()))
            }
        }
    }

    /// `ERR_LIVENESS_ERROR` unless the liveness verdict is live.
    pub fn require_live(&self) -> Result<(), ApiError> {
        match &self.liveness {
            Some(v) if v.is_live => Ok(()),
            Some(v) => Err(liveness_error(v)),
            None => Err(ApiError::internal(
                "liveness was required but not computed",
                &"missing verdict",
            )),
        }
    }
}

pub fn liveness_error(v: &Verdict) -> ApiError {
    ApiError::new(ErrorCode::ErrLivenessError)
        .with_metadata("code", v.code.as_str())
        .with_metadata("liveness_score", v.liveness_score.to_string())
        .with_metadata(
            "checks",
            serde_json::to_value(&v.checks).unwrap_or(serde_json::Value::Null),
        )
}

/// Analyse a base64 image on a worker. `ERR_BUSY` when the queue is full.
pub async fn analyse(
    state: &AppState,
    base64: String,
    wanted: Wanted,
) -> Result<Analysis, ApiError> {
    let thumb_px = state.config.store.thumbnail_px;
    let limits = state.config.liveness.clone();
    let quality = state.config.store.thumbnail_quality;
    let started = std::time::Instant::now();
    let result = state
        .workers
        .run(move |engine| run(engine, &base64, wanted, thumb_px, quality, &limits))
        .await;
    match result {
        Err(_busy) => {
            state.metrics.busy.inc();
            Err(ApiError::busy(state.config.server.busy_retry_after_s))
        }
        Ok(Err(gone)) => Err(ApiError::internal("inference", &gone)),
        Ok(Ok(r)) => {
            state
                .metrics
                .inference_seconds
                .observe(started.elapsed().as_secs_f64());
            r
        }
    }
}

fn run(
    engine: &mut Engine,
    base64: &str,
    wanted: Wanted,
    thumb_px: u32,
    quality: u8,
    limits: &facegate_core::config::LivenessConfig,
) -> Result<Analysis, ApiError> {
    let _span = tracing::debug_span!("analyse").entered();
    let bytes = decode_base64_image(base64)?;
    let frame = engine.decode(&bytes)?;
    let located = engine.locate(&frame)?;
    let liveness = if wanted.liveness {
        Some(engine.liveness(&frame, &located, limits)?)
    } else {
        None
    };
    let embeddings = if wanted.embeddings && !located.is_empty() {
        let refs: Vec<_> = located.iter().map(|(_, lm)| lm).collect();
        engine.embed(&frame, &refs)?
    } else {
        vec![None; located.len()]
    };
    let mut faces = Vec::with_capacity(located.len());
    for ((det, lm), embedding) in located.iter().zip(embeddings) {
        let thumbnail = if wanted.thumbnails {
            align::thumbnail(&frame, lm, thumb_px)
                .map(|img| jpeg(&img, quality))
                .transpose()?
        } else {
            None
        };
        faces.push(FaceResult {
            bbox: det.bbox,
            score: det.score,
            points: FivePoints::from_landmarks(lm),
            embedding,
            thumbnail,
            faint: engine.is_faint(det),
        });
    }
    Ok(Analysis {
        width: frame.width(),
        height: frame.height(),
        faces,
        liveness,
        original: wanted.original.then_some(bytes),
    })
}

fn jpeg(img: &RgbImage, quality: u8) -> Result<Vec<u8>, ApiError> {
    let mut out = Cursor::new(Vec::new());
    JpegEncoder::new_with_quality(&mut out, quality)
        .encode_image(img)
        .map_err(|e| ApiError::internal("thumbnail encoding", &e))?;
    Ok(out.into_inner())
}
