//! The bookkeeping of one MQTT connection, without I/O: which outbox messages are handed to
//! rumqttc, which went out under which packet id, which the broker acknowledged, how much room
//! the in-flight window has, and which message keeps making the broker drop the connection.
//! The publisher feeds it what rumqttc reports and asks it what to do; the tests below feed it
//! packet by packet.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Outbox messages published and not yet acknowledged, at most.
pub const WINDOW: usize = 32;
/// Connections a message may be the oldest unacknowledged one on when the broker drops them,
/// before it is taken for the cause and set aside as a dead letter.
pub const MAX_STRIKES: u32 = 3;
/// A dropped connection is blamed on the message in flight only if it was sent this recently:
/// a broker refusing a packet drops the connection at once, a flaky network at any time.
pub const STRIKE_WINDOW: Duration = Duration::from_secs(5);

/// A publish request handed to rumqttc whose `Outgoing::Publish` has not been seen yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    /// An outbox message, by key.
    Outbox(u64),
    /// Availability or discovery: not in the outbox.
    Other,
}

/// One connection's state; a new connection starts a new one.
#[derive(Debug, Default)]
pub struct Session {
    connected: bool,
    /// Requests handed to rumqttc, in order; rumqttc writes them in the same order.
    sent: VecDeque<Sent>,
    /// Packet id → outbox key and send time of published, unacknowledged outbox messages.
    inflight: HashMap<u16, (u64, Instant)>,
    /// The last outbox key handed over (or set aside): the next read starts after it.
    last_queued: Option<u64>,
}

impl Session {
    /// The broker accepted the connection (CONNACK).
    pub fn connected() -> Self {
        Self {
            connected: true,
            ..Self::default()
        }
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// No outbox message is waiting for its PUBACK.
    pub fn nothing_in_flight(&self) -> bool {
        self.inflight.is_empty()
    }

    /// Outbox messages that may be handed over now.
    pub fn room(&self) -> usize {
        let queued = self
            .sent
            .iter()
            .filter(|s| matches!(s, Sent::Outbox(_)))
            .count();
        WINDOW.saturating_sub(self.inflight.len() + queued)
    }

    /// Where the next read of the outbox starts (after this key).
    pub fn last_queued(&self) -> Option<u64> {
        self.last_queued
    }

    /// Outbox message `key` was handed to rumqttc.
    pub fn queued(&mut self, key: u64) {
        self.sent.push_back(Sent::Outbox(key));
        self.last_queued = Some(key);
    }

    /// Outbox message `key` was set aside instead of sent: read on after it.
    pub fn skipped(&mut self, key: u64) {
        self.last_queued = Some(key);
    }

    /// A publish that is not an outbox message (availability, discovery) was handed over.
    pub fn queued_other(&mut self) {
        self.sent.push_back(Sent::Other);
    }

    /// rumqttc wrote the next requested PUBLISH as packet `pkid`; the outbox key, if it was an
    /// outbox message.
    pub fn published(&mut self, pkid: u16, now: Instant) -> Option<u64> {
        match self.sent.pop_front()? {
            Sent::Outbox(key) => {
                self.inflight.insert(pkid, (key, now));
                Some(key)
            }
            Sent::Other => None,
        }
    }

    /// The broker acknowledged packet `pkid`; the outbox key it carried, if any.
    pub fn acknowledged(&mut self, pkid: u16) -> Option<u64> {
        self.inflight.remove(&pkid).map(|(key, _)| key)
    }

    /// The oldest outbox message in flight, if it went out within [`STRIKE_WINDOW`] of `now`:
    /// what to blame when the broker drops the connection now.
    pub fn suspect(&self, now: Instant) -> Option<u64> {
        self.inflight
            .values()
            .min_by_key(|(key, _)| *key)
            .filter(|(_, sent)| now.saturating_duration_since(*sent) <= STRIKE_WINDOW)
            .map(|(key, _)| *key)
    }
}

/// Which outbox message keeps making the broker drop the connection, across connections.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Strikes {
    key: Option<u64>,
    count: u32,
}

impl Strikes {
    /// A connection ended in an error with `suspect` ([`Session::suspect`]) in flight. Returns
    /// the key to set aside when it has now had [`MAX_STRIKES`].
    pub fn connection_lost(&mut self, suspect: Option<u64>) -> Option<u64> {
        let Some(key) = suspect else {
            // A drop with nothing (recent) in flight: the network, not a message.
            *self = Strikes::default();
            return None;
        };
        if self.key == Some(key) {
            self.count += 1;
        } else {
            *self = Strikes {
                key: Some(key),
                count: 1,
            };
        }
        (self.count >= MAX_STRIKES).then(|| {
            *self = Strikes::default();
            key
        })
    }

    /// The broker acknowledged `key`: whatever drops the connection, it is not this message.
    pub fn acknowledged(&mut self, key: u64) {
        if self.key == Some(key) {
            *self = Strikes::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outbox_message_is_known_by_its_packet_id_only_once_written_and_until_acknowledged() {
        let t = Instant::now();
        let mut s = Session::connected();
        s.queued_other(); // online
        s.queued(7);
        s.queued(8);
        assert_eq!(
            s.published(1, t),
            None,
            "the status publish is not an outbox message"
        );
        assert_eq!(s.published(2, t), Some(7));
        assert!(!s.nothing_in_flight());
        assert_eq!(s.acknowledged(1), None);
        assert_eq!(s.acknowledged(2), Some(7));
        assert_eq!(
            s.acknowledged(2),
            None,
            "a repeated PUBACK removes nothing twice"
        );
        assert_eq!(s.published(3, t), Some(8));
        assert_eq!(s.acknowledged(3), Some(8));
        assert!(s.nothing_in_flight());
        assert_eq!(s.published(4, t), None, "nothing was requested");
    }

    #[test]
    fn the_window_counts_queued_and_unacknowledged_outbox_messages_only() {
        let t = Instant::now();
        let mut s = Session::connected();
        assert_eq!(s.room(), WINDOW);
        for _ in 0..5 {
            s.queued_other();
        }
        assert_eq!(s.room(), WINDOW, "discovery does not take outbox room");
        for key in 0..WINDOW as u64 {
            s.queued(key);
        }
        assert_eq!(s.room(), 0);
        for pkid in 1..=5 {
            s.published(pkid, t);
        }
        s.published(6, t);
        assert_eq!(s.room(), 0, "written but unacknowledged still counts");
        s.acknowledged(6);
        assert_eq!(s.room(), 1);
        assert_eq!(s.last_queued(), Some(WINDOW as u64 - 1));
        s.skipped(100);
        assert_eq!(s.last_queued(), Some(100));
    }

    #[test]
    fn the_suspect_is_the_oldest_message_in_flight_and_only_while_it_is_recent() {
        let t = Instant::now();
        let mut s = Session::connected();
        s.queued(9);
        s.queued(4);
        s.published(1, t);
        s.published(2, t);
        assert_eq!(s.suspect(t + Duration::from_secs(1)), Some(4));
        assert_eq!(s.suspect(t + STRIKE_WINDOW + Duration::from_secs(1)), None);
        assert_eq!(Session::connected().suspect(t), None);
    }

    #[test]
    fn a_message_is_set_aside_after_the_broker_drops_it_three_times_in_a_row() {
        let mut s = Strikes::default();
        assert_eq!(s.connection_lost(Some(7)), None);
        assert_eq!(s.connection_lost(Some(7)), None);
        assert_eq!(s.connection_lost(Some(7)), Some(7));
        assert_eq!(s, Strikes::default());
        // A drop with nothing in flight is the network: the count starts again.
        s.connection_lost(Some(7));
        s.connection_lost(Some(7));
        assert_eq!(s.connection_lost(None), None);
        assert_eq!(s.connection_lost(Some(7)), None);
    }

    #[test]
    fn an_acknowledged_or_different_message_restarts_the_count() {
        let mut s = Strikes::default();
        s.connection_lost(Some(7));
        s.connection_lost(Some(7));
        s.acknowledged(7);
        assert_eq!(s.connection_lost(Some(7)), None);
        s.connection_lost(Some(8));
        s.connection_lost(Some(7));
        assert_eq!(s.connection_lost(Some(7)), None);
        assert_eq!(s.connection_lost(Some(7)), Some(7));
    }
}
