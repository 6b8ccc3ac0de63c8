//! `facegate eval-liveness`: track liveness on synthetic presentations.
//!
//! Attacks: a still photo moved as a plane in front of a pinhole camera — translations,
//! in-plane rotations, tilts and distance changes — rendered into 640×480 frames with noise
//! and JPEG re-compression, and run through the full pipeline (detection, FaceMesh).
//! Bona fide: real head motion cannot be filmed here, so it is made at the landmark level:
//! FaceMesh's 3-D landmarks of real faces rotated (yaw and pitch up to ±20°), moved, projected
//! with the same camera, with landmark noise of the size measured on still photos.

use std::io::Cursor;

use image::{Rgb, RgbImage};
use serde::Serialize;

use crate::bench::RandomVectors;
use facegate_core::engine::geometry::Point;
use facegate_core::engine::liveness::eye_aspect_ratio_pair;
use facegate_core::engine::{Engine, EngineError};
use facegate_core::pipeline::track_liveness::{
    judge_track, TrackLimits, TrackVerdict, TRACK_POINTS,
};

const WIDTH: u32 = 640;
const HEIGHT: u32 = 480;
const FOCAL: f64 = 700.0;

/// Uniform numbers from the benches' deterministic generator.
pub struct Rng(RandomVectors);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(RandomVectors::new(seed))
    }
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        let mut v = [0f32; 1];
        self.0.fill_raw(&mut v);
        lo + (hi - lo) * (v[0] as f64 * 0.5 + 0.5)
    }
    fn normal(&mut self) -> f64 {
        (0..12).map(|_| self.uniform(0.0, 1.0)).sum::<f64>() - 6.0
    }
}

/// Smooth motion over a sequence: `amplitude × sin(phase + speed·i)`.
fn wave(amplitude: f64, rng: &mut Rng) -> impl Fn(usize) -> f64 {
    let (phase, speed) = (
        rng.uniform(0.0, std::f64::consts::TAU),
        rng.uniform(0.5, 1.2),
    );
    move |i| amplitude * (phase + speed * i as f64).sin()
}

/// A smooth random motion: turns up to `max_turn_deg` (yaw; pitch a random share of it),
/// roll up to `max_roll_deg`, shifts up to `max_shift` (camera units) — the rotation and the
/// shift of frame `i`.
fn motion(
    rng: &mut Rng,
    max_turn_deg: f64,
    max_roll_deg: f64,
    max_shift: [f64; 3],
) -> impl Fn(usize) -> ([[f64; 3]; 3], [f64; 3]) {
    let turn = rng.uniform(0.0, max_turn_deg.to_radians());
    let yaw = wave(turn, rng);
    let pitch = wave(turn * rng.uniform(0.2, 1.0), rng);
    let roll = wave(rng.uniform(0.0, max_roll_deg.to_radians()), rng);
    let tx = wave(rng.uniform(0.0, max_shift[0]), rng);
    let ty = wave(rng.uniform(0.0, max_shift[1]), rng);
    let tz = wave(rng.uniform(0.0, max_shift[2]), rng);
    move |i| (rotation(yaw(i), pitch(i), roll(i)), [tx(i), ty(i), tz(i)])
}

/// A 3×3 rotation from yaw (about y), pitch (about x) and roll (about z), radians.
fn rotation(yaw: f64, pitch: f64, roll: f64) -> [[f64; 3]; 3] {
    let (sy, cy) = yaw.sin_cos();
    let (sp, cp) = pitch.sin_cos();
    let (sr, cr) = roll.sin_cos();
    let ry = [[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]];
    let rx = [[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]];
    let rz = [[cr, -sr, 0.0], [sr, cr, 0.0], [0.0, 0.0, 1.0]];
    mul(&mul(&ry, &rx), &rz)
}

fn mul(a: &[[f64; 3]; 3], b: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let mut m = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            m[i][j] = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    m
}

fn apply(r: &[[f64; 3]; 3], p: [f64; 3]) -> [f64; 3] {
    [
        r[0][0] * p[0] + r[0][1] * p[1] + r[0][2] * p[2],
        r[1][0] * p[0] + r[1][1] * p[1] + r[1][2] * p[2],
        r[2][0] * p[0] + r[2][1] * p[1] + r[2][2] * p[2],
    ]
}

fn project(p: [f64; 3]) -> Point {
    Point::new(
        (WIDTH as f64 / 2.0 + FOCAL * p[0] / p[2]) as f32,
        (HEIGHT as f64 / 2.0 + FOCAL * p[1] / p[2]) as f32,
    )
}

fn invert(m: &[[f64; 3]; 3]) -> Option<[[f64; 3]; 3]> {
    let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
    if det.abs() < 1e-12 {
        return None;
    }
    let c =
        |r0: usize, c0: usize, r1: usize, c1: usize| m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0];
    Some([
        [
            c(1, 1, 2, 2) / det,
            -c(0, 1, 2, 2) / det,
            c(0, 1, 1, 2) / det,
        ],
        [
            -c(1, 0, 2, 2) / det,
            c(0, 0, 2, 2) / det,
            -c(0, 0, 1, 2) / det,
        ],
        [
            c(1, 0, 2, 1) / det,
            -c(0, 0, 2, 1) / det,
            c(0, 0, 1, 1) / det,
        ],
    ])
}

/// Render `photo` as a plane (its centre at `t`, turned by `r`, `scale` photo pixels per
/// camera unit) into a frame, with sensor noise.
fn render_plane(
    photo: &RgbImage,
    centre: (f64, f64),
    r: &[[f64; 3]; 3],
    t: [f64; 3],
    scale: f64,
    rng: &mut Rng,
) -> RgbImage {
    // Homography photo (u, v, 1) → frame: K [r1 r2 t], the plane turning about `centre` (the
    // face), which sits at `t`.
    let (cx, cy) = centre;
    let k = [
        [FOCAL, 0.0, WIDTH as f64 / 2.0],
        [0.0, FOCAL, HEIGHT as f64 / 2.0],
        [0.0, 0.0, 1.0],
    ];
    let rt = [
        [
            r[0][0] / scale,
            r[0][1] / scale,
            t[0] - (r[0][0] * cx + r[0][1] * cy) / scale,
        ],
        [
            r[1][0] / scale,
            r[1][1] / scale,
            t[1] - (r[1][0] * cx + r[1][1] * cy) / scale,
        ],
        [
            r[2][0] / scale,
            r[2][1] / scale,
            t[2] - (r[2][0] * cx + r[2][1] * cy) / scale,
        ],
    ];
    let h = mul(&k, &rt);
    let inv = invert(&h).unwrap_or([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]);
    let mut frame = RgbImage::from_pixel(WIDTH, HEIGHT, Rgb([70, 75, 80]));
    for y in 0..HEIGHT {
        for x in 0..WIDTH {
            let (fx, fy) = (x as f64, y as f64);
            let w = inv[2][0] * fx + inv[2][1] * fy + inv[2][2];
            let u = (inv[0][0] * fx + inv[0][1] * fy + inv[0][2]) / w;
            let v = (inv[1][0] * fx + inv[1][1] * fy + inv[1][2]) / w;
            if u >= 0.0
                && v >= 0.0
                && u < photo.width() as f64 - 1.0
                && v < photo.height() as f64 - 1.0
            {
                let (x0, y0) = (u as u32, v as u32);
                let (ax, ay) = ((u - x0 as f64) as f32, (v - y0 as f64) as f32);
                let px = |xx, yy| photo.get_pixel(xx, yy).0;
                let (p00, p10, p01, p11) = (
                    px(x0, y0),
                    px(x0 + 1, y0),
                    px(x0, y0 + 1),
                    px(x0 + 1, y0 + 1),
                );
                let mut out = [0u8; 3];
                for c in 0..3 {
                    let top = p00[c] as f32 * (1.0 - ax) + p10[c] as f32 * ax;
                    let bottom = p01[c] as f32 * (1.0 - ax) + p11[c] as f32 * ax;
                    out[c] = (top * (1.0 - ay) + bottom * ay) as u8;
                }
                frame.put_pixel(x, y, Rgb(out));
            }
        }
    }
    for px in frame.pixels_mut() {
        let n = (rng.normal() * 3.0) as f32;
        for c in px.0.iter_mut() {
            *c = (*c as f32 + n).clamp(0.0, 255.0) as u8;
        }
    }
    frame
}

fn recompress(engine: &Engine, frame: &RgbImage, quality: u8) -> Result<RgbImage, EngineError> {
    let mut jpeg = Cursor::new(Vec::new());
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, quality)
        .encode_image(frame)
        .map_err(|e| EngineError::Inference(e.to_string()))?;
    engine.decode(jpeg.get_ref())
}

/// The track points and eye aspect ratio of the largest face of a frame.
fn observe(
    engine: &mut Engine,
    frame: &RgbImage,
) -> Result<Option<(Vec<Point>, f32)>, EngineError> {
    let faces = engine.locate(frame)?;
    Ok(faces
        .iter()
        .max_by(|a, b| a.0.bbox.width().total_cmp(&b.0.bbox.width()))
        .map(|(_, lm)| {
            let pts = TRACK_POINTS.iter().map(|&i| lm.get(i)).collect();
            (pts, eye_aspect_ratio_pair(lm))
        }))
}

/// One attack sequence from `photo` (whose face is about `face_px` wide).
pub fn attack_sequence(
    engine: &mut Engine,
    photo: &RgbImage,
    face: (f64, f64, f64),
    frames: usize,
    rng: &mut Rng,
) -> Result<(Vec<Vec<Point>>, Vec<f32>), EngineError> {
    // The face should appear ~90–160 px wide at 50 cm: photo pixels per camera unit.
    let (face_x, face_y, face_px) = face;
    let target = rng.uniform(90.0, 160.0);
    let distance = 0.5;
    let scale = face_px / (target * distance / FOCAL);
    let pose = motion(rng, 40.0, 15.0, [0.06, 0.04, 0.08]);
    let mut points = Vec::new();
    let mut ears = Vec::new();
    for i in 0..frames {
        let (r, t) = pose(i);
        let frame = render_plane(
            photo,
            (face_x, face_y),
            &r,
            [t[0], t[1], distance + t[2]],
            scale,
            rng,
        );
        let quality = rng.uniform(60.0, 92.0) as u8;
        let frame = recompress(engine, &frame, quality)?;
        if let Some((p, ear)) = observe(engine, &frame)? {
            points.push(p);
            ears.push(ear);
        }
    }
    Ok((points, ears))
}

/// A real face's track points in 3-D (pixels, centred), from FaceMesh on a still photo.
pub fn face_model(
    engine: &mut Engine,
    photo: &RgbImage,
) -> Result<Option<Vec<[f64; 3]>>, EngineError> {
    let faces = engine.locate(photo)?;
    let Some((_, lm)) = faces
        .iter()
        .max_by(|a, b| a.0.bbox.width().total_cmp(&b.0.bbox.width()))
    else {
        return Ok(None);
    };
    let pts: Vec<[f64; 3]> = TRACK_POINTS
        .iter()
        .map(|&i| {
            let p = lm.get(i);
            [p.x as f64, p.y as f64, lm.depth[i] as f64]
        })
        .collect();
    let n = pts.len() as f64;
    let c = pts.iter().fold([0.0; 3], |a, p| {
        [a[0] + p[0] / n, a[1] + p[1] / n, a[2] + p[2] / n]
    });
    Ok(Some(
        pts.iter()
            .map(|p| [p[0] - c[0], p[1] - c[1], p[2] - c[2]])
            .collect(),
    ))
}

/// One bona fide sequence: the face model turned and moved, projected, with landmark noise
/// `noise` (fraction of the eye distance, per coordinate).
pub fn bona_fide_sequence(
    model: &[[f64; 3]],
    frames: usize,
    noise: f64,
    rng: &mut Rng,
) -> Vec<Vec<Point>> {
    let eye = {
        let m = |a: [f64; 3], b: [f64; 3]| [(a[0] + b[0]) / 2.0, (a[1] + b[1]) / 2.0];
        let (l, r) = (m(model[0], model[1]), m(model[2], model[3]));
        ((l[0] - r[0]).powi(2) + (l[1] - r[1]).powi(2))
            .sqrt()
            .max(1.0)
    };
    // Eye distance in the frame: 30–60 px at 50 cm (real eye distance ~6.3 cm).
    let target = rng.uniform(30.0, 60.0);
    let distance = 0.5;
    let unit = target * distance / FOCAL / eye; // model pixels → camera units
    let pose = motion(rng, 20.0, 10.0, [0.05, 0.03, 0.06]);
    (0..frames)
        .map(|i| {
            let (r, t) = pose(i);
            model
                .iter()
                .map(|&p| {
                    let q = apply(&r, [p[0] * unit, p[1] * unit, -p[2] * unit]);
                    let mut pt = project([q[0] + t[0], q[1] + t[1], q[2] + distance + t[2]]);
                    pt.x += (rng.normal() * noise * target) as f32;
                    pt.y += (rng.normal() * noise * target) as f32;
                    pt
                })
                .collect()
        })
        .collect()
}

/// Landmark noise on stills: RMS movement of the track points, per coordinate and as a
/// fraction of the eye distance, between a photo and the same photo shifted by a few pixels
/// and re-compressed (the shift taken back out).
pub fn still_landmark_noise(
    engine: &mut Engine,
    photo: &RgbImage,
) -> Result<Option<f64>, EngineError> {
    let Some((a, _)) = observe(engine, photo)? else {
        return Ok(None);
    };
    let (dx, dy) = (3u32, 2u32);
    let mut shifted =
        RgbImage::from_pixel(photo.width() + dx, photo.height() + dy, Rgb([70, 75, 80]));
    image::imageops::overlay(&mut shifted, photo, dx as i64, dy as i64);
    let shifted = recompress(engine, &shifted, 85)?;
    let Some((b, _)) = observe(engine, &shifted)? else {
        return Ok(None);
    };
    let eye = a[0].midpoint(a[1]).distance(a[2].midpoint(a[3])) as f64;
    let sq: f64 = a
        .iter()
        .zip(&b)
        .map(|(p, q)| {
            let (ex, ey) = (
                (q.x - dx as f32 - p.x) as f64,
                (q.y - dy as f32 - p.y) as f64,
            );
            ex * ex + ey * ey
        })
        .sum();
    Ok(Some((sq / (2.0 * a.len() as f64)).sqrt() / eye))
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Tally {
    pub sequences: usize,
    pub live: usize,
    pub spoof: usize,
    pub undetermined: usize,
}

impl Tally {
    fn add(&mut self, v: TrackVerdict) {
        self.sequences += 1;
        match v {
            TrackVerdict::Live => self.live += 1,
            TrackVerdict::Spoof => self.spoof += 1,
            TrackVerdict::Undetermined => self.undetermined += 1,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LivenessReport {
    pub frames_per_sequence: usize,
    pub landmark_noise: f64,
    pub attacks: Tally,
    pub bona_fide: Tally,
    /// Attacks judged live ÷ attacks (ISO/IEC 30107-3).
    pub apcer: f64,
    /// Bona fide judged spoof ÷ bona fide.
    pub bpcer: f64,
    pub attack_undetermined_rate: f64,
    pub bona_fide_undetermined_rate: f64,
    /// (motion, residual) of every sequence, for tuning the limits.
    pub attack_points: Vec<(f32, f32)>,
    pub bona_fide_points: Vec<(f32, f32)>,
}

/// Run the evaluation: `attacks` sequences rendered from `photos` in turn, `bona_fide`
/// sequences from the same photos' face models.
pub fn evaluate(
    engine: &mut Engine,
    photos: &[RgbImage],
    attacks: usize,
    bona_fide: usize,
    frames: usize,
    limits: &TrackLimits,
    progress: &dyn Fn(usize, usize),
) -> Result<LivenessReport, EngineError> {
    let mut rng = Rng(RandomVectors::new(2026));
    let mut noises = Vec::new();
    let mut models = Vec::new();
    let mut placed = Vec::new();
    for photo in photos {
        if let Some(n) = still_landmark_noise(engine, photo)? {
            noises.push(n);
        }
        let faces = engine.locate(photo)?;
        placed.push(
            faces
                .iter()
                .max_by(|a, b| a.0.bbox.width().total_cmp(&b.0.bbox.width()))
                .map(|(d, _)| {
                    let c = d.bbox.center();
                    (c.x as f64, c.y as f64, d.bbox.width() as f64)
                }),
        );
        if let Some(m) = face_model(engine, photo)? {
            models.push(m);
        }
    }
    noises.sort_by(f64::total_cmp);
    let noise = noises.get(noises.len() / 2).copied().unwrap_or(0.01);
    let mut report = LivenessReport {
        frames_per_sequence: frames,
        landmark_noise: noise,
        attacks: Tally::default(),
        bona_fide: Tally::default(),
        apcer: 0.0,
        bpcer: 0.0,
        attack_undetermined_rate: 0.0,
        bona_fide_undetermined_rate: 0.0,
        attack_points: Vec::new(),
        bona_fide_points: Vec::new(),
    };
    for n in 0..attacks {
        let i = n % photos.len();
        let Some(face) = placed[i] else {
            continue;
        };
        let (points, ears) = attack_sequence(engine, &photos[i], face, frames, &mut rng)?;
        let judged = judge_track(&points, &ears, limits);
        report.attacks.add(judged.verdict);
        report
            .attack_points
            .push((judged.motion, judged.planar_residual));
        progress(n + 1, attacks + bona_fide);
    }
    for n in 0..bona_fide {
        if models.is_empty() {
            break;
        }
        let seq = bona_fide_sequence(&models[n % models.len()], frames, noise, &mut rng);
        let judged = judge_track(&seq, &[], limits);
        report.bona_fide.add(judged.verdict);
        report
            .bona_fide_points
            .push((judged.motion, judged.planar_residual));
        progress(attacks + n + 1, attacks + bona_fide);
    }
    let rate = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    report.apcer = rate(report.attacks.live, report.attacks.sequences);
    report.bpcer = rate(report.bona_fide.spoof, report.bona_fide.sequences);
    report.attack_undetermined_rate = rate(report.attacks.undetermined, report.attacks.sequences);
    report.bona_fide_undetermined_rate =
        rate(report.bona_fide.undetermined, report.bona_fide.sequences);
    Ok(report)
}
