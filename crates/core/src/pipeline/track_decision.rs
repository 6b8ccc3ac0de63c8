//! A track's decision from what it has gathered: its evidence read into [`decide`], with the
//! head-motion test run when the camera asks for track liveness. Pure apart from that test's
//! arithmetic; the camera worker calls it on every change of a track and when one ends.

use super::decision::{decide, Decision, Evidence, Policy};
use super::track_liveness::{judge_track, TrackLimits};
use super::tracker::Track;
use crate::config::LivenessMode;

/// Decide `track` at `now_ms`; `ended` when its face is gone (or the daemon stops). `None`
/// while it should wait for more frames.
pub fn decide_track(
    policy: &Policy,
    limits: &TrackLimits,
    track: &Track,
    now_ms: u64,
    ended: bool,
) -> Option<Decision> {
    let motion = (policy.liveness == LivenessMode::Track && track.motion_points.len() >= 2)
        .then(|| judge_track(&track.motion_points, &track.eye_ratios, limits));
    decide(
        policy,
        &Evidence {
            embeddings: track.embeddings.len(),
            best: track.candidate.clone(),
            still: &track.still,
            motion: motion.as_ref(),
            age_ms: track.age_ms(now_ms),
            ended,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::geometry::BoundingBox;
    use crate::engine::liveness::LivenessCode;
    use crate::pipeline::decision::{DecisionKind, LivenessState};
    use crate::pipeline::evidence::Candidate;
    use crate::pipeline::tracker::Tracker;

    fn policy(liveness: LivenessMode) -> Policy {
        Policy {
            min_similarity_score: 0.7,
            liveness,
            decide_after: 3,
            timeout_ms: 3000,
        }
    }

    fn one_track(embeddings: usize, candidate: f32) -> Track {
        let mut tracker = Tracker::new(500);
        let b = BoundingBox {
            left: 100.0,
            top: 100.0,
            right: 300.0,
            bottom: 300.0,
        };
        let id = tracker.update(&[b], 0)[0];
        let t = tracker.get_mut(id).unwrap();
        for n in 0..embeddings {
            t.add_embedding(0.5, vec![1.0, 0.0], n as u64 * 66);
        }
        t.candidate = Some(Candidate {
            person_id: "alice".into(),
            score: candidate,
        });
        t.clone()
    }

    #[test]
    fn a_matching_track_with_live_still_evidence_is_a_match() {
        let mut t = one_track(1, 0.9);
        t.still.add(true, 0.95, LivenessCode::Ok);
        let d = decide_track(
            &policy(LivenessMode::Still),
            &TrackLimits::default(),
            &t,
            200,
            false,
        )
        .expect("decided");
        assert_eq!(d.kind, DecisionKind::Match);
        assert_eq!(d.liveness, LivenessState::Live);
    }

    #[test]
    fn a_track_liveness_camera_waits_for_head_motion_until_the_track_ends() {
        let mut t = one_track(3, 0.9);
        t.still.add(true, 0.95, LivenessCode::Ok);
        let p = policy(LivenessMode::Track);
        let limits = TrackLimits::default();
        assert_eq!(
            decide_track(&p, &limits, &t, 200, false),
            None,
            "no motion yet"
        );
        let d = decide_track(&p, &limits, &t, 200, true).expect("an ended track is decided");
        assert_ne!(d.kind, DecisionKind::Match, "no motion, no match: {d:?}");
    }

    #[test]
    fn a_track_without_a_match_is_unknown_after_enough_embeddings() {
        let t = one_track(3, 0.2);
        let d = decide_track(
            &policy(LivenessMode::Off),
            &TrackLimits::default(),
            &t,
            300,
            false,
        )
        .expect("decided");
        assert_eq!(d.kind, DecisionKind::Unknown);
    }
}
