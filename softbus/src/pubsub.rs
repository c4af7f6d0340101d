//! Publish/subscribe over one session: topics, per-topic sequence numbers, cumulative
//! acknowledgements and retransmission, so no message is lost to a connected subscriber.
//!
//! Design: one [`PubSub`] per session plays both roles. As a subscriber it asks the peer for
//! a topic ([`PubSub::subscribe`]), delivers the peer's publications on it in sequence order
//! exactly once (buffering ones that arrive early, dropping copies) and acknowledges the
//! highest sequence number received in order. As a publisher it remembers which topics the
//! peer subscribed to; [`PubSub::publish`] numbers a message per topic (from 1), keeps it
//! until acknowledged and sends it again when no acknowledgement came within
//! `retransmit_after`. The session below is reliable and ordered (TCP) but records can still
//! be dropped as replays or tampered; acknowledgements make delivery independent of that.
//!
//! Bounds: at most `max_topics` topics each way, at most `max_unacked` messages waiting for
//! an acknowledgement per topic (beyond that `publish` refuses with
//! [`PubSubError::Backpressure`] rather than drop a message), and at most `max_unacked`
//! early messages buffered per topic by a subscriber (a publisher beyond that is ahead of
//! the window it can have, and its message is dropped, then sent again).

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

use crate::time::Instant;
use crate::wire::{encode_messages, ChannelMessage, WireError};

/// The limits and timers of pub/sub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PubSubConfig {
    /// Topics subscribed at once, each way.
    pub max_topics: usize,
    /// Messages per topic awaiting an acknowledgement (publisher) or an earlier message
    /// (subscriber).
    pub max_unacked: usize,
    /// A message not acknowledged this long is sent again.
    pub retransmit_after: Duration,
}

impl Default for PubSubConfig {
    fn default() -> Self {
        Self { max_topics: 256, max_unacked: 1024, retransmit_after: Duration::from_secs(1) }
    }
}

/// Why pub/sub refused an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PubSubError {
    /// The topic or message does not fit the wire format.
    Encode(WireError),
    /// Too many topics.
    TooManyTopics,
    /// The subscriber has not acknowledged `max_unacked` messages on this topic yet: try later.
    Backpressure,
}

impl fmt::Display for PubSubError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Encode(e) => write!(f, "cannot encode the pub/sub message: {e}"),
            Self::TooManyTopics => f.write_str("too many topics"),
            Self::Backpressure => f.write_str("the subscriber is behind: too many messages unacknowledged"),
        }
    }
}

impl core::error::Error for PubSubError {}

/// What pub/sub reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PubSubEvent {
    /// A publication on a topic this side subscribed to, in order, once.
    Message {
        /// The topic.
        topic: String,
        /// The publisher's sequence number.
        seq: u64,
        /// The message.
        payload: Vec<u8>,
    },
    /// The peer subscribed to `topic`: publications on it now reach the peer.
    PeerSubscribed(String),
    /// The peer unsubscribed from `topic`.
    PeerUnsubscribed(String),
}

/// Counters for the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PubSubStats {
    /// Messages sent again for lack of an acknowledgement.
    pub retransmitted: u64,
    /// Copies of messages delivered already, dropped.
    pub duplicates: u64,
    /// Messages dropped: unsubscribed topic, or too far ahead of the window.
    pub dropped: u64,
    /// Subscriptions refused because of `max_topics`.
    pub refused_topics: u64,
}

/// Messages sent again at once, at most, per topic: the oldest unacknowledged ones.
const RETRANSMIT_BATCH: usize = 16;
/// The retransmission interval doubles at most this many times without progress.
const MAX_BACKOFF_SHIFT: u32 = 5;

#[derive(Debug)]
struct Outgoing {
    next_seq: u64,
    /// Sequence number, message, when last sent.
    unacked: VecDeque<(u64, Vec<u8>, Instant)>,
    /// Retransmission rounds since the last acknowledgement that made progress.
    attempts: u32,
}

impl Outgoing {
    fn new() -> Self {
        Self { next_seq: 1, unacked: VecDeque::new(), attempts: 0 }
    }

    /// When the oldest unacknowledged message is due again (the interval doubles with every
    /// round without progress, so a stalled session is not flooded).
    fn due(&self, after: Duration) -> Option<Instant> {
        let interval = after.saturating_mul(1 << self.attempts.min(MAX_BACKOFF_SHIFT));
        self.unacked.front().map(|(_, _, sent)| sent.saturating_add(interval))
    }
}

#[derive(Debug, Default)]
struct Incoming {
    /// The next sequence number to deliver.
    expected: u64,
    early: BTreeMap<u64, Vec<u8>>,
}

/// Both roles of pub/sub on one session, sans-IO.
#[derive(Debug)]
pub struct PubSub {
    config: PubSubConfig,
    /// Topics the peer subscribed to.
    outgoing: BTreeMap<String, Outgoing>,
    /// Topics this side subscribed to.
    incoming: BTreeMap<String, Incoming>,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<PubSubEvent>,
    stats: PubSubStats,
}

impl Default for PubSub {
    fn default() -> Self {
        Self::new(PubSubConfig::default())
    }
}

impl PubSub {
    /// Pub/sub with these limits.
    pub fn new(config: PubSubConfig) -> Self {
        Self {
            config,
            outgoing: BTreeMap::new(),
            incoming: BTreeMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: PubSubStats::default(),
        }
    }

    fn send(&mut self, message: &ChannelMessage<'_>) -> Result<(), PubSubError> {
        let bytes = encode_messages(core::slice::from_ref(message)).map_err(PubSubError::Encode)?;
        self.transmits.push_back(bytes);
        Ok(())
    }

    /// Asks the peer for its publications on `topic`.
    pub fn subscribe(&mut self, topic: &str) -> Result<(), PubSubError> {
        if !self.incoming.contains_key(topic) && self.incoming.len() >= self.config.max_topics {
            return Err(PubSubError::TooManyTopics);
        }
        self.send(&ChannelMessage::Subscribe { topic })?;
        self.incoming.entry(String::from(topic)).or_insert(Incoming { expected: 1, early: BTreeMap::new() });
        Ok(())
    }

    /// Stops receiving `topic`.
    pub fn unsubscribe(&mut self, topic: &str) -> Result<(), PubSubError> {
        self.send(&ChannelMessage::Unsubscribe { topic })?;
        self.incoming.remove(topic);
        Ok(())
    }

    /// Whether the peer subscribed to `topic`.
    pub fn peer_subscribed(&self, topic: &str) -> bool {
        self.outgoing.contains_key(topic)
    }

    /// Publishes `payload` on `topic` at `now`. Returns the sequence number if the peer
    /// subscribed (the message will reach it), `None` if it did not (nothing is sent).
    pub fn publish(&mut self, now: Instant, topic: &str, payload: &[u8]) -> Result<Option<u64>, PubSubError> {
        let max_unacked = self.config.max_unacked;
        let Some(out) = self.outgoing.get_mut(topic) else { return Ok(None) };
        if out.unacked.len() >= max_unacked {
            return Err(PubSubError::Backpressure);
        }
        let seq = out.next_seq;
        let bytes = encode_messages(&[ChannelMessage::Publish { seq, topic, payload }]).map_err(PubSubError::Encode)?;
        out.next_seq += 1;
        out.unacked.push_back((seq, bytes.clone(), now));
        self.transmits.push_back(bytes);
        Ok(Some(seq))
    }

    /// Messages on `topic` not acknowledged yet.
    pub fn unacked(&self, topic: &str) -> usize {
        self.outgoing.get(topic).map_or(0, |o| o.unacked.len())
    }

    /// Takes in a channel message from the peer; other messages are ignored.
    pub fn handle_message(&mut self, message: &ChannelMessage<'_>) {
        match *message {
            ChannelMessage::Subscribe { topic } => {
                if self.outgoing.contains_key(topic) {
                    return;
                }
                if self.outgoing.len() >= self.config.max_topics {
                    self.stats.refused_topics += 1;
                    return;
                }
                self.outgoing.insert(String::from(topic), Outgoing::new());
                self.events.push_back(PubSubEvent::PeerSubscribed(String::from(topic)));
            }
            ChannelMessage::Unsubscribe { topic } if self.outgoing.remove(topic).is_some() => {
                self.events.push_back(PubSubEvent::PeerUnsubscribed(String::from(topic)));
            }
            ChannelMessage::PublishAck { seq, topic } => {
                if let Some(out) = self.outgoing.get_mut(topic) {
                    while out.unacked.front().is_some_and(|(s, _, _)| *s <= seq) {
                        out.unacked.pop_front();
                        out.attempts = 0;
                    }
                }
            }
            ChannelMessage::Publish { seq, topic, payload } => self.on_publish(seq, topic, payload),
            _ => {}
        }
    }

    fn on_publish(&mut self, seq: u64, topic: &str, payload: &[u8]) {
        let window = u64::try_from(self.config.max_unacked).unwrap_or(u64::MAX);
        let Some(inc) = self.incoming.get_mut(topic) else {
            self.stats.dropped += 1;
            return;
        };
        if seq < inc.expected || inc.early.contains_key(&seq) {
            self.stats.duplicates += 1;
        } else if seq == inc.expected {
            self.events.push_back(PubSubEvent::Message { topic: String::from(topic), seq, payload: payload.to_vec() });
            inc.expected += 1;
            while let Some(next) = inc.early.remove(&inc.expected) {
                self.events.push_back(PubSubEvent::Message {
                    topic: String::from(topic),
                    seq: inc.expected,
                    payload: next,
                });
                inc.expected += 1;
            }
        } else if seq - inc.expected < window {
            inc.early.insert(seq, payload.to_vec());
        } else {
            self.stats.dropped += 1;
        }
        let acked = inc.expected - 1;
        // A topic that fits a Publish fits an acknowledgement.
        let _ = self.send(&ChannelMessage::PublishAck { seq: acked, topic });
    }

    /// Sends again the oldest messages (at most 16 per topic) not acknowledged in time; the
    /// interval doubles (up to 32 times `retransmit_after`) while no acknowledgement makes
    /// progress.
    pub fn poll(&mut self, now: Instant) {
        let after = self.config.retransmit_after;
        for out in self.outgoing.values_mut() {
            if out.due(after).is_none_or(|due| due > now) {
                continue;
            }
            for (_, bytes, sent) in out.unacked.iter_mut().take(RETRANSMIT_BATCH) {
                *sent = now;
                self.transmits.push_back(bytes.clone());
                self.stats.retransmitted += 1;
            }
            out.attempts = out.attempts.saturating_add(1);
        }
    }

    /// When [`PubSub::poll`] has work next.
    pub fn poll_at(&self) -> Option<Instant> {
        let after = self.config.retransmit_after;
        self.outgoing.values().filter_map(|o| o.due(after)).min()
    }

    /// The next plaintext to send in a session record.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<PubSubEvent> {
        self.events.pop_front()
    }

    /// The counters.
    pub fn stats(&self) -> &PubSubStats {
        &self.stats
    }

    /// The topics this side subscribed to.
    pub fn subscriptions(&self) -> impl Iterator<Item = &str> {
        self.incoming.keys().map(String::as_str)
    }

    /// The topics the peer subscribed to.
    pub fn peer_subscriptions(&self) -> BTreeSet<&str> {
        self.outgoing.keys().map(String::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::messages;
    use alloc::vec;

    /// Moves everything `from` has to send to `to`; `keep` decides per plaintext whether the
    /// network delivers it.
    fn pump(from: &mut PubSub, to: &mut PubSub, mut keep: impl FnMut(usize) -> bool) {
        let mut i = 0;
        while let Some(p) = from.poll_transmit() {
            if keep(i) {
                for m in messages(&p) {
                    to.handle_message(&m.unwrap());
                }
            }
            i += 1;
        }
    }

    fn received(s: &mut PubSub) -> Vec<(u64, Vec<u8>)> {
        core::iter::from_fn(|| s.poll_event())
            .filter_map(|e| match e {
                PubSubEvent::Message { seq, payload, .. } => Some((seq, payload)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn subscribe_publish_ack() {
        let (mut publisher, mut subscriber) = (PubSub::default(), PubSub::default());
        assert_eq!(publisher.publish(Instant::ZERO, "news", b"early").unwrap(), None, "nobody listens yet");
        subscriber.subscribe("news").unwrap();
        pump(&mut subscriber, &mut publisher, |_| true);
        assert_eq!(publisher.poll_event(), Some(PubSubEvent::PeerSubscribed("news".into())));
        assert_eq!(publisher.publish(Instant::ZERO, "news", b"a").unwrap(), Some(1));
        assert_eq!(publisher.publish(Instant::ZERO, "news", b"b").unwrap(), Some(2));
        pump(&mut publisher, &mut subscriber, |_| true);
        assert_eq!(received(&mut subscriber), [(1, b"a".to_vec()), (2, b"b".to_vec())]);
        pump(&mut subscriber, &mut publisher, |_| true);
        assert_eq!(publisher.unacked("news"), 0);
        assert_eq!(publisher.poll_at(), None);
        subscriber.unsubscribe("news").unwrap();
        pump(&mut subscriber, &mut publisher, |_| true);
        assert_eq!(publisher.poll_event(), Some(PubSubEvent::PeerUnsubscribed("news".into())));
        assert_eq!(publisher.publish(Instant::ZERO, "news", b"c").unwrap(), None);
    }

    #[test]
    fn lost_messages_are_retransmitted_and_delivered_in_order_once() {
        let (mut publisher, mut subscriber) = (PubSub::default(), PubSub::default());
        subscriber.subscribe("t").unwrap();
        pump(&mut subscriber, &mut publisher, |_| true);
        for i in 0..5u8 {
            publisher.publish(Instant::ZERO, "t", &[i]).unwrap();
        }
        // Messages 1 and 3 (indices 0 and 2) are lost.
        pump(&mut publisher, &mut subscriber, |i| i != 0 && i != 2);
        assert!(received(&mut subscriber).is_empty(), "nothing before message 1");
        pump(&mut subscriber, &mut publisher, |_| true);
        assert_eq!(publisher.unacked("t"), 5, "acks say 0 in order");
        let at = publisher.poll_at().unwrap();
        assert_eq!(at, Instant::from_millis(1000));
        publisher.poll(at);
        assert_eq!(publisher.stats().retransmitted, 5);
        pump(&mut publisher, &mut subscriber, |_| true);
        let got = received(&mut subscriber);
        assert_eq!(got, (0..5u8).map(|i| (u64::from(i) + 1, vec![i])).collect::<Vec<_>>());
        assert_eq!(subscriber.stats().duplicates, 3);
        pump(&mut subscriber, &mut publisher, |_| true);
        assert_eq!(publisher.unacked("t"), 0);
    }

    #[test]
    fn retransmission_backs_off_and_is_batched() {
        let (mut publisher, mut subscriber) = (PubSub::default(), PubSub::default());
        subscriber.subscribe("t").unwrap();
        pump(&mut subscriber, &mut publisher, |_| true);
        for i in 0..40u8 {
            publisher.publish(Instant::ZERO, "t", &[i]).unwrap();
        }
        while publisher.poll_transmit().is_some() {} // all lost
        let mut at = Instant::ZERO;
        let mut gaps = Vec::new();
        for _ in 0..4 {
            let next = publisher.poll_at().unwrap();
            gaps.push(next.saturating_duration_since(at).as_millis());
            at = next;
            publisher.poll(at);
            assert_eq!(core::iter::from_fn(|| publisher.poll_transmit()).count(), 16);
        }
        assert_eq!(gaps, [1000, 2000, 4000, 8000]);
        pump(&mut publisher, &mut subscriber, |_| true);
        publisher.poll(at.saturating_add(Duration::from_secs(100)));
        pump(&mut publisher, &mut subscriber, |_| true);
        pump(&mut subscriber, &mut publisher, |_| true);
        assert_eq!(publisher.unacked("t"), 24, "progress resets the backoff");
        assert_eq!(publisher.poll_at(), Some(Instant::from_millis(1000)), "the next batch is overdue at once");
    }

    #[test]
    fn backpressure_instead_of_loss_and_bounded_topics() {
        let config = PubSubConfig { max_topics: 1, max_unacked: 2, ..PubSubConfig::default() };
        let (mut publisher, mut subscriber) = (PubSub::new(config), PubSub::new(config));
        subscriber.subscribe("a").unwrap();
        assert_eq!(subscriber.subscribe("b"), Err(PubSubError::TooManyTopics));
        pump(&mut subscriber, &mut publisher, |_| true);
        publisher.handle_message(&ChannelMessage::Subscribe { topic: "other" });
        assert_eq!(publisher.stats().refused_topics, 1);
        publisher.publish(Instant::ZERO, "a", b"1").unwrap();
        publisher.publish(Instant::ZERO, "a", b"2").unwrap();
        assert_eq!(publisher.publish(Instant::ZERO, "a", b"3"), Err(PubSubError::Backpressure));
        // A message far beyond the window is dropped (and will be sent again later).
        subscriber.handle_message(&ChannelMessage::Publish { seq: 100, topic: "a", payload: b"x" });
        assert_eq!(subscriber.stats().dropped, 1);
        subscriber.handle_message(&ChannelMessage::Publish { seq: 1, topic: "zzz", payload: b"x" });
        assert_eq!(subscriber.stats().dropped, 2);
    }
}
