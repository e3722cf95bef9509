//! One simulated client: connect, contact, receive and ack, send, reconnect — like the stock
//! Go client (protocol.md §7.3–7.6, §6.4), but without local services: a received message is
//! "processed" the moment it arrives.
//!
//! Each client is one task (plus hyper's connection driver). State that outlives a connection
//! — the nonce, the [`Outbox`] of unsent and unacked messages — lives in [`SimClient`].

use std::sync::Arc;
use std::time::Duration;

use fleetgate_pb::fleetspeak::{ContactData, Message};
use fleetgate_types::ClientId;
use tokio::time::{Instant, Interval, MissedTickBehavior, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::conn::{Connection, Endpoint, FrameReader, FrameSender};
use crate::contact::{self, Verdict};
use crate::outbox::Outbox;
use crate::stats::Stats;
use crate::{ClientError, LoadgenConfig, Mode};

/// A simulated client and everything it keeps across connections.
pub struct SimClient {
    id: ClientId,
    endpoint: Endpoint,
    config: Arc<LoadgenConfig>,
    stats: Arc<Stats>,
    /// Cancelled when the run ends: stop generating, flush acks, wait briefly for server acks.
    stop: CancellationToken,
    outbox: Outbox,
    nonce: u64,
    contacted: bool,
    /// Outbound traffic, if configured; ticks keep running across reconnects.
    ticker: Option<Interval>,
}

impl SimClient {
    pub fn new(
        id: ClientId,
        endpoint: Endpoint,
        config: Arc<LoadgenConfig>,
        stats: Arc<Stats>,
        stop: CancellationToken,
    ) -> Self {
        let ticker = config.outbound.as_ref().filter(|o| o.rate > 0.0).map(|o| {
            let period = Duration::from_secs_f64(1.0 / o.rate);
            // A random phase keeps thousands of clients from sending in lockstep.
            let phase = period.mul_f64(rand::random_range(0.0..1.0));
            let mut t = tokio::time::interval_at(Instant::now() + phase, period);
            t.set_missed_tick_behavior(MissedTickBehavior::Delay);
            t
        });
        Self {
            id,
            endpoint,
            config,
            stats,
            stop,
            outbox: Outbox::default(),
            nonce: 0,
            contacted: false,
            ticker,
        }
    }

    /// Runs until the stop token fires and the last contact is flushed.
    pub async fn run(mut self) {
        while !self.stop.is_cancelled() {
            let result = match Connection::open(&self.endpoint).await {
                Ok(mut conn) => match self.config.mode {
                    Mode::Streaming => self.stream(&mut conn).await,
                    Mode::Polling => self.poll_loop(&mut conn).await,
                },
                Err(e) => Err(e),
            };
            self.outbox.requeue();
            if let Err(e) = result {
                Stats::add(&self.stats.failures, 1);
                tracing::debug!(client = %self.id, error = %e, "contact failed");
                let until = Instant::now() + self.config.retry_delay;
                self.idle_until(until, false).await;
            }
        }
    }

    /// One streaming connection, from frame 0 until `done_sending`, server close or stop.
    async fn stream(&mut self, conn: &mut Connection) -> Result<(), ClientError> {
        let batch = self.outbox.take_batch();
        let frame0 = self.contact_data(
            batch.messages,
            contact::initial_tokens(&self.config.service),
        );
        let (tx, mut rx) = conn
            .open_stream(&self.endpoint, &contact::wrap(&frame0))
            .await?;
        let first = rx
            .next()
            .await?
            .ok_or_else(|| ClientError::Protocol("stream ended before frame 0".into()))?;
        self.nonce = first.sequencing_nonce;
        self.contact_succeeded();
        self.on_ack(); // reply frame 0 acknowledges frame 0
        self.on_messages(&first.messages);
        // Once established, any end of the stream means "reconnect at once" (§7.6 step 5).
        if let Err(e) = self.steady_state(&tx, &mut rx).await {
            Stats::add(&self.stats.stream_drops, 1);
            tracing::debug!(client = %self.id, error = %e, "stream broke");
        }
        Ok(())
    }

    async fn steady_state(
        &mut self,
        tx: &FrameSender,
        rx: &mut FrameReader,
    ) -> Result<(), ClientError> {
        let mut done = false;
        let mut flush_at: Option<Instant> = None;
        let mut drain_until: Option<Instant> = None;
        loop {
            let stopping = drain_until.is_some();
            if (done || stopping)
                && self.outbox.in_flight() == 0
                && (done || !self.outbox.has_news())
            {
                return Ok(()); // the Go client closes as soon as nothing is pending
            }
            if self.outbox.has_news() {
                // A full frame, or stopping, cuts the batching window short.
                let wait = if self.outbox.is_full() || stopping {
                    Duration::ZERO
                } else {
                    self.config.batch_delay
                };
                let soon = Instant::now() + wait;
                flush_at = Some(flush_at.map_or(soon, |at| at.min(soon)));
            }
            tokio::select! {
                biased;
                () = self.stop.cancelled(), if !stopping => {
                    drain_until = Some(Instant::now() + self.config.drain);
                }
                () = sleep_opt(drain_until) => return Ok(()),
                frame = rx.next() => match frame? {
                    Some(cd) => done |= self.on_frame(cd),
                    None => {
                        Stats::add(&self.stats.stream_drops, 1);
                        return Ok(());
                    }
                },
                () = sleep_opt(flush_at), if !done => {
                    flush_at = None;
                    let batch = self.outbox.take_batch();
                    tx.send(&contact::wrap(&self.contact_data(batch.messages, batch.tokens))).await?;
                }
                () = tick_opt(&mut self.ticker), if !stopping && !done => self.generate(),
            }
        }
    }

    /// Polls `/message` on one keep-alive connection until the server closes it or stop.
    async fn poll_loop(&mut self, conn: &mut Connection) -> Result<(), ClientError> {
        loop {
            let batch = self.outbox.take_batch();
            let cd = self.contact_data(
                batch.messages,
                contact::initial_tokens(&self.config.service),
            );
            let reply = conn.poll(&self.endpoint, &contact::wrap(&cd)).await?;
            self.nonce = reply.sequencing_nonce;
            self.contact_succeeded();
            self.on_ack();
            self.on_messages(&reply.messages);
            if self.stop.is_cancelled() && !self.outbox.has_news() {
                return Ok(());
            }
            let until = Instant::now() + self.config.poll_interval;
            self.idle_until(until, true).await;
            if !conn.is_usable() {
                return Ok(()); // idle keep-alive closed by the server: reconnect
            }
        }
    }

    /// Waits until `until` or stop, generating outbound traffic. With `wake_on_news` it returns
    /// early: at once for a frame's worth of news, else `batch_delay` after the first news.
    async fn idle_until(&mut self, until: Instant, wake_on_news: bool) {
        let mut until = until;
        loop {
            if wake_on_news && self.outbox.is_full() {
                return;
            }
            if wake_on_news && self.outbox.has_news() {
                until = until.min(Instant::now() + self.config.batch_delay);
            }
            tokio::select! {
                () = self.stop.cancelled() => return,
                () = sleep_until(until) => return,
                () = tick_opt(&mut self.ticker) => self.generate(),
            }
        }
    }

    /// Handles one pushed frame; true on `done_sending`.
    fn on_frame(&mut self, cd: ContactData) -> bool {
        if cd.ack_index != 0 {
            self.on_ack();
        }
        self.on_messages(&cd.messages);
        if cd.done_sending {
            Stats::add(&self.stats.done_sending, 1);
        }
        cd.done_sending
    }

    fn on_ack(&mut self) {
        match self.outbox.acked() {
            Some(frame) => Stats::add(&self.stats.delivered, frame.data_messages()),
            None => tracing::warn!(client = %self.id, "ack for a frame never sent"),
        }
    }

    fn on_messages(&mut self, messages: &[Message]) {
        for m in messages {
            match contact::judge(m, self.id, &self.config.service) {
                Verdict::Process { id, service } => {
                    self.stats.received(id, contact::inserted_at(m));
                    self.outbox.processed(id, Some(&service));
                    Stats::add(&self.stats.acks, 1);
                }
                Verdict::Unacked { id } => self.stats.received(id, None),
                Verdict::Drop(why) => tracing::debug!(client = %self.id, why, "message dropped"),
            }
        }
    }

    fn generate(&mut self) {
        if let Some(o) = &self.config.outbound {
            self.outbox
                .push(contact::outbound_message(&o.service, o.size));
            Stats::add(&self.stats.sent, 1);
        }
    }

    fn contact_succeeded(&mut self) {
        Stats::add(&self.stats.contacts, 1);
        if !self.contacted {
            self.contacted = true;
            Stats::add(&self.stats.connected, 1);
        }
    }

    fn contact_data(
        &self,
        messages: Vec<Message>,
        allowed: std::collections::HashMap<String, u64>,
    ) -> ContactData {
        ContactData {
            sequencing_nonce: self.nonce,
            messages,
            client_clock: Some(contact::clock()),
            allowed_messages: allowed,
            ..Default::default()
        }
    }
}

async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn tick_opt(ticker: &mut Option<Interval>) {
    match ticker {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}
