//! A one-frame mailbox between a capture thread and its pipeline: the newest frame replaces an
//! unconsumed one (counted as dropped), so a pipeline slower than its camera always works on
//! the latest picture and memory never grows.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use super::Frame;

#[derive(Default)]
pub struct FrameSlot {
    state: Mutex<SlotState>,
    changed: Condvar,
}

#[derive(Default)]
struct SlotState {
    frame: Option<Frame>,
    closed: bool,
    dropped: u64,
}

pub enum Take {
    Frame(Frame),
    /// Nothing arrived within the timeout.
    Empty,
    /// The capture side has finished and the slot is empty.
    Closed,
}

impl FrameSlot {
    pub fn new() -> Self {
        Self::default()
    }

    /// Leave `frame` for the consumer; returns whether an unconsumed frame was replaced.
    pub fn put(&self, frame: Frame) -> bool {
        let mut s = self.state.lock().unwrap();
        let replaced = s.frame.replace(frame).is_some();
        if replaced {
            s.dropped += 1;
        }
        self.changed.notify_all();
        replaced
    }

    /// Wait (up to `timeout`) until the consumer has taken the previous frame; for sources
    /// that are not paced by a clock and should go only as fast as the pipeline.
    pub fn wait_empty(&self, timeout: Duration) -> bool {
        let s = self.state.lock().unwrap();
        let (s, _) = self
            .changed
            .wait_timeout_while(s, timeout, |s| s.frame.is_some() && !s.closed)
            .unwrap();
        s.frame.is_none()
    }

    pub fn take(&self, timeout: Duration) -> Take {
        let s = self.state.lock().unwrap();
        let (mut s, _) = self
            .changed
            .wait_timeout_while(s, timeout, |s| s.frame.is_none() && !s.closed)
            .unwrap();
        let taken = s.frame.take();
        self.changed.notify_all();
        match taken {
            Some(f) => Take::Frame(f),
            None if s.closed => Take::Closed,
            None => Take::Empty,
        }
    }

    /// No more frames will come (the capture thread ended).
    pub fn close(&self) {
        self.state.lock().unwrap().closed = true;
        self.changed.notify_all();
    }

    pub fn dropped(&self) -> u64 {
        self.state.lock().unwrap().dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::{Instant, SystemTime};

    fn frame(seq: u64) -> Frame {
        Frame {
            image: Arc::new(image::RgbImage::new(2, 2)),
            seq,
            captured_at: Instant::now(),
            captured_wall: SystemTime::now(),
        }
    }

    #[test]
    fn a_slow_consumer_gets_the_newest_frame_and_the_rest_are_counted_as_dropped() {
        let slot = FrameSlot::new();
        for seq in 0..5 {
            slot.put(frame(seq));
        }
        match slot.take(Duration::ZERO) {
            Take::Frame(f) => assert_eq!(f.seq, 4),
            _ => panic!("no frame"),
        }
        assert_eq!(slot.dropped(), 4);
        assert!(matches!(slot.take(Duration::from_millis(1)), Take::Empty));
    }

    #[test]
    fn a_closed_slot_still_hands_out_its_last_frame_then_reports_closed() {
        let slot = FrameSlot::new();
        slot.put(frame(7));
        slot.close();
        assert!(matches!(slot.take(Duration::ZERO), Take::Frame(f) if f.seq == 7));
        assert!(matches!(slot.take(Duration::ZERO), Take::Closed));
    }
}
