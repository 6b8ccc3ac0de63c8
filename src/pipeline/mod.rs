//! Decision logic over camera tracks: pure functions, no I/O.

pub mod track_liveness;
