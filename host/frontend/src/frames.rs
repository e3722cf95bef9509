//! The bounded queue of response frames from a stream's task to its response body.
//!
//! One producer, one consumer, a handful of slots. Every open stream holds one for its whole
//! life, so it is kept small: a tokio `mpsc` channel costs about 1.5 KiB per stream (a
//! cache-padded channel and a first block of 32 slots allocated up front), this about 100 bytes
//! while empty. The slots are allocated only while frames wait and released when the reader
//! has caught up.

use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;

/// A queue holding at most `depth` frames.
pub fn channel(depth: usize) -> (Sender, Receiver) {
    let shared = Arc::new(Mutex::new(State {
        queue: VecDeque::new(),
        depth: depth.max(1),
        reader: None,
        writer: None,
        sender_alive: true,
        receiver_alive: true,
    }));
    (Sender(shared.clone()), Receiver(shared))
}

struct State {
    queue: VecDeque<Bytes>,
    depth: usize,
    /// The receiver waiting for a frame.
    reader: Option<Waker>,
    /// The sender waiting for room.
    writer: Option<Waker>,
    sender_alive: bool,
    receiver_alive: bool,
}

fn lock(shared: &Mutex<State>) -> MutexGuard<'_, State> {
    // Nothing panics while holding the lock, and the state is consistent between statements.
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl State {
    /// Whether a frame can be queued now.
    fn room(&self) -> Result<(), TrySendError> {
        if !self.receiver_alive {
            return Err(TrySendError::Closed);
        }
        if self.queue.len() >= self.depth {
            return Err(TrySendError::Full);
        }
        Ok(())
    }

    /// Queues a frame; returns the waiting reader, to be woken once the lock is released.
    fn push(&mut self, frame: Bytes) -> Option<Waker> {
        self.queue.push_back(frame);
        self.reader.take()
    }
}

/// Wakes outside the lock, so the woken task does not find it held.
fn wake(waker: Option<Waker>) {
    if let Some(w) = waker {
        w.wake();
    }
}

/// The receiver is gone: the client left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

/// Why [`Sender::try_send`] did not queue the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrySendError {
    Full,
    Closed,
}

pub struct Sender(Arc<Mutex<State>>);

impl Sender {
    /// Queues `frame` if there is room now.
    pub fn try_send(&self, frame: Bytes) -> Result<(), TrySendError> {
        let mut state = lock(&self.0);
        state.room()?;
        let reader = state.push(frame);
        drop(state);
        wake(reader);
        Ok(())
    }

    /// Queues `frame`, waiting for room. Dropping the future before it completes drops the
    /// frame and queues nothing.
    pub async fn send(&self, frame: Bytes) -> Result<(), Closed> {
        let mut frame = Some(frame);
        poll_fn(|cx| {
            let mut state = lock(&self.0);
            match state.room() {
                Err(TrySendError::Closed) => return Poll::Ready(Err(Closed)),
                Err(TrySendError::Full) => {
                    state.writer = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                Ok(()) => {}
            }
            let reader = frame.take().and_then(|f| state.push(f));
            drop(state);
            wake(reader);
            Poll::Ready(Ok(()))
        })
        .await
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        let mut state = lock(&self.0);
        state.sender_alive = false;
        let reader = state.reader.take();
        drop(state);
        wake(reader);
    }
}

impl fmt::Debug for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("frames::Sender")
    }
}

pub struct Receiver(Arc<Mutex<State>>);

impl Receiver {
    /// The next frame; `None` once the sender is gone and every frame was taken.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let mut state = lock(&self.0);
        let Some(frame) = state.queue.pop_front() else {
            if !state.sender_alive {
                return Poll::Ready(None);
            }
            state.reader = Some(cx.waker().clone());
            return Poll::Pending;
        };
        if state.queue.is_empty() {
            // Caught up: give the slots back; an idle stream keeps none.
            state.queue = VecDeque::new();
        }
        let writer = state.writer.take();
        drop(state);
        wake(writer);
        Poll::Ready(Some(frame))
    }

    /// The next frame, as [`Receiver::poll_recv`].
    pub async fn recv(&mut self) -> Option<Bytes> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let mut state = lock(&self.0);
        state.receiver_alive = false;
        state.queue = VecDeque::new();
        let writer = state.writer.take();
        drop(state);
        wake(writer);
    }
}

impl fmt::Debug for Receiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("frames::Receiver")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    #[tokio::test]
    async fn frames_arrive_in_order_then_end() {
        let (tx, mut rx) = channel(2);
        tx.try_send(b("a")).unwrap();
        tx.send(b("b")).await.unwrap();
        assert_eq!(tx.try_send(b("c")), Err(TrySendError::Full));
        assert_eq!(rx.recv().await, Some(b("a")));
        tx.send(b("c")).await.unwrap();
        drop(tx);
        assert_eq!(rx.recv().await, Some(b("b")));
        assert_eq!(rx.recv().await, Some(b("c")));
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn a_full_queue_makes_the_sender_wait_for_the_reader() {
        let (tx, mut rx) = channel(1);
        tx.send(b("a")).await.unwrap();
        let waiting = tokio::spawn(async move {
            tx.send(b("b")).await.unwrap();
            tx
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        assert_eq!(rx.recv().await, Some(b("a")));
        let _tx = waiting.await.unwrap();
        assert_eq!(rx.recv().await, Some(b("b")));
    }

    #[tokio::test]
    async fn a_gone_receiver_fails_and_wakes_the_sender() {
        let (tx, rx) = channel(1);
        tx.send(b("a")).await.unwrap();
        let waiting = tokio::spawn(async move { tx.send(b("b")).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(rx);
        assert_eq!(waiting.await.unwrap(), Err(Closed));
    }

    #[tokio::test]
    async fn a_reader_waiting_on_an_empty_queue_is_woken() {
        let (tx, mut rx) = channel(4);
        let reader = tokio::spawn(async move { (rx.recv().await, rx.recv().await) });
        tokio::time::sleep(Duration::from_millis(20)).await;
        tx.send(b("x")).await.unwrap();
        drop(tx);
        assert_eq!(reader.await.unwrap(), (Some(b("x")), None));
    }

    #[tokio::test]
    async fn a_cancelled_send_queues_nothing() {
        let (tx, mut rx) = channel(1);
        tx.send(b("a")).await.unwrap();
        let timed_out = tokio::time::timeout(Duration::from_millis(10), tx.send(b("b"))).await;
        assert!(timed_out.is_err());
        assert_eq!(rx.recv().await, Some(b("a")));
        drop(tx);
        assert_eq!(rx.recv().await, None);
    }
}
