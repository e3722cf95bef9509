//! `POST /streaming-message` (protocol.md §7).
//!
//! [`open`] reads the magic and frame 0, asks the engine to open the stream and returns the 200
//! response with frame 0 already queued, without waiting for the request body to end (it never
//! does). A spawned task then runs [`run`], one `select!` loop per stream that reads and acks
//! client frames strictly in order, pushes messages, and closes the stream on time. One task and a
//! small bounded queue ([`frames`]) per stream keep idle streams cheap.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fleetgate_pb::fleetspeak::{ContactData, Message, WrappedContactData};
use fleetgate_types::contact::{ContactError, ContactHandler, StreamSession};
use futures::future::BoxFuture;
use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use tokio::time::{Instant, sleep, sleep_until, timeout_at};
use tokio_util::sync::CancellationToken;

use crate::body::{BodyError, DecodedBody, ResponseBody};
use crate::frames;
use crate::respond::{self, Rejection};
use crate::routes::{admit, contact};
use crate::server::{Peer, Shared};
use crate::wire::{self, FrameDecoder, WireError};

/// Response frames queued per stream; the client reads promptly, so a few suffice.
const CHANNEL_DEPTH: usize = 8;

/// Client frames: the decoded request body cut into WCDs.
pub struct FrameInput<B> {
    body: DecodedBody<B>,
    decoder: FrameDecoder,
}

impl<B: Body<Data = Bytes, Error = hyper::Error> + Unpin> FrameInput<B> {
    /// The next client frame; `Ok(None)` when the client ended its body. Cancel-safe: bytes
    /// already read are kept in the decoder.
    pub async fn next(&mut self) -> Result<Option<WrappedContactData>, BodyError> {
        loop {
            if let Some(frame) = self.decoder.next_frame()? {
                return Ok(Some(wire::decode_wcd(&frame)?));
            }
            match self.body.next_chunk().await? {
                Some(chunk) => self.decoder.push(&chunk),
                None => return Ok(None),
            }
        }
    }
}

/// When a stream says `done_sending` and when it ends for good.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub done_at: Instant,
    pub deadline: Instant,
    pub close_time: Duration,
}

impl Timing {
    /// Lifespan plus `U[0, jitter)` from `start`; `done_sending` goes out `close_time` earlier.
    pub fn new(start: Instant, lifespan: Duration, jitter: Duration, close_time: Duration) -> Self {
        let jitter_ms = u64::try_from(jitter.as_millis()).unwrap_or(u64::MAX);
        let extra = if jitter_ms == 0 {
            0
        } else {
            rand::random_range(0..jitter_ms)
        };
        let deadline = start + lifespan + Duration::from_millis(extra);
        let done_at = deadline.checked_sub(close_time).unwrap_or(start).max(start);
        Self {
            done_at,
            deadline,
            close_time,
        }
    }
}

/// Handles the request up to frame 0 and spawns the stream task.
pub async fn open<H: ContactHandler>(
    req: Request<Incoming>,
    shared: &Arc<Shared<H>>,
    peer: &Peer,
) -> Result<Response<ResponseBody>, Rejection> {
    let start = Instant::now();
    let admitted = admit(&req, shared, peer)?;
    let config = &shared.config;
    let mut input = FrameInput {
        body: DecodedBody::new(req.into_body(), admitted.deflate, None),
        decoder: FrameDecoder::with_magic(config.max_body),
    };
    let setup = async {
        let wcd = input
            .next()
            .await?
            .ok_or_else(|| Rejection::BadRequest("body ended before frame 0".into()))?;
        Ok::<_, Rejection>(
            shared
                .handler
                .open_stream(contact(admitted.identity, peer, wcd))
                .await?,
        )
    };
    let (session, reply) = tokio::time::timeout(config.stream_start_timeout, setup)
        .await
        .map_err(|_| ContactError::Internal("stream start timed out".into()))??;
    let (tx, rx) = frames::channel(CHANNEL_DEPTH);
    // The channel is new and empty, so this cannot fail; frame 0 goes out with the headers.
    let _ = tx.try_send(wire::encode_frame(&reply));
    let timing = Timing::new(
        start,
        config.streaming_lifespan,
        config.streaming_jitter,
        config.streaming_close_time,
    );
    let nonce = reply.sequencing_nonce;
    let shutdown = shared.shutdown.clone();
    // The task owns the stream's state and `run` borrows it: passed by value, each piece would be
    // stored twice for the stream's whole life, in this future and in `run`'s.
    shared.tasks.spawn(async move {
        let end = run(&session, &mut input, &tx, nonce, timing, &shutdown).await;
        drop((input, tx)); // the response body ends here, before the engine is told
        tracing::debug!(?end, "stream ended");
        session.close().await;
    });
    Ok(respond::octet_stream(ResponseBody::Channel(rx)))
}

/// Why a stream ended. Client departures and deadlines are normal.
#[derive(Debug)]
pub enum End {
    Deadline,
    ClientClosed,
    ClientGone,
    BadInput(WireError),
    FrameFailed(ContactError),
}

type PushResult = Result<Option<Vec<Message>>, ContactError>;

/// The steady state of one stream, until the client leaves or the deadline passes.
pub async fn run<S: StreamSession, B: Body<Data = Bytes, Error = hyper::Error> + Unpin>(
    session: &S,
    input: &mut FrameInput<B>,
    tx: &frames::Sender,
    nonce: u64,
    timing: Timing,
    shutdown: &CancellationToken,
) -> End {
    let mut deadline = timing.deadline;
    let mut acked: u64 = 0;
    // At most one frame is processed at a time: that is what keeps acks in receive order.
    let mut in_flight: Option<BoxFuture<'_, Result<(), ContactError>>> = None;
    let mut push: Option<BoxFuture<'_, PushResult>> = Some(next_push(session, Duration::ZERO));
    let mut push_failures = 0u32;
    let mut done_sent = false;
    let mut shutting_down = false;
    let mut done_at = timing.done_at;
    loop {
        // One timer for both instants (`done_sending` is due first): an idle stream keeps every
        // future of this `select!`, and a timer is ~110 bytes.
        let timer = if done_sent {
            deadline
        } else {
            done_at.min(deadline)
        };
        tokio::select! {
            biased;
            () = sleep_until(timer) => {
                if done_sent || Instant::now() >= deadline {
                    return End::Deadline;
                }
                if let Err(end) = send_done(tx, deadline, &mut done_sent, &mut push).await {
                    return end;
                }
            }
            () = shutdown.cancelled(), if !shutting_down => {
                shutting_down = true;
                let now = Instant::now();
                deadline = deadline.min(now + timing.close_time);
                // Spread `done_sending` over the first half of the close window, so the clients
                // of a stopping server do not all reconnect in the same instant; each still has
                // at least half the window to drain its acks.
                done_at = done_at.min(now + shutdown_spread(timing.close_time));
            }
            result = poll_opt(&mut in_flight) => {
                in_flight = None;
                if let Err(e) = result {
                    return End::FrameFailed(e); // no ack: the client re-sends every unacked frame
                }
                acked += 1;
                let ack = ContactData { ack_index: acked, ..Default::default() };
                if let Err(end) = send(tx, &ack, deadline).await {
                    return end;
                }
            }
            frame = input.next(), if in_flight.is_none() => match frame {
                Ok(Some(wcd)) => in_flight = Some(Box::pin(session.frame(wcd))),
                Ok(None) => return End::ClientClosed,
                Err(BodyError::Transport(_)) => return End::ClientGone,
                Err(BodyError::Wire(e)) => return End::BadInput(e),
            },
            result = poll_opt(&mut push) => {
                push = None;
                let delay = match result {
                    Ok(None) => continue, // a newer stream took over: stop pushing, keep acking
                    Ok(Some(messages)) => {
                        push_failures = 0;
                        if !messages.is_empty() {
                            let cd = ContactData { sequencing_nonce: nonce, messages, ..Default::default() };
                            if let Err(end) = send(tx, &cd, deadline).await {
                                return end;
                            }
                        }
                        Duration::ZERO
                    }
                    Err(e) => {
                        push_failures += 1;
                        tracing::warn!(error = %e, "fetching messages for a stream failed");
                        push_backoff(push_failures)
                    }
                };
                push = Some(next_push(session, delay));
            }
        }
    }
}

/// Polls an optional future; a missing one never completes.
async fn poll_opt<F: Future + Unpin>(slot: &mut Option<F>) -> F::Output {
    match slot {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

fn next_push<S: StreamSession>(session: &S, delay: Duration) -> BoxFuture<'_, PushResult> {
    Box::pin(async move {
        if !delay.is_zero() {
            sleep(delay).await;
        }
        session.next_messages().await
    })
}

/// A random delay in `[0, close_time / 2)`.
fn shutdown_spread(close_time: Duration) -> Duration {
    let half_ms = u64::try_from(close_time.as_millis() / 2).unwrap_or(u64::MAX);
    if half_ms == 0 {
        Duration::ZERO
    } else {
        Duration::from_millis(rand::random_range(0..half_ms))
    }
}

/// `(100 ms + U[0,100 ms]) × 1.5^failures`, capped at 30 s (§7.5).
fn push_backoff(failures: u32) -> Duration {
    let base = 100.0 + rand::random_range(0.0..100.0);
    let ms = base * 1.5f64.powi(failures.min(20) as i32);
    Duration::from_millis(ms.min(30_000.0) as u64)
}

/// Sends `done_sending` — exactly once, because a second one panics the Go client — and stops
/// pushing.
async fn send_done(
    tx: &frames::Sender,
    deadline: Instant,
    done_sent: &mut bool,
    push: &mut Option<BoxFuture<'_, PushResult>>,
) -> Result<(), End> {
    *done_sent = true;
    *push = None;
    send(
        tx,
        &ContactData {
            done_sending: true,
            ..Default::default()
        },
        deadline,
    )
    .await
}

/// Queues one response frame, waiting for room until the deadline.
async fn send(tx: &frames::Sender, cd: &ContactData, deadline: Instant) -> Result<(), End> {
    match timeout_at(deadline, tx.send(wire::encode_frame(cd))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(End::ClientGone),
        Err(_) => Err(End::Deadline),
    }
}
