//! Decision logic over camera tracks: pure functions, no I/O.

pub mod decision;
pub mod evidence;
pub mod gallery_threshold;
pub mod track_decision;
pub mod track_liveness;
pub mod tracker;
