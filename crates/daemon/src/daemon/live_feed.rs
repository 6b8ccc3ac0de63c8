//! Decisions as they happen, for the console's `GET /events/stream`: each one's event JSON
//! (without thumbnail) on a bounded broadcast channel. A slow reader misses events (and is
//! told so) rather than holding the cameras back; with no reader a send costs nothing.

use std::sync::Arc;

use tokio::sync::{broadcast, watch};

/// Events kept for a reader that has fallen behind.
const BACKLOG: usize = 64;

pub struct LiveFeed {
    events: broadcast::Sender<Arc<str>>,
    /// Set at shutdown: every reader's stream ends.
    closed: watch::Sender<bool>,
}

impl Default for LiveFeed {
    fn default() -> Self {
        Self {
            events: broadcast::channel(BACKLOG).0,
            closed: watch::channel(false).0,
        }
    }
}

impl LiveFeed {
    /// Offer one event's JSON to the readers there are (none: dropped).
    pub fn send(&self, json: String) {
        if self.events.receiver_count() > 0 {
            let _ = self.events.send(Arc::from(json));
        }
    }

    /// A reader: the events from now on, and the shutdown flag.
    pub fn subscribe(&self) -> (broadcast::Receiver<Arc<str>>, watch::Receiver<bool>) {
        (self.events.subscribe(), self.closed.subscribe())
    }

    /// End every reader's stream (shutdown).
    pub fn close(&self) {
        self.closed.send_replace(true);
    }
}
