//! What a track gathers and its decision reads: the best candidate of its fused template and
//! the tally of still-liveness verdicts. Their own module, so that the tracker (which gathers)
//! and the decision (which reads) depend on it and not on each other.

use crate::engine::liveness::LivenessCode;

/// The best candidate of the track's fused template.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub person_id: String,
    pub score: f32,
}

/// Still-image liveness verdicts seen on a track's frames.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StillTally {
    /// Frames judged live, and the best live score among them.
    pub live: u32,
    pub best_live_score: f32,
    /// Frames the PAD model judged a presentation attack (`FACE_NOT_LIVE`).
    pub attack: u32,
    /// The last code that was neither (capture conditions: too small, turned, eyes closed…).
    pub last_other: Option<LivenessCode>,
}

impl StillTally {
    pub fn add(&mut self, is_live: bool, score: f32, code: LivenessCode) {
        if is_live {
            self.live += 1;
            self.best_live_score = self.best_live_score.max(score);
        } else if code == LivenessCode::FaceNotLive {
            self.attack += 1;
        } else {
            self.last_other = Some(code);
        }
    }
}
