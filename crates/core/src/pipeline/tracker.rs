//! Face tracks across frames: detections are attached to the track whose last box overlaps
//! them most (IoU), and an embedding that disagrees with the track's own splits it. Each track
//! gathers what its decision needs: embeddings from its best frames, still-liveness verdicts
//! and the landmark motion for track liveness. Pure: time is passed in as milliseconds.

use super::evidence::{Candidate, StillTally};
use crate::engine::geometry::{BoundingBox, Point};

/// A detection must overlap a track's last box at least this much (IoU) to continue it.
pub const MIN_IOU: f32 = 0.3;
/// Landmark frames kept per track for the motion test (about 4 s at 15 fps).
const MAX_MOTION_FRAMES: usize = 60;
/// Embeddings kept per track.
pub const MAX_EMBEDDINGS: usize = 8;

#[derive(Debug, Clone)]
pub struct Track {
    pub id: u64,
    pub bbox: BoundingBox,
    pub first_seen_ms: u64,
    pub last_seen_ms: u64,
    /// Frames with a detection.
    pub frames: u32,
    /// (quality, template) of the embedded frames.
    pub embeddings: Vec<(f32, Vec<f32>)>,
    pub last_embedded_ms: Option<u64>,
    pub best_quality: f32,
    pub still: StillTally,
    /// Track-liveness points and eye aspect ratios per frame.
    pub motion_points: Vec<Vec<Point>>,
    pub eye_ratios: Vec<f32>,
    /// Best candidate of the fused template in the camera's collection.
    pub candidate: Option<Candidate>,
    /// Set once the track has produced its decision (it produces one only).
    pub decided: bool,
}

impl Track {
    fn new(id: u64, bbox: BoundingBox, now_ms: u64) -> Self {
        Self {
            id,
            bbox,
            first_seen_ms: now_ms,
            last_seen_ms: now_ms,
            frames: 1,
            embeddings: Vec::new(),
            last_embedded_ms: None,
            best_quality: 0.0,
            still: StillTally::default(),
            motion_points: Vec::new(),
            eye_ratios: Vec::new(),
            candidate: None,
            decided: false,
        }
    }

    pub fn age_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.first_seen_ms)
    }

    /// Whether this frame of the track is worth an embedding: every frame until `decide_after`
    /// are in, then only frames clearly better than the best so far; a decided track is
    /// re-checked once a second so that a different face under the same box starts a new track.
    pub fn wants_embedding(&self, quality: f32, decide_after: usize, now_ms: u64) -> bool {
        if self.decided {
            return self
                .last_embedded_ms
                .is_none_or(|t| now_ms.saturating_sub(t) >= 1000);
        }
        if self.embeddings.len() < decide_after {
            return true;
        }
        self.embeddings.len() < MAX_EMBEDDINGS && quality > self.best_quality * 1.1
    }

    pub fn add_embedding(&mut self, quality: f32, template: Vec<f32>, now_ms: u64) {
        self.last_embedded_ms = Some(now_ms);
        if self.decided {
            return;
        }
        self.best_quality = self.best_quality.max(quality);
        self.embeddings.push((quality, template));
        if self.embeddings.len() > MAX_EMBEDDINGS {
            // Keep the best.
            let worst = self
                .embeddings
                .iter()
                .enumerate()
                .min_by(|a, b| a.1 .0.total_cmp(&b.1 .0))
                .map(|(i, _)| i)
                .unwrap_or(0);
            self.embeddings.remove(worst);
        }
    }

    pub fn add_motion(&mut self, points: Vec<Point>, eye_ratio: f32) {
        if self.motion_points.len() == MAX_MOTION_FRAMES {
            self.motion_points.remove(0);
            self.eye_ratios.remove(0);
        }
        self.motion_points.push(points);
        self.eye_ratios.push(eye_ratio);
    }

    /// The track's template: the quality-weighted mean of its embeddings, L2-normalised when
    /// the embedder compares by cosine.
    pub fn fused(&self, normalise: bool) -> Option<Vec<f32>> {
        fuse(&self.embeddings, normalise)
    }
}

/// Quality-weighted mean of templates (see [`Track::fused`]).
pub fn fuse(embeddings: &[(f32, Vec<f32>)], normalise: bool) -> Option<Vec<f32>> {
    let dim = embeddings.first()?.1.len();
    let mut sum = vec![0f32; dim];
    let mut weight = 0f32;
    for (q, t) in embeddings {
        let w = q.max(1e-3);
        weight += w;
        for (s, v) in sum.iter_mut().zip(t) {
            *s += w * v;
        }
    }
    sum.iter_mut().for_each(|s| *s /= weight);
    if normalise {
        let norm = sum.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            sum.iter_mut().for_each(|s| *s /= norm);
        }
    }
    Some(sum)
}

#[derive(Debug, Default)]
pub struct Tracker {
    next_id: u64,
    tracks: Vec<Track>,
    lost_after_ms: u64,
}

impl Tracker {
    pub fn new(lost_after_ms: u64) -> Self {
        Self {
            next_id: 1,
            tracks: Vec::new(),
            lost_after_ms,
        }
    }

    /// Attach this frame's detections to tracks; returns, per detection, its track id. New
    /// tracks are started for detections that continue none.
    pub fn update(&mut self, boxes: &[BoundingBox], now_ms: u64) -> Vec<u64> {
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (t, track) in self.tracks.iter().enumerate() {
            for (d, b) in boxes.iter().enumerate() {
                let iou = track.bbox.intersection_over_union(b);
                if iou >= MIN_IOU {
                    pairs.push((iou, t, d));
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut track_taken = vec![false; self.tracks.len()];
        let mut assigned: Vec<Option<u64>> = vec![None; boxes.len()];
        for (_, t, d) in pairs {
            if track_taken[t] || assigned[d].is_some() {
                continue;
            }
            track_taken[t] = true;
            let track = &mut self.tracks[t];
            track.bbox = boxes[d];
            track.last_seen_ms = now_ms;
            track.frames += 1;
            assigned[d] = Some(track.id);
        }
        assigned
            .into_iter()
            .enumerate()
            .map(|(d, id)| id.unwrap_or_else(|| self.start(boxes[d], now_ms)))
            .collect()
    }

    fn start(&mut self, bbox: BoundingBox, now_ms: u64) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.tracks.push(Track::new(id, bbox, now_ms));
        id
    }

    /// Remove and return the tracks not seen for longer than the loss timeout.
    pub fn take_lost(&mut self, now_ms: u64) -> Vec<Track> {
        let lost_after = self.lost_after_ms;
        let (lost, kept) = std::mem::take(&mut self.tracks)
            .into_iter()
            .partition(|t| now_ms.saturating_sub(t.last_seen_ms) > lost_after);
        self.tracks = kept;
        lost
    }

    /// End track `id` (another face took its place) and start a new one at its box.
    pub fn split(&mut self, id: u64, now_ms: u64) -> Option<(Track, u64)> {
        let at = self.tracks.iter().position(|t| t.id == id)?;
        let old = self.tracks.remove(at);
        let new_id = self.start(old.bbox, now_ms);
        Some((old, new_id))
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut Track> {
        self.tracks.iter_mut().find(|t| t.id == id)
    }

    pub fn tracks(&self) -> &[Track] {
        &self.tracks
    }

    pub fn tracks_mut(&mut self) -> &mut [Track] {
        &mut self.tracks
    }

    /// Remove and return every track (shutdown).
    pub fn take_all(&mut self) -> Vec<Track> {
        std::mem::take(&mut self.tracks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(x: f32) -> BoundingBox {
        BoundingBox {
            left: x,
            top: 100.0,
            right: x + 100.0,
            bottom: 220.0,
        }
    }

    #[test]
    fn a_face_moving_a_little_between_frames_keeps_its_track() {
        let mut t = Tracker::new(500);
        let first = t.update(&[b(100.0)], 0);
        let second = t.update(&[b(110.0)], 66);
        let third = t.update(&[b(125.0)], 133);
        assert_eq!(first, second);
        assert_eq!(second, third);
        assert_eq!(t.tracks()[0].frames, 3);
    }

    #[test]
    fn two_faces_get_two_tracks_and_each_keeps_its_own() {
        let mut t = Tracker::new(500);
        let a = t.update(&[b(100.0), b(600.0)], 0);
        assert_ne!(a[0], a[1]);
        // Reported in the other order on the next frame.
        let c = t.update(&[b(605.0), b(98.0)], 66);
        assert_eq!(c, vec![a[1], a[0]]);
    }

    #[test]
    fn a_track_unseen_past_the_timeout_ends_and_a_returning_face_gets_a_new_track() {
        let mut t = Tracker::new(500);
        let first = t.update(&[b(100.0)], 0);
        assert!(t.take_lost(400).is_empty());
        let lost = t.take_lost(501);
        assert_eq!(lost.len(), 1);
        assert_eq!(lost[0].id, first[0]);
        let again = t.update(&[b(100.0)], 600);
        assert_ne!(again, first);
    }

    #[test]
    fn a_split_ends_the_old_track_and_continues_the_box_under_a_new_id() {
        let mut t = Tracker::new(500);
        let id = t.update(&[b(100.0)], 0)[0];
        let (old, new_id) = t.split(id, 10).unwrap();
        assert_eq!(old.id, id);
        assert_ne!(new_id, id);
        assert_eq!(t.update(&[b(100.0)], 20), vec![new_id]);
    }

    #[test]
    fn fusion_weights_templates_by_quality_and_normalises_for_cosine() {
        let f = fuse(&[(3.0, vec![1.0, 0.0]), (1.0, vec![0.0, 1.0])], false).unwrap();
        assert_eq!(f, vec![0.75, 0.25]);
        let n = fuse(&[(1.0, vec![2.0, 0.0]), (1.0, vec![0.0, 2.0])], true).unwrap();
        assert!((n[0] - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
        assert!(fuse(&[], true).is_none());
    }

    #[test]
    fn an_undecided_track_embeds_every_frame_until_enough_then_only_better_frames() {
        let mut track = Track::new(1, b(0.0), 0);
        for i in 0..3 {
            assert!(track.wants_embedding(0.5, 3, i));
            track.add_embedding(0.5, vec![1.0], i);
        }
        assert!(!track.wants_embedding(0.52, 3, 4));
        assert!(track.wants_embedding(0.6, 3, 4));
        track.decided = true;
        assert!(!track.wants_embedding(0.9, 3, 500));
        assert!(track.wants_embedding(0.9, 3, 1002));
    }
}
