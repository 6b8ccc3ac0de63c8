//! The decision of a track — `match`, `unknown`, `spoof` or `undetermined` — with its reasons,
//! and the per-camera hold-off that keeps one person from producing a stream of events. Pure.

use std::collections::HashMap;

use serde::Serialize;

use super::evidence::{Candidate, StillTally};
use super::track_liveness::{TrackLiveness, TrackVerdict};
use crate::config::LivenessMode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DecisionKind {
    Match,
    Unknown,
    Spoof,
    Undetermined,
}

impl DecisionKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Match => "match",
            Self::Unknown => "unknown",
            Self::Spoof => "spoof",
            Self::Undetermined => "undetermined",
        }
    }
}

/// What the liveness evidence of a track says so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LivenessState {
    Live,
    Spoof,
    /// Not established yet (or never: the face was too small, turned, still…).
    Undetermined,
    /// The camera does not require liveness.
    Skipped,
}

/// A camera's decision policy (from its config).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub min_similarity_score: f32,
    pub liveness: LivenessMode,
    /// Embedded frames without a match before `unknown`.
    pub decide_after: usize,
    /// A track still waiting after this long is decided with what it has.
    pub timeout_ms: u64,
}

/// Everything a track has gathered.
#[derive(Debug, Clone)]
pub struct Evidence<'a> {
    pub embeddings: usize,
    /// Top-1 of the fused template in the camera's collection, whatever its score.
    pub best: Option<Candidate>,
    pub still: &'a StillTally,
    pub motion: Option<&'a TrackLiveness>,
    pub age_ms: u64,
    /// The track has ended (face gone) or the daemon is stopping.
    pub ended: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub kind: DecisionKind,
    pub liveness: LivenessState,
    /// Why this decision (identity first, then what liveness adds).
    pub reasons: Vec<String>,
    /// What the liveness evidence says, on its own (empty when live or not required).
    pub liveness_reasons: Vec<String>,
}

/// The liveness state of the evidence under `mode`, with its reasons.
pub fn liveness_state(mode: LivenessMode, ev: &Evidence) -> (LivenessState, Vec<String>) {
    let mut reasons = Vec::new();
    if mode == LivenessMode::Off {
        return (LivenessState::Skipped, reasons);
    }
    let s = ev.still;
    let still = if s.attack >= 2 && s.attack > s.live {
        reasons.push(format!(
            "presentation attack: the PAD model rejected {} frame(s) (FACE_NOT_LIVE)",
            s.attack
        ));
        LivenessState::Spoof
    } else if s.live >= 1 && s.live >= s.attack {
        LivenessState::Live
    } else {
        match (s.attack, s.last_other) {
            (a, _) if a > 0 => {
                reasons.push("the PAD model rejected one frame (FACE_NOT_LIVE)".into())
            }
            (_, Some(code)) => reasons.push(format!("still liveness not established: {code}")),
            _ => reasons.push("still liveness not checked yet".into()),
        }
        LivenessState::Undetermined
    };
    if mode == LivenessMode::Still || still == LivenessState::Spoof {
        return (still, reasons);
    }
    let motion = match ev.motion {
        Some(m) => {
            reasons.extend(m.reasons.iter().cloned());
            match m.verdict {
                TrackVerdict::Live => LivenessState::Live,
                TrackVerdict::Spoof => LivenessState::Spoof,
                TrackVerdict::Undetermined => LivenessState::Undetermined,
            }
        }
        None => {
            reasons.push("no head motion measured yet".into());
            LivenessState::Undetermined
        }
    };
    let state = match (still, motion) {
        (_, LivenessState::Spoof) => LivenessState::Spoof,
        (LivenessState::Live, LivenessState::Live) => LivenessState::Live,
        _ => LivenessState::Undetermined,
    };
    (state, reasons)
}

/// The track's decision, or `None` while it should wait for more frames.
pub fn decide(policy: &Policy, ev: &Evidence) -> Option<Decision> {
    if ev.embeddings == 0 {
        // Nothing was ever good enough to embed: no identity claim, no event.
        return None;
    }
    let (liveness, liveness_reasons) = liveness_state(policy.liveness, ev);
    let mut reasons = liveness_reasons.clone();
    let out_of_time = ev.ended || ev.age_ms >= policy.timeout_ms;
    let decision = |kind, reasons| {
        Some(Decision {
            kind,
            liveness,
            reasons,
            liveness_reasons: liveness_reasons.clone(),
        })
    };
    if liveness == LivenessState::Spoof {
        return decision(DecisionKind::Spoof, reasons);
    }
    let threshold = policy.min_similarity_score;
    match &ev.best {
        Some(c) if c.score >= threshold => {
            let why = format!("{} scored {:.3} >= {threshold}", c.person_id, c.score);
            match liveness {
                LivenessState::Live | LivenessState::Skipped => {
                    decision(DecisionKind::Match, vec![why])
                }
                _ if out_of_time => {
                    reasons.insert(0, why);
                    decision(DecisionKind::Undetermined, reasons)
                }
                _ => None,
            }
        }
        best => {
            if ev.embeddings < policy.decide_after && !out_of_time {
                return None;
            }
            let why = match best {
                Some(c) => format!(
                    "best candidate {} scored {:.3} < {threshold} over {} frame(s)",
                    c.person_id, c.score, ev.embeddings
                ),
                None => "no enrolled person came close (or the collection is empty)".into(),
            };
            let mut all = vec![why];
            if liveness != LivenessState::Skipped {
                all.extend(reasons);
            }
            decision(DecisionKind::Unknown, all)
        }
    }
}

/// No second event for the same person on a camera within the hold-off.
#[derive(Debug, Default)]
pub struct HoldOff {
    hold_ms: u64,
    last: HashMap<String, u64>,
}

impl HoldOff {
    pub fn new(hold_ms: u64) -> Self {
        Self {
            hold_ms,
            last: HashMap::new(),
        }
    }

    /// Whether an event about `person_id` may go out now; if so, it is recorded.
    pub fn allow(&mut self, person_id: &str, now_ms: u64) -> bool {
        if let Some(&t) = self.last.get(person_id) {
            if now_ms.saturating_sub(t) < self.hold_ms {
                return false;
            }
        }
        self.last.insert(person_id.to_owned(), now_ms);
        let hold = self.hold_ms;
        self.last
            .retain(|_, t| now_ms.saturating_sub(*t) < hold.max(1));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::liveness::LivenessCode;

    const POLICY: Policy = Policy {
        min_similarity_score: 0.7,
        liveness: LivenessMode::Still,
        decide_after: 3,
        timeout_ms: 3000,
    };

    fn live() -> StillTally {
        let mut s = StillTally::default();
        s.add(true, 0.9, LivenessCode::Ok);
        s
    }

    fn ev<'a>(still: &'a StillTally, score: Option<f32>, embeddings: usize) -> Evidence<'a> {
        Evidence {
            embeddings,
            best: score.map(|score| Candidate {
                person_id: "alice".into(),
                score,
            }),
            still,
            motion: None,
            age_ms: 100,
            ended: false,
        }
    }

    #[test]
    fn a_live_face_above_the_threshold_is_a_match_on_its_first_frame() {
        let s = live();
        let d = decide(&POLICY, &ev(&s, Some(0.91), 1)).unwrap();
        assert_eq!(d.kind, DecisionKind::Match);
        assert_eq!(d.liveness, LivenessState::Live);
        assert!(
            d.reasons[0].contains("alice scored 0.910"),
            "{:?}",
            d.reasons
        );
    }

    #[test]
    fn a_match_waits_for_liveness_and_is_undetermined_when_time_runs_out() {
        let mut s = StillTally::default();
        s.add(false, 0.0, LivenessCode::FaceTooSmall);
        assert_eq!(decide(&POLICY, &ev(&s, Some(0.95), 2)), None);
        let mut late = ev(&s, Some(0.95), 2);
        late.age_ms = 3000;
        let d = decide(&POLICY, &late).unwrap();
        assert_eq!(d.kind, DecisionKind::Undetermined);
        assert!(
            d.reasons.iter().any(|r| r.contains("FACE_TOO_SMALL")),
            "{:?}",
            d.reasons
        );
        // The liveness report carries only what liveness says, not the identity claim.
        assert_eq!(
            d.liveness_reasons,
            vec!["still liveness not established: FACE_TOO_SMALL".to_owned()]
        );
        assert!(d.reasons[0].contains("alice scored"), "{:?}", d.reasons);
    }

    #[test]
    fn a_stranger_is_unknown_only_after_enough_frames_or_when_the_track_ends() {
        let s = live();
        assert_eq!(decide(&POLICY, &ev(&s, Some(0.3), 2)), None);
        let d = decide(&POLICY, &ev(&s, Some(0.3), 3)).unwrap();
        assert_eq!(d.kind, DecisionKind::Unknown);
        let mut ended = ev(&s, None, 1);
        ended.ended = true;
        let d = decide(&POLICY, &ended).unwrap();
        assert_eq!(d.kind, DecisionKind::Unknown);
        assert_eq!(
            d.reasons[0],
            "no enrolled person came close (or the collection is empty)"
        );
    }

    #[test]
    fn repeated_pad_rejections_make_a_spoof_even_for_an_enrolled_face() {
        let mut s = StillTally::default();
        s.add(false, 0.1, LivenessCode::FaceNotLive);
        assert_eq!(decide(&POLICY, &ev(&s, Some(0.95), 1)), None);
        s.add(false, 0.05, LivenessCode::FaceNotLive);
        let d = decide(&POLICY, &ev(&s, Some(0.95), 2)).unwrap();
        assert_eq!(d.kind, DecisionKind::Spoof);
        assert_eq!(d.liveness, LivenessState::Spoof);
    }

    #[test]
    fn with_liveness_off_a_match_needs_no_liveness_evidence() {
        let s = StillTally::default();
        let policy = Policy {
            liveness: LivenessMode::Off,
            ..POLICY
        };
        let d = decide(&policy, &ev(&s, Some(0.8), 1)).unwrap();
        assert_eq!(
            (d.kind, d.liveness),
            (DecisionKind::Match, LivenessState::Skipped)
        );
    }

    #[test]
    fn track_mode_needs_head_motion_as_well_as_still_liveness() {
        let s = live();
        let policy = Policy {
            liveness: LivenessMode::Track,
            ..POLICY
        };
        assert_eq!(decide(&policy, &ev(&s, Some(0.9), 1)), None);
        let motion = TrackLiveness {
            verdict: TrackVerdict::Live,
            score: 0.9,
            motion: 0.1,
            planar_residual: 0.1,
            blinks: 0,
            reasons: vec![],
        };
        let mut e = ev(&s, Some(0.9), 1);
        e.motion = Some(&motion);
        assert_eq!(decide(&policy, &e).unwrap().kind, DecisionKind::Match);
        let flat = TrackLiveness {
            verdict: TrackVerdict::Spoof,
            ..motion.clone()
        };
        e.motion = Some(&flat);
        assert_eq!(decide(&policy, &e).unwrap().kind, DecisionKind::Spoof);
    }

    #[test]
    fn a_track_that_was_never_embedded_produces_no_event() {
        let s = live();
        let mut e = ev(&s, None, 0);
        e.ended = true;
        assert_eq!(decide(&POLICY, &e), None);
    }

    #[test]
    fn the_same_person_is_held_off_on_a_camera_but_others_are_not() {
        let mut h = HoldOff::new(10_000);
        assert!(h.allow("alice", 0));
        assert!(!h.allow("alice", 9_999));
        assert!(h.allow("bob", 5_000));
        assert!(h.allow("alice", 10_000));
    }
}
