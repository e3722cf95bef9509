//! [`Observed`]: a decorator for the frontend↔engine contract that gives every contact a tracing
//! span (client ID, address, kind) and counts contacts, refusals, active streams and messages
//! handed to clients. The frontend and the engine stay unaware of it; the binary wraps the engine
//! before handing it to the frontend.

use std::sync::Arc;

use fleetgate_types::contact::{Contact, ContactError, ContactHandler, FileContent, StreamSession};
use fleetgate_types::message::destination_service;
use fleetgate_types::pb::fleetspeak::{ContactData, Message, WrappedContactData};
use tracing::{Instrument, Span};

use crate::{ContactKind, Metrics, StreamGuard};

/// Wraps a [`ContactHandler`] (the engine).
pub struct Observed<H> {
    inner: Arc<H>,
    metrics: Metrics,
}

impl<H> Observed<H> {
    pub fn new(inner: Arc<H>, metrics: Metrics) -> Self {
        Self { inner, metrics }
    }
}

fn contact_span(c: &Contact, kind: ContactKind) -> Span {
    tracing::info_span!(
        "contact",
        client = %c.client_id,
        address = %c.observed_address,
        kind = kind.as_str()
    )
}

fn reason(e: &ContactError) -> &'static str {
    match e {
        ContactError::NotAuthorized(_) => "not_authorized",
        ContactError::Invalid(_) => "invalid",
        ContactError::NotReady => "not_ready",
        ContactError::Internal(_) => "internal",
    }
}

impl<H> Observed<H> {
    fn count_outcome<T>(&self, kind: ContactKind, r: &Result<T, ContactError>) {
        match r {
            Ok(_) => self.metrics.contact(kind),
            Err(e) => {
                tracing::debug!(error = %e, "contact refused");
                self.metrics.contact_error(kind, reason(e));
            }
        }
    }
}

/// Counts a batch handed to a client by destination service and type.
fn count_sent(metrics: &Metrics, msgs: &[Message]) {
    for m in msgs {
        metrics.messages_to_client(destination_service(m), &m.message_type, 1);
    }
}

impl<H: ContactHandler> ContactHandler for Observed<H> {
    type Stream = ObservedStream<H::Stream>;

    async fn poll(&self, contact: Contact) -> Result<ContactData, ContactError> {
        let span = contact_span(&contact, ContactKind::Poll);
        let r = self.inner.poll(contact).instrument(span).await;
        self.count_outcome(ContactKind::Poll, &r);
        if let Ok(cd) = &r {
            count_sent(&self.metrics, &cd.messages);
        }
        r
    }

    async fn open_stream(
        &self,
        contact: Contact,
    ) -> Result<(Self::Stream, ContactData), ContactError> {
        let span = contact_span(&contact, ContactKind::Stream);
        let r = self
            .inner
            .open_stream(contact)
            .instrument(span.clone())
            .await;
        self.count_outcome(ContactKind::Stream, &r);
        let (inner, cd) = r?;
        count_sent(&self.metrics, &cd.messages);
        let stream = ObservedStream {
            inner,
            span,
            metrics: self.metrics.clone(),
            _active: self.metrics.stream_opened(),
        };
        Ok((stream, cd))
    }

    async fn read_file(
        &self,
        service: &str,
        name: &str,
    ) -> Result<Option<FileContent>, ContactError> {
        self.inner.read_file(service, name).await
    }
}

/// One stream: its later frames and pushes run in the stream's span, and it counts as active
/// until dropped.
pub struct ObservedStream<S> {
    inner: S,
    span: Span,
    metrics: Metrics,
    _active: StreamGuard,
}

impl<S: StreamSession> StreamSession for ObservedStream<S> {
    async fn frame(&self, wcd: WrappedContactData) -> Result<(), ContactError> {
        self.inner.frame(wcd).instrument(self.span.clone()).await
    }

    async fn next_messages(&self) -> Result<Option<Vec<Message>>, ContactError> {
        let r = self
            .inner
            .next_messages()
            .instrument(self.span.clone())
            .await;
        if let Ok(Some(msgs)) = &r {
            count_sent(&self.metrics, msgs);
        }
        r
    }

    async fn close(&self) {
        self.inner.close().instrument(self.span.clone()).await;
    }
}
