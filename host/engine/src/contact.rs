//! The engine's side of the frontend contract: one contact at a time (client-lifecycle.md §1).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fleetgate_pb::fleetspeak::{ContactData, Label, Message, WrappedContactData};
use fleetgate_store::{ClientData, ContactRecord, StoreError};
use fleetgate_types::contact::{Contact, ContactError, ContactHandler, FileContent, StreamSession};
use fleetgate_types::{ClientId, ContactId};
use prost::Message as _;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::Engine;
use crate::delivery::{MAX_BATCH, Tokens};
use crate::registry::StreamSignal;
use crate::trace::Handout;

/// More messages than this in one contact is an error, as in the original.
pub const MAX_MESSAGES_PER_CONTACT: usize = 100;

/// Added to the grace before a stream looks again: the store schedules by the wall clock and the
/// timer runs on the monotonic one, and looking a moment early would miss the messages.
const CLOCK_MARGIN: Duration = Duration::from_millis(100);

/// What the first part of every contact established.
struct Established {
    client: ClientId,
    blacklisted: bool,
    contact: ContactId,
    nonce: u64,
    tokens: Tokens,
    /// The client's labels when this contact is checked for broadcasts: its record was not a
    /// cache hit (server.md §10).
    broadcast_labels: Option<Vec<Label>>,
    /// The broadcast generation before the client record was read.
    broadcast_generation: u64,
    /// When the leases this stream superseded are due: the stream looks again then.
    redeliver_at: Option<Instant>,
}

fn internal(e: StoreError) -> ContactError {
    ContactError::Internal(e.to_string())
}

fn parse_contact_data(wcd: &WrappedContactData) -> Result<ContactData, ContactError> {
    let cd = ContactData::decode(wcd.contact_data.as_slice())
        .map_err(|e| ContactError::Invalid(format!("unable to parse contact_data: {e}")))?;
    if cd.messages.len() > MAX_MESSAGES_PER_CONTACT {
        return Err(ContactError::Invalid(format!(
            "contact_data contains {} messages, only {MAX_MESSAGES_PER_CONTACT} allowed",
            cd.messages.len()
        )));
    }
    Ok(cd)
}

impl Engine {
    /// Authorizes, enrols if new, records the contact and ingests the client's messages.
    async fn establish(
        &self,
        c: Contact,
        streaming: bool,
    ) -> Result<(Established, Option<Arc<StreamSignal>>), ContactError> {
        if self.is_stopping() {
            return Err(ContactError::NotReady);
        }
        if let Some(required) = &self.inner.config.required_label
            && !c.wcd.client_labels.iter().any(|l| l == required)
        {
            return Err(ContactError::NotAuthorized(format!(
                "client lacks required label {required:?}"
            )));
        }
        let broadcast_generation = self.broadcast_generation();
        let (data, cached) = self.client_data_or_enrol(&c).await?;
        let cd = parse_contact_data(&c.wcd)?;
        let nonce: u64 = rand::random();
        let record = ContactRecord {
            client_id: Some(c.client_id),
            sent_nonce: nonce,
            received_nonce: cd.sequencing_nonce,
            address: c.observed_address.clone(),
            client_clock: cd.client_clock,
            streaming_to: if streaming {
                self.inner.config.streaming_to.clone()
            } else {
                String::new()
            },
        };
        let contact = self
            .inner
            .store
            .record_client_contact(&record)
            .await
            .map_err(internal)?;
        self.ingest(c.client_id, data.blacklisted, cd.messages, contact)
            .await
            .map_err(internal)?;
        // After ingesting: acks the client carried over from its old stream in this first frame
        // are applied, so those messages are not pending any more. Polls never supersede: a
        // polling client acks what it got in its next poll, so its open leases are normal.
        let redeliver_at = if streaming && !data.blacklisted {
            let grace = self.inner.config.redelivery_grace;
            let any = self.redeliver_superseded(c.client_id, contact, grace).await;
            (any && !grace.is_zero()).then(|| Instant::now() + grace + CLOCK_MARGIN)
        } else {
            None
        };
        // Register before selecting, so a message inserted during the selection still wakes us.
        let signal = streaming.then(|| self.inner.streams.register(c.client_id));
        // No map in the first frame means a legacy client: unlimited for the whole connection.
        // (The original turned later deltas into a map with zero tokens for every other service,
        // starving the client; protocol.md §14 item 6.)
        let tokens = (!cd.allowed_messages.is_empty()).then_some(cd.allowed_messages);
        Ok((
            Established {
                client: c.client_id,
                blacklisted: data.blacklisted,
                contact,
                nonce,
                tokens,
                broadcast_labels: (!cached).then_some(data.labels),
                broadcast_generation,
                redeliver_at,
            },
            signal,
        ))
    }

    /// The client's record and whether it was a cache hit.
    async fn client_data_or_enrol(&self, c: &Contact) -> Result<(ClientData, bool), ContactError> {
        let cache = &self.inner.cache;
        if let Some(d) = cache.get(c.client_id) {
            return Ok((d, true));
        }
        let store = &self.inner.store;
        match store.get_client_data(c.client_id).await {
            Ok(d) => {
                cache.put(c.client_id, d.clone());
                Ok((d, false))
            }
            Err(StoreError::NotFound(_)) => {
                let data = ClientData {
                    key: c.public_key.clone(),
                    labels: Vec::new(),
                    blacklisted: false,
                };
                if let Err(e) = store.add_client(c.client_id, &data).await {
                    // Two first contacts of one new client can race (a retried poll, or a poll
                    // and a stream): the loser's insert hits the existing row. That client is
                    // enrolled now, so carry on with its record instead of failing the contact.
                    return match store.get_client_data(c.client_id).await {
                        Ok(d) => Ok((d, false)),
                        Err(_) => Err(internal(e)),
                    };
                }
                let mut labels = Vec::new();
                for l in c.wcd.client_labels.iter().filter(|l| !l.is_empty()) {
                    let label = Label {
                        service_name: "client".into(),
                        label: l.clone(),
                    };
                    // The first ClientInfo repairs any label that failed here.
                    if let Err(e) = store.add_client_label(c.client_id, &label).await {
                        tracing::debug!(client = %c.client_id, error = %e, "adding enrolment label");
                    }
                    labels.push(label);
                }
                tracing::info!(client = %c.client_id, address = %c.observed_address, "enrolled new client");
                Ok((ClientData { labels, ..data }, false))
            }
            Err(e) => Err(internal(e)),
        }
    }
}

impl ContactHandler for Engine {
    type Stream = Stream;

    async fn poll(&self, contact: Contact) -> Result<ContactData, ContactError> {
        let (mut est, _) = self.establish(contact, false).await?;
        let labels = est.broadcast_labels.take();
        let messages = self
            .select_for_client(
                est.client,
                est.blacklisted,
                &mut est.tokens,
                est.contact,
                labels.as_deref(),
            )
            .await
            .map_err(internal)?;
        self.trace_pushed(&messages, est.contact, Handout::Poll);
        Ok(ContactData {
            sequencing_nonce: est.nonce,
            messages,
            ..Default::default()
        })
    }

    async fn open_stream(&self, contact: Contact) -> Result<(Stream, ContactData), ContactError> {
        let (est, signal) = self.establish(contact, true).await?;
        let Some(signal) = signal else {
            return Err(ContactError::Internal("stream was not registered".into()));
        };
        // Built before the first await after registering: if selecting fails, or the caller drops
        // this future (the frontend bounds stream start with a timeout), dropping the stream
        // unregisters it rather than leaving a dead entry that `notify_client` reports as held.
        let stream = Stream {
            engine: self.clone(),
            tokens: Mutex::new(est.tokens),
            signal,
            id: est.client,
            contact: est.contact,
            blacklisted: est.blacklisted,
            broadcasts_seen: AtomicU64::new(est.broadcast_generation),
            redeliver_at: std::sync::Mutex::new(est.redeliver_at),
        };
        let messages = {
            let mut tokens = stream.tokens.lock().await;
            self.select_for_client(
                est.client,
                est.blacklisted,
                &mut tokens,
                est.contact,
                est.broadcast_labels.as_deref(),
            )
            .await
            .map_err(internal)?
        };
        if messages.len() == MAX_BATCH {
            stream.signal.wake.notify_one();
        }
        self.trace_pushed(&messages, est.contact, Handout::StreamStart);
        let reply = ContactData {
            sequencing_nonce: est.nonce,
            messages,
            ..Default::default()
        };
        Ok((stream, reply))
    }

    async fn read_file(
        &self,
        service: &str,
        name: &str,
    ) -> Result<Option<FileContent>, ContactError> {
        match self.inner.store.read_file(service, name).await {
            Ok((data, modified)) => Ok(Some(FileContent { data, modified })),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(internal(e)),
        }
    }
}

/// One client's stream on this server.
pub struct Stream {
    engine: Engine,
    id: ClientId,
    contact: ContactId,
    blacklisted: bool,
    /// The connection's flow-control tokens; frames add, deliveries spend.
    tokens: Mutex<Tokens>,
    signal: Arc<StreamSignal>,
    /// The broadcast generation this stream was last checked against; a newer one means new
    /// broadcasts, so the next fetch checks the client again.
    broadcasts_seen: AtomicU64,
    /// Set while leases this stream superseded wait out their grace; cleared when it ends.
    redeliver_at: std::sync::Mutex<Option<Instant>>,
}

impl StreamSession for Stream {
    async fn frame(&self, wcd: WrappedContactData) -> Result<(), ContactError> {
        // Frames keep being stored while the server stops: the stream is draining, and its last
        // acks save the client from re-sending. The store closes only after the frontend is done.
        let cd = parse_contact_data(&wcd)?;
        self.add_tokens(&cd).await;
        self.engine
            .ingest(self.id, self.blacklisted, cd.messages, self.contact)
            .await
            .map_err(internal)
    }

    async fn next_messages(&self) -> Result<Option<Vec<Message>>, ContactError> {
        loop {
            if self.signal.is_superseded() {
                return Ok(None);
            }
            let graced = self.wait().await;
            if self.signal.is_superseded() {
                return Ok(None);
            }
            // A blacklisted client got its RekeyRequest in frame 0; nothing else is pushed.
            if self.blacklisted || self.engine.is_stopping() {
                continue;
            }
            if graced {
                // An older stream that is still open somewhere (its server has not noticed the
                // client left) may have leased them again during the grace: take them back.
                // Boxed for the same reason as the selection below.
                Box::pin(
                    self.engine
                        .redeliver_superseded(self.id, self.contact, Duration::ZERO),
                )
                .await;
            }
            // Boxed: selecting needs a large future, which then exists only while it runs. Inline
            // it would sit in every idle stream's wait, tens of thousands of them.
            return Box::pin(self.select()).await.map(Some);
        }
    }

    async fn close(&self) {
        self.engine.inner.streams.unregister(self.id, &self.signal);
    }
}

impl Stream {
    /// Waits for a wake-up, or for the end of the redelivery grace (then returns true).
    async fn wait(&self) -> bool {
        let at = *self.redeliver_at.lock().unwrap_or_else(|p| p.into_inner());
        let Some(at) = at else {
            self.signal.wake.notified().await;
            return false;
        };
        // Boxed, so an idle stream without a grace running does not carry a timer.
        tokio::select! {
            () = self.signal.wake.notified() => false,
            () = Box::pin(tokio::time::sleep_until(at)) => {
                *self.redeliver_at.lock().unwrap_or_else(|p| p.into_inner()) = None;
                true
            }
        }
    }

    /// The messages to push now; asks for another round at once if the batch was full.
    async fn select(&self) -> Result<Vec<Message>, ContactError> {
        let labels = self.labels_if_new_broadcasts().await;
        let mut tokens = self.tokens.lock().await;
        let msgs = self
            .engine
            .select_for_client(self.id, false, &mut tokens, self.contact, labels.as_deref())
            .await
            .map_err(internal)?;
        if msgs.len() == MAX_BATCH {
            self.signal.wake.notify_one();
        }
        self.engine
            .trace_pushed(&msgs, self.contact, Handout::Stream);
        Ok(msgs)
    }
}

/// `close` is the contract's way to end a stream; this covers a stream dropped without it (a
/// cancelled `open_stream`, a frontend task that panicked). Unregistering twice is harmless, and a
/// newer stream for the same client is never removed.
impl Drop for Stream {
    fn drop(&mut self) {
        self.engine.inner.streams.unregister(self.id, &self.signal);
    }
}

impl Stream {
    /// The client's current labels if broadcasts were added since this stream last looked (the
    /// refresh cleared the cache, so this reads the store once per refresh and stream).
    async fn labels_if_new_broadcasts(&self) -> Option<Vec<Label>> {
        let now = self.engine.broadcast_generation();
        if self.broadcasts_seen.swap(now, Ordering::AcqRel) == now {
            return None;
        }
        match self.engine.inner.store.get_client_data(self.id).await {
            Ok(d) => {
                let labels = d.labels.clone();
                self.engine.inner.cache.put(self.id, d);
                Some(labels)
            }
            Err(e) => {
                tracing::debug!(client = %self.id, error = %e, "reading labels for broadcasts");
                None
            }
        }
    }

    /// Adds the frame's tokens (deltas after frame 0). New tokens for a service that had none may
    /// unblock queued messages, so look again.
    async fn add_tokens(&self, cd: &ContactData) {
        if cd.allowed_messages.is_empty() {
            return;
        }
        let mut tokens = self.tokens.lock().await;
        let Some(t) = tokens.as_mut() else { return };
        let mut unblocked = false;
        for (svc, n) in &cd.allowed_messages {
            let slot = t.entry(svc.clone()).or_insert(0);
            unblocked |= *slot == 0 && *n > 0;
            *slot = slot.saturating_add(*n);
        }
        if unblocked {
            self.signal.wake.notify_one();
        }
    }
}
