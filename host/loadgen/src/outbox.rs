//! What one client still has to tell the server, and what it told but has not seen acked.
//!
//! Pure bookkeeping, kept across reconnects: outbound messages wait in a queue, acks and
//! token deltas accumulate until the next frame, and each sent frame stays in a FIFO until the
//! server acks it (protocol.md §7.4: one `ack_index` per frame, in order). When a stream ends,
//! every unacked frame's messages go back to the front of the queue, as the Go client requeues
//! them, so they are re-sent with the same `source_message_id`.

use std::collections::{HashMap, VecDeque};

use fleetgate_pb::fleetspeak::Message;

use crate::contact::{self, MAX_MESSAGES};

/// The messages of one sent frame, until its ack.
#[derive(Debug, Default)]
pub struct SentFrame {
    messages: Vec<Message>,
}

impl SentFrame {
    /// Client data messages in the frame (acks are bookkeeping, not traffic).
    pub fn data_messages(&self) -> u64 {
        self.messages.iter().filter(|m| contact::is_data(m)).count() as u64
    }
}

/// The next frame's contents.
#[derive(Debug, Default)]
pub struct Batch {
    pub messages: Vec<Message>,
    pub tokens: HashMap<String, u64>,
}

#[derive(Debug, Default)]
pub struct Outbox {
    queue: VecDeque<Message>,
    acks: Vec<Vec<u8>>,
    tokens: HashMap<String, u64>,
    in_flight: VecDeque<SentFrame>,
}

impl Outbox {
    /// Queues an outbound message.
    pub fn push(&mut self, m: Message) {
        self.queue.push_back(m);
    }

    /// Records a processed server message: its ID is acked in the next frame and, if
    /// `service` is set, one token for that service is returned.
    pub fn processed(&mut self, id: [u8; 32], service: Option<&str>) {
        self.acks.push(id.to_vec());
        if let Some(s) = service {
            *self.tokens.entry(s.to_owned()).or_default() += 1;
        }
    }

    /// Whether a frame is worth sending: messages, acks or tokens are waiting.
    pub fn has_news(&self) -> bool {
        !self.queue.is_empty() || !self.acks.is_empty() || !self.tokens.is_empty()
    }

    /// Whether a full frame's worth of messages is waiting, so batching should stop.
    pub fn is_full(&self) -> bool {
        self.queue.len() + usize::from(!self.acks.is_empty()) >= MAX_MESSAGES
    }

    /// Frames sent and not yet acked.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Takes the next frame's contents (one `MessageAck` first, then up to 100 messages in all)
    /// and remembers them as in flight.
    pub fn take_batch(&mut self) -> Batch {
        let mut messages = Vec::new();
        if !self.acks.is_empty() {
            messages.push(contact::ack_message(std::mem::take(&mut self.acks)));
        }
        let room = MAX_MESSAGES
            .saturating_sub(messages.len())
            .min(self.queue.len());
        messages.extend(self.queue.drain(..room));
        self.in_flight.push_back(SentFrame {
            messages: messages.clone(),
        });
        Batch {
            messages,
            tokens: std::mem::take(&mut self.tokens),
        }
    }

    /// The server acked the oldest frame in flight; returns it, `None` for an extra ack.
    pub fn acked(&mut self) -> Option<SentFrame> {
        self.in_flight.pop_front()
    }

    /// The stream ended: unacked frames are re-sent on the next connection, oldest first.
    /// Token deltas are dropped because the next frame 0 states absolute tokens.
    pub fn requeue(&mut self) {
        for frame in self.in_flight.drain(..).rev() {
            for m in frame.messages.into_iter().rev() {
                self.queue.push_front(m);
            }
        }
        self.tokens.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_ack_first_and_return_tokens() {
        let mut o = Outbox::default();
        assert!(!o.has_news());
        o.processed([1; 32], Some("svc"));
        o.processed([2; 32], Some("svc"));
        o.processed([3; 32], None);
        o.push(contact::outbound_message("svc", 1));
        assert!(o.has_news());
        let b = o.take_batch();
        assert_eq!(b.messages.len(), 2);
        assert_eq!(b.messages[0].message_type, "MessageAck");
        assert_eq!(b.tokens.get("svc"), Some(&2));
        assert!(!o.has_news());
        assert_eq!(o.in_flight(), 1);
        assert_eq!(o.acked().map(|f| f.data_messages()), Some(1));
        assert!(o.acked().is_none(), "an extra ack finds nothing");
    }

    #[test]
    fn at_most_a_hundred_messages_per_frame() {
        let mut o = Outbox::default();
        for _ in 0..150 {
            o.push(contact::outbound_message("svc", 0));
        }
        o.processed([9; 32], Some("svc"));
        assert!(o.is_full());
        assert_eq!(o.take_batch().messages.len(), MAX_MESSAGES);
        assert_eq!(o.take_batch().messages.len(), 51);
        assert!(!o.has_news());
    }

    #[test]
    fn requeue_keeps_order_and_ids() {
        let mut o = Outbox::default();
        let first: Vec<Message> = (0..3).map(|_| contact::outbound_message("s", 0)).collect();
        for m in &first {
            o.push(m.clone());
        }
        let _ = o.take_batch();
        let later = contact::outbound_message("s", 0);
        o.push(later.clone());
        let _ = o.take_batch();
        let waiting = contact::outbound_message("s", 0);
        o.push(waiting.clone());
        o.processed([1; 32], Some("s"));
        o.requeue();
        assert_eq!(o.in_flight(), 0);
        let b = o.take_batch();
        let ids: Vec<&[u8]> = b
            .messages
            .iter()
            .map(|m| m.source_message_id.as_slice())
            .collect();
        assert_eq!(b.messages[0].message_type, "MessageAck");
        let want: Vec<&[u8]> = first
            .iter()
            .chain([&later, &waiting])
            .map(|m| m.source_message_id.as_slice())
            .collect();
        assert_eq!(&ids[1..], want.as_slice());
        assert!(b.tokens.is_empty(), "frame 0 restates tokens");
    }
}
