//! Face detection with MediaPipe BlazeFace: letterbox, anchor decoding, weighted NMS.
//!
//! Two models cover different distances: the full-range model (192 px input) finds small far
//! faces but misses faces that fill the frame, the short-range one (128 px) the opposite. By
//! default both run and their candidates are merged by one NMS pass. Where the whole-frame pass
//! cannot resolve faces as small as `detector.min_face_px`, the full-range model also searches
//! overlapping tiles. A face the frame's edge cuts counts from a lower score
//! (`detector.border_score_threshold`) without ever displacing a surer face
//! ([`faces_from_candidates`]; docs/accuracy.md, "Faces cut by the border").

use image::RgbImage;
use ort::session::Session;
use ort::value::TensorRef;

use super::geometry::{BoundingBox, Point};
use super::sampling::{pad_to_tensor, shrink_to_fit, Letterboxed, Normalisation, Region};
use super::EngineError;
use crate::config::{DetectorConfig, DetectorRange};

/// The six BlazeFace keypoints, in the model's order.
pub const KEYPOINTS: usize = 6;
/// Subject's right eye (image left for a frontal face).
pub const KP_RIGHT_EYE: usize = 0;
pub const KP_LEFT_EYE: usize = 1;

const NORMALISATION: Normalisation = Normalisation::uniform(127.5, 1.0 / 127.5);

#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    pub bbox: BoundingBox,
    pub score: f32,
    /// Right eye, left eye, nose tip, mouth centre, right ear tragion, left ear tragion.
    pub keypoints: [Point; KEYPOINTS],
}

/// Anchor centres in normalised [0, 1] coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Anchor {
    pub x: f32,
    pub y: f32,
}

/// MediaPipe's SSD anchors with fixed size 1: one anchor per cell per listed layer repeat.
/// `layers` lists (stride, anchors per cell).
pub fn anchors(input_size: u32, layers: &[(u32, usize)]) -> Vec<Anchor> {
    let mut out = Vec::new();
    for &(stride, per_cell) in layers {
        let grid = input_size.div_ceil(stride);
        for y in 0..grid {
            for x in 0..grid {
                let a = Anchor {
                    x: (x as f32 + 0.5) / grid as f32,
                    y: (y as f32 + 0.5) / grid as f32,
                };
                out.extend(std::iter::repeat_n(a, per_cell));
            }
        }
    }
    out
}

/// Decode raw outputs (regressors `[A, 16]`, logits `[A]`) into detections above `threshold`,
/// in normalised model coordinates (0..1 of the letterboxed square).
pub fn decode(
    regressors: &[f32],
    logits: &[f32],
    anchors: &[Anchor],
    input_size: f32,
    threshold: f32,
) -> Vec<Detection> {
    // Compare logits, not probabilities: saves a sigmoid per anchor.
    let logit_threshold = (threshold / (1.0 - threshold)).ln();
    let mut out = Vec::new();
    for (i, anchor) in anchors.iter().enumerate() {
        let logit = logits[i].clamp(-100.0, 100.0);
        if logit < logit_threshold {
            continue;
        }
        let r = &regressors[i * 16..(i + 1) * 16];
        let cx = r[0] / input_size + anchor.x;
        let cy = r[1] / input_size + anchor.y;
        let w = r[2] / input_size;
        let h = r[3] / input_size;
        if !(w > 0.0 && h > 0.0) {
            continue; // a degenerate regression (or NaN) is no face
        }
        let mut keypoints = [Point::default(); KEYPOINTS];
        for (k, kp) in keypoints.iter_mut().enumerate() {
            *kp = Point::new(
                r[4 + 2 * k] / input_size + anchor.x,
                r[5 + 2 * k] / input_size + anchor.y,
            );
        }
        out.push(Detection {
            bbox: BoundingBox::from_center(cx, cy, w, h),
            score: 1.0 / (1.0 + (-logit).exp()),
            keypoints,
        });
    }
    out
}

/// MediaPipe's weighted non-maximum suppression: each kept face is the score-weighted mean of
/// every candidate overlapping it by more than `iou`, which is steadier across video frames
/// than keeping the single best box.
pub fn weighted_nms(mut candidates: Vec<Detection>, iou: f32) -> Vec<Detection> {
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut out = Vec::new();
    while !candidates.is_empty() {
        // The best candidate always heads its own group, even if its box is degenerate (its
        // IoU with itself would then be 0 and it would never leave the list).
        let best = candidates.remove(0);
        let (mut group, rest): (Vec<_>, Vec<_>) = candidates
            .into_iter()
            .partition(|d| d.bbox.intersection_over_union(&best.bbox) > iou);
        candidates = rest;
        group.insert(0, best);
        let top_score = group[0].score;
        let total: f32 = group.iter().map(|d| d.score).sum();
        let mut merged = Detection {
            bbox: BoundingBox::default(),
            score: top_score,
            keypoints: [Point::default(); KEYPOINTS],
        };
        for d in &group {
            let w = d.score / total;
            merged.bbox.left += w * d.bbox.left;
            merged.bbox.top += w * d.bbox.top;
            merged.bbox.right += w * d.bbox.right;
            merged.bbox.bottom += w * d.bbox.bottom;
            for (m, k) in merged.keypoints.iter_mut().zip(&d.keypoints) {
                m.x += w * k.x;
                m.y += w * k.y;
            }
        }
        out.push(merged);
    }
    out
}

/// One BlazeFace model and what it needs to decode its output.
struct Model {
    session: Session,
    input_size: u32,
    anchors: Vec<Anchor>,
    provider: &'static str,
}

impl Model {
    fn open(
        rt: &super::runtime::Runtime,
        file: &str,
        full_range: bool,
    ) -> Result<Self, EngineError> {
        let (input_size, anchors) = if full_range {
            (192, anchors(192, &[(4, 1)]))
        } else {
            (128, anchors(128, &[(8, 2), (16, 6)]))
        };
        let side = input_size as i64;
        let (session, provider) = rt.open_expecting(file, &[1, 3, side, side])?;
        Ok(Self {
            session,
            input_size,
            anchors,
            provider,
        })
    }

    /// Detect in `region` of the frame; results in frame pixels. Used for the tiles, placed
    /// top-left: a tile's edges lie inside the frame (a face they cut is whole in the next,
    /// overlapping tile), and the frame's own edges are seen centred by the whole-frame pass.
    fn run(
        &mut self,
        frame: &RgbImage,
        region: Region,
        threshold: f32,
        buf: &mut Vec<f32>,
    ) -> Result<Vec<Detection>, EngineError> {
        let shrunk = shrink_to_fit(frame, region, self.input_size);
        self.run_shrunk(&shrunk, (0, 0), region, threshold, buf)
    }

    /// Detect in an already shrunk copy of `region` (letterbox factor included), placed in
    /// the model input with its top-left corner at `at`.
    fn run_shrunk(
        &mut self,
        shrunk: &Letterboxed,
        at: (u32, u32),
        region: Region,
        threshold: f32,
        buf: &mut Vec<f32>,
    ) -> Result<Vec<Detection>, EngineError> {
        let size = self.input_size;
        let factor = shrunk.factor;
        pad_to_tensor(&shrunk.image, size, at, &NORMALISATION, buf);
        let shape = [1usize, 3, size as usize, size as usize];
        let input = TensorRef::from_array_view((shape, buf.as_slice()))?;
        let outputs = self.session.run(ort::inputs![input])?;
        let (_, regressors) = outputs[0].try_extract_tensor::<f32>()?;
        let (_, logits) = outputs[1].try_extract_tensor::<f32>()?;
        if regressors.len() != self.anchors.len() * 16 || logits.len() != self.anchors.len() {
            return Err(EngineError::Output(format!(
                "detector returned {} regressors and {} scores for {} anchors",
                regressors.len(),
                logits.len(),
                self.anchors.len()
            )));
        }
        let mut dets = decode(regressors, logits, &self.anchors, size as f32, threshold);
        let scale = size as f32 * factor;
        // Model coordinates cover the whole input; the image starts `at` pixels into it.
        let ox = region.left as f32 - at.0 as f32 * factor;
        let oy = region.top as f32 - at.1 as f32 * factor;
        for d in &mut dets {
            d.bbox = BoundingBox {
                left: ox + d.bbox.left * scale,
                top: oy + d.bbox.top * scale,
                right: ox + d.bbox.right * scale,
                bottom: oy + d.bbox.bottom * scale,
            };
            for k in &mut d.keypoints {
                *k = Point::new(ox + k.x * scale, oy + k.y * scale);
            }
        }
        Ok(dets)
    }
}

pub struct Detector {
    full: Option<Model>,
    short: Option<Model>,
    config: DetectorConfig,
    buf: Vec<f32>,
}

impl Detector {
    pub fn open(
        rt: &super::runtime::Runtime,
        config: &DetectorConfig,
    ) -> Result<Self, EngineError> {
        let full = match config.range {
            DetectorRange::Both | DetectorRange::Full => {
                Some(Model::open(rt, "blazeface_full.onnx", true)?)
            }
            DetectorRange::Short => None,
        };
        let short = match config.range {
            DetectorRange::Both | DetectorRange::Short => {
                Some(Model::open(rt, "blazeface_short.onnx", false)?)
            }
            DetectorRange::Full => None,
        };
        Ok(Self {
            full,
            short,
            config: config.clone(),
            buf: Vec::new(),
        })
    }

    pub fn providers(&self) -> Vec<(&'static str, &'static str)> {
        let mut v = Vec::new();
        if let Some(m) = &self.full {
            v.push(("blazeface_full", m.provider));
        }
        if let Some(m) = &self.short {
            v.push(("blazeface_short", m.provider));
        }
        v
    }

    /// Every face in the frame, best first.
    pub fn detect(&mut self, frame: &RgbImage) -> Result<Vec<Detection>, EngineError> {
        let threshold = self
            .config
            .score_threshold
            .min(self.config.border_score_threshold);
        let whole = Region::whole(frame);
        let mut full = None;
        let mut full_view = None;
        if let Some(m) = &mut self.full {
            let view = shrink_to_fit(frame, whole, m.input_size);
            let at = centred(&view.image, m.input_size);
            let mut candidates = m.run_shrunk(&view, at, whole, threshold, &mut self.buf)?;
            for tile in bounded_tiles(
                frame.width(),
                frame.height(),
                m.input_size,
                self.config.min_face_px,
                self.config.max_tiles,
            ) {
                candidates.extend(m.run(frame, tile, threshold, &mut self.buf)?);
            }
            full_view = Some(view);
            full = Some(candidates);
        }
        let short = match &mut self.short {
            None => Vec::new(),
            Some(m) => {
                // Cut the short-range input from the full-range one when there is one: shrinking a
                // 192-px image again is nearly free, shrinking the whole frame again is not.
                let view = match &full_view {
                    Some(v) => {
                        let again = shrink_to_fit(&v.image, Region::whole(&v.image), m.input_size);
                        Letterboxed {
                            factor: again.factor * v.factor,
                            image: again.image,
                        }
                    }
                    None => shrink_to_fit(frame, whole, m.input_size),
                };
                let at = centred(&view.image, m.input_size);
                m.run_shrunk(&view, at, whole, threshold, &mut self.buf)?
            }
        };
        let mut faces =
            faces_from_candidates(full, short, frame.width(), frame.height(), &self.config);
        faces.retain(|d| d.bbox.width() >= self.config.min_face_px);
        Ok(faces)
    }
}

/// Where a whole frame sits in the model input: centred, so that each of its four edges
/// borders black padding. A face the frame's edge cuts is found far more often next to padding
/// than at the edge of the model input (top-left placement found 4 of 50 faces cut 40 % by the
/// left edge, but 36 of 50 cut by the bottom, which bordered the padding).
fn centred(img: &RgbImage, input_size: u32) -> (u32, u32) {
    (
        (input_size - img.width()) / 2,
        (input_size - img.height()) / 2,
    )
}

/// The faces of a `width`×`height` frame from the candidates of the full-range model (`None`
/// when it did not run) and of the short-range one, best first.
///
/// Candidates scoring `score_threshold` make the faces: merged by one weighted NMS pass, the
/// short-range ones through [`merge_short_range`] when the full-range model ran. Below that, a
/// candidate counts only when the frame's edge cuts it and it scores `border_score_threshold`
/// (part of the face is missing, so the model is less sure of a real one, and missing it loses
/// the face outright). Such border candidates are merged among themselves and add a face only
/// where no face is yet ([`same_face`]): a low-scoring box must neither pull a sure face's box
/// (the weighted NMS would average it in) nor hide a face the short-range model found, and one
/// cut face boxed twice (once by each model) stays one face.
pub fn faces_from_candidates(
    full: Option<Vec<Detection>>,
    short: Vec<Detection>,
    width: u32,
    height: u32,
    config: &DetectorConfig,
) -> Vec<Detection> {
    let (w, h) = (width as f32, height as f32);
    let is_sure = |d: &Detection| d.score >= config.score_threshold;
    let at_border =
        |d: &Detection| d.score >= config.border_score_threshold && d.bbox.cut_by_frame(w, h);
    let side = w.max(h);
    let mut border = Vec::new();
    let mut split = |candidates: Vec<Detection>, short_beside_full: bool| -> Vec<Detection> {
        let (sure, rest): (Vec<_>, Vec<_>) = candidates.into_iter().partition(is_sure);
        // Beside the full-range model the short-range one's small boxes are left out, cut or
        // not: it sizes faces that small badly (see merge_short_range).
        border.extend(
            rest.into_iter()
                .filter(at_border)
                .filter(|d| !short_beside_full || d.bbox.width() >= SHORT_RANGE_MIN_SHARE * side),
        );
        sure
    };
    let short = split(short, full.is_some());
    let candidates = match full {
        Some(full) => {
            let full = split(full, false);
            merge_short_range(full, short, side, config.nms_iou)
        }
        None => short,
    };
    let mut faces = weighted_nms(candidates, config.nms_iou);
    for b in weighted_nms(border, config.nms_iou) {
        if !faces.iter().any(|f| same_face(f, &b, config.nms_iou)) {
            faces.push(b);
        }
    }
    faces
}

/// Whether two boxes are taken for one face: they overlap by more than `nms_iou`, or either
/// holds the other's centre (a mis-sized box of the same face).
fn same_face(a: &Detection, b: &Detection, nms_iou: f32) -> bool {
    a.bbox.intersection_over_union(&b.bbox) > nms_iou
        || a.bbox.contains(b.bbox.center())
        || b.bbox.contains(a.bbox.center())
}

/// Short-range boxes smaller than this share of the frame's longer side are left to the
/// full-range model: the short-range model sizes faces that small badly.
const SHORT_RANGE_MIN_SHARE: f32 = 0.15;

/// Add the short-range candidates the full-range model did not already explain. A short-range
/// box that overlaps a full-range face by more than `nms_iou` is the same face and joins its
/// NMS group; one that
/// covers a full-range face's centre without matching it is a mis-sized blob over smaller faces
/// and is dropped; one far from every full-range face is a close face the full-range model
/// missed, and is kept.
pub fn merge_short_range(
    full: Vec<Detection>,
    short: Vec<Detection>,
    side: f32,
    nms_iou: f32,
) -> Vec<Detection> {
    let mut out = full;
    let n_full = out.len();
    for s in short {
        if s.bbox.width() < SHORT_RANGE_MIN_SHARE * side {
            continue;
        }
        // "The same face" is exactly what the NMS pass will merge: IoU above `nms_iou`.
        let covers_other_face = out[..n_full].iter().any(|f| {
            s.bbox.contains(f.bbox.center()) && f.bbox.intersection_over_union(&s.bbox) <= nms_iou
        });
        if !covers_other_face {
            out.push(s);
        }
    }
    out
}

/// The smallest face, in model input pixels, the full-range model finds reliably (measured on
/// t1.jpg scaled down: all faces at 16 px, none at 8).
pub const FULL_RANGE_MIN_FACE: f32 = 16.0;

/// [`tiles`] for the smallest face size, from `min_face_px` up, that needs at most
/// `max_tiles`: the work per image stays bounded whatever its shape.
pub fn bounded_tiles(
    width: u32,
    height: u32,
    input_size: u32,
    min_face_px: f32,
    max_tiles: usize,
) -> Vec<Region> {
    let mut face = min_face_px;
    loop {
        let t = tiles(width, height, input_size, face);
        if t.len() <= max_tiles.max(1) {
            if face > min_face_px {
                tracing::debug!(
                    min_face_px,
                    searched_px = face,
                    tiles = t.len(),
                    "tile search bounded: looking for larger faces"
                );
            }
            return t;
        }
        face *= 1.25;
    }
}

/// Overlapping square tiles that let the full-range model see faces of `min_face_px` in a frame
/// where the whole-frame pass cannot (it resolves faces of 16 × side / 192 px and up). Tiles are
/// sized so a `min_face_px` face spans 16 model pixels (side ≥ the model input), and overlap
/// by the smallest face the whole-frame pass finds, so every face between the two lies whole in
/// some tile. Empty when the whole-frame pass already suffices.
pub fn tiles(width: u32, height: u32, input_size: u32, min_face_px: f32) -> Vec<Region> {
    let long = width.max(height) as f32;
    let whole_frame_min = FULL_RANGE_MIN_FACE * long / input_size as f32;
    // 15 % slack: a face a little below the reliable size is still usually found.
    if min_face_px <= 0.0 || min_face_px * 1.15 >= whole_frame_min {
        return Vec::new();
    }
    let side = (min_face_px * 1.15 * input_size as f32 / FULL_RANGE_MIN_FACE)
        .max(input_size as f32)
        .round() as u32;
    let overlap = (whole_frame_min.ceil() as u32).min(side / 2);
    let step = (side - overlap).max(1);
    let starts = |len: u32| -> Vec<u32> {
        if len <= side {
            return vec![0];
        }
        let mut v: Vec<u32> = (0..)
            .map(|i| i * step)
            .take_while(|&s| s + side < len)
            .collect();
        v.push(len - side);
        v
    };
    let mut out = Vec::new();
    for &top in &starts(height) {
        for &left in &starts(width) {
            out.push(Region {
                left,
                top,
                width: side.min(width),
                height: side.min(height),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchor_counts_match_the_models() {
        assert_eq!(anchors(192, &[(4, 1)]).len(), 2304);
        assert_eq!(anchors(128, &[(8, 2), (16, 6)]).len(), 896);
    }

    #[test]
    fn anchors_sit_at_cell_centres_in_row_major_order() {
        let a = anchors(128, &[(8, 2), (16, 6)]);
        assert_eq!(
            a[0],
            Anchor {
                x: 0.5 / 16.0,
                y: 0.5 / 16.0
            }
        );
        assert_eq!(a[1], a[0], "two anchors per cell on the stride-8 layer");
        assert_eq!(
            a[2],
            Anchor {
                x: 1.5 / 16.0,
                y: 0.5 / 16.0
            }
        );
        assert_eq!(
            a[512],
            Anchor {
                x: 0.5 / 8.0,
                y: 0.5 / 8.0
            }
        );
        let f = anchors(192, &[(4, 1)]);
        assert_eq!(
            f[48],
            Anchor {
                x: 0.5 / 48.0,
                y: 1.5 / 48.0
            }
        );
    }

    #[test]
    fn decoding_offsets_boxes_and_keypoints_from_the_anchor() {
        let a = [Anchor { x: 0.25, y: 0.5 }, Anchor { x: 0.75, y: 0.5 }];
        let mut reg = vec![0.0; 32];
        reg[0] = 19.2; // +0.1 of 192
        reg[2] = 38.4; // width 0.2
        reg[3] = 57.6; // height 0.3
        reg[4] = -9.6; // right eye x: -0.05
        let logits = [2.0, -2.0];
        let d = decode(&reg, &logits, &a, 192.0, 0.5);
        assert_eq!(d.len(), 1, "the second anchor is below threshold");
        let b = d[0].bbox;
        assert!((b.center().x - 0.35).abs() < 1e-6 && (b.center().y - 0.5).abs() < 1e-6);
        assert!((b.width() - 0.2).abs() < 1e-6 && (b.height() - 0.3).abs() < 1e-6);
        assert!((d[0].keypoints[0].x - 0.2).abs() < 1e-6);
        assert!((d[0].score - 1.0 / (1.0 + (-2.0f32).exp())).abs() < 1e-6);
    }

    fn det(cx: f32, score: f32) -> Detection {
        det_at(cx, 50.0, 20.0, score)
    }

    /// The faces of a 200×100 frame under the default configuration.
    fn faces_in_200x100(full: Vec<Detection>, short: Vec<Detection>) -> Vec<Detection> {
        faces_from_candidates(Some(full), short, 200, 100, &DetectorConfig::default())
    }

    fn det_at(cx: f32, cy: f32, side: f32, score: f32) -> Detection {
        Detection {
            bbox: BoundingBox::from_center(cx, cy, side, side),
            score,
            keypoints: [Point::new(cx, cy); KEYPOINTS],
        }
    }

    #[test]
    fn a_face_the_frame_edge_cuts_counts_from_the_border_score_and_others_from_the_full_score() {
        let faces = |full: Vec<Detection>| faces_in_200x100(full, vec![]);
        // det(cx, …) is 20 px wide: centred at 5 it reaches past the left edge.
        assert_eq!(faces(vec![det(5.0, 0.35)]).len(), 1);
        assert_eq!(faces(vec![det(195.0, 0.35)]).len(), 1);
        assert_eq!(faces(vec![det(5.0, 0.25)]).len(), 0);
        // Inside the frame the full threshold holds.
        assert_eq!(faces(vec![det(100.0, 0.45)]).len(), 0);
        assert_eq!(faces(vec![det(100.0, 0.55)]).len(), 1);
        // A box 2 px inside the edge is not cut.
        assert_eq!(faces(vec![det(12.0, 0.45)]).len(), 0);
        // The short-range model's border candidates count too.
        let short = faces_in_200x100(vec![], vec![det_at(170.0, 50.0, 80.0, 0.4)]);
        assert_eq!(short.len(), 1);
    }

    #[test]
    fn a_border_candidate_neither_moves_nor_hides_a_sure_face() {
        // A sure face near the edge and a larger low-scoring box over it that the edge cuts:
        // the face keeps its own box, and the border box adds nothing.
        let face = det_at(170.0, 50.0, 40.0, 0.6);
        let blob = det_at(180.0, 50.0, 60.0, 0.45);
        let out = faces_in_200x100(vec![face.clone(), blob.clone()], vec![]);
        assert_eq!(out, vec![face.clone()]);
        // A large short-range face is not dropped for a border full-range box on its centre.
        let close = det_at(150.0, 50.0, 90.0, 0.8);
        let edge = det_at(185.0, 50.0, 40.0, 0.4);
        let out = faces_in_200x100(vec![edge], vec![close.clone()]);
        assert_eq!(out, vec![close]);
        // A cut face beside a sure one is a second face.
        let face = det_at(120.0, 50.0, 40.0, 0.6);
        let beside = det_at(190.0, 50.0, 40.0, 0.4);
        let out = faces_in_200x100(vec![face.clone(), beside.clone()], vec![]);
        assert_eq!(out, vec![face, beside]);
        // Two border candidates of one cut face merge into one face.
        let out = faces_in_200x100(
            vec![
                det_at(190.0, 50.0, 40.0, 0.4),
                det_at(192.0, 51.0, 40.0, 0.35),
            ],
            vec![],
        );
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn the_whole_frame_sits_centred_in_the_model_input() {
        assert_eq!(centred(&RgbImage::new(192, 108), 192), (0, 42));
        assert_eq!(centred(&RgbImage::new(96, 192), 192), (48, 0));
        assert_eq!(centred(&RgbImage::new(192, 192), 192), (0, 0));
    }

    #[test]
    fn nms_merges_overlapping_boxes_by_score_weight_and_keeps_separate_faces() {
        let out = weighted_nms(
            vec![
                det(100.0, 0.6),
                det(10.0, 0.9),
                det(12.0, 0.3),
                det(300.0, 0.7),
            ],
            0.3,
        );
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].score, 0.9, "best first, keeping the top score");
        let expect = (10.0 * 0.9 + 12.0 * 0.3) / 1.2;
        assert!((out[0].bbox.center().x - expect).abs() < 1e-4);
        assert!((out[0].keypoints[0].x - expect).abs() < 1e-4);
        assert_eq!(out[1].bbox.center().x, 300.0);
    }

    #[test]
    fn degenerate_boxes_neither_hang_nor_crash_the_nms_and_are_not_decoded() {
        let mut zero = det(50.0, 0.95);
        zero.bbox = BoundingBox::from_center(50.0, 50.0, 0.0, 0.0);
        let out = weighted_nms(vec![zero, det(10.0, 0.9), det(12.0, 0.8)], 0.3);
        assert_eq!(
            out.len(),
            2,
            "the zero-size box stands alone, the others merge"
        );
        let a = [Anchor { x: 0.5, y: 0.5 }];
        let mut reg = vec![0.0; 16];
        reg[2] = -5.0; // negative width
        reg[3] = 10.0;
        assert!(decode(&reg, &[5.0], &a, 192.0, 0.5).is_empty());
        reg[2] = f32::NAN;
        assert!(decode(&reg, &[5.0], &a, 192.0, 0.5).is_empty());
    }

    #[test]
    fn short_range_adds_missed_close_faces_but_not_blobs_over_smaller_ones() {
        let face = |cx: f32, w: f32, score: f32| Detection {
            bbox: BoundingBox::from_center(cx, 300.0, w, w),
            score,
            keypoints: [Point::new(cx, 300.0); KEYPOINTS],
        };
        let full = vec![face(100.0, 60.0, 0.9), face(170.0, 60.0, 0.9)];
        let short = vec![
            face(135.0, 200.0, 0.6), // covers both full-range faces: a mis-sized blob
            face(600.0, 300.0, 0.8), // a close face the full-range model missed
            face(400.0, 50.0, 0.7),  // too small for the short-range model to size well
            face(102.0, 64.0, 0.9),  // the same face as a full-range one: joins its NMS group
        ];
        // Frame side 400: short-range boxes under 60 px are left to the full-range model.
        let merged = merge_short_range(full, short, 400.0, 0.3);
        let centres: Vec<f32> = merged.iter().map(|d| d.bbox.center().x).collect();
        assert_eq!(centres, vec![100.0, 170.0, 600.0, 102.0]);
        let faces = weighted_nms(merged, 0.3);
        assert_eq!(
            faces.len(),
            3,
            "the duplicate merged into its full-range face"
        );
    }

    #[test]
    fn the_tile_search_is_bounded_for_any_image_shape() {
        for (w, h) in [(16, 2_500_000), (2_500_000, 16), (8000, 5000), (400, 8000)] {
            let t = bounded_tiles(w, h, 192, 24.0, 64);
            assert!(t.len() <= 64, "{w}x{h}: {} tiles", t.len());
        }
        // Where the bound is not reached nothing changes.
        assert_eq!(
            bounded_tiles(1280, 720, 192, 24.0, 64),
            tiles(1280, 720, 192, 24.0)
        );
    }

    #[test]
    fn no_tiles_when_the_whole_frame_pass_resolves_the_smallest_face() {
        // 640 px: the whole frame finds faces of 16 × 640 / 192 ≈ 53 px and up.
        assert!(tiles(640, 480, 192, 60.0).is_empty());
        assert!(!tiles(640, 480, 192, 24.0).is_empty());
    }

    #[test]
    fn tiles_cover_the_frame_and_overlap_by_the_largest_face_they_must_catch() {
        for (w, h) in [(1920, 1280), (1280, 720), (640, 480), (500, 2000)] {
            let t = tiles(w, h, 192, 24.0);
            assert!(!t.is_empty());
            for r in &t {
                assert!(
                    r.left + r.width <= w && r.top + r.height <= h,
                    "{r:?} in {w}x{h}"
                );
                // a 24 px face spans at least ~14 model pixels in its tile
                assert!(24.0 * 192.0 / r.width.max(r.height) as f32 >= 13.9, "{r:?}");
            }
            let covers = |x: u32, y: u32, size: u32| {
                t.iter().any(|r| {
                    x >= r.left
                        && x + size <= r.left + r.width
                        && y >= r.top
                        && y + size <= r.top + r.height
                })
            };
            // Every face the whole-frame pass could miss (< 16 × long / 192) fits whole in a tile.
            let largest_missed = (16.0 * w.max(h) as f32 / 192.0) as u32;
            for y in (0..h - largest_missed).step_by(37) {
                for x in (0..w - largest_missed).step_by(41) {
                    assert!(covers(x, y, largest_missed), "{w}x{h}: face at {x},{y}");
                }
            }
        }
    }
}
