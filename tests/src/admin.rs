//! The admin gRPC API (`fleetspeak.server.Admin`, plaintext HTTP/2).

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use fleetgate_pb::fleetspeak::server::admin_client::AdminClient;
use fleetgate_pb::fleetspeak::server::{
    Client, ClientContact, ClientResourceUsageRecord, FetchClientResourceUsageRecordsRequest,
    GetMessageStatusRequest, GetMessageStatusResponse, ListClientContactsRequest,
    ListClientsRequest,
};
use fleetgate_pb::fleetspeak::{Address, Message};
use rand::RngCore;
use tonic::transport::Channel;

use crate::client::TEST_SERVICE;

/// The type URL of test payloads. The client passes `data` through untouched, so it need not
/// name a real message type.
pub const PAYLOAD_TYPE_URL: &str = "type.googleapis.com/fleetgate.e2e.Payload";

/// Deadline for each admin call.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A connected admin client. Cheap to clone.
#[derive(Clone)]
pub struct Admin {
    inner: AdminClient<Channel>,
}

impl Admin {
    /// Connects to `addr`.
    pub async fn connect(addr: SocketAddr) -> Result<Admin> {
        let channel = Channel::from_shared(format!("http://{addr}"))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(CALL_TIMEOUT)
            .connect()
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        Ok(Admin {
            inner: AdminClient::new(channel),
        })
    }

    /// The raw tonic client, for calls without a helper.
    pub fn raw(&self) -> AdminClient<Channel> {
        self.inner.clone()
    }

    /// Inserts a message from server service [`TEST_SERVICE`] to `service` on `client_id`,
    /// with a random 32-byte message id (as GRR's connector does), and returns that id.
    pub async fn insert(
        &self,
        client_id: &[u8],
        service: &str,
        message_type: &str,
        payload: &[u8],
    ) -> Result<Vec<u8>> {
        let mut id = vec![0u8; 32];
        rand::rng().fill_bytes(&mut id);
        let m = Message {
            message_id: id.clone(),
            source: Some(Address {
                client_id: vec![],
                service_name: TEST_SERVICE.into(),
            }),
            destination: Some(Address {
                client_id: client_id.to_vec(),
                service_name: service.into(),
            }),
            message_type: message_type.into(),
            data: Some(prost_types::Any {
                type_url: PAYLOAD_TYPE_URL.into(),
                value: payload.to_vec(),
            }),
            ..Default::default()
        };
        self.inner
            .clone()
            .insert_message(m)
            .await
            .with_context(|| {
                format!(
                    "InsertMessage {} ({message_type} to {}/{service})",
                    hex::encode(&id),
                    hex::encode(client_id)
                )
            })?;
        Ok(id)
    }

    /// `ListClients`; an empty `ids` lists all clients.
    pub async fn list_clients(&self, ids: &[Vec<u8>]) -> Result<Vec<Client>> {
        let r = self
            .inner
            .clone()
            .list_clients(ListClientsRequest {
                client_ids: ids.to_vec(),
            })
            .await
            .context("ListClients")?;
        Ok(r.into_inner().clients)
    }

    /// `GetMessageStatus`.
    pub async fn message_status(&self, id: &[u8]) -> Result<GetMessageStatusResponse> {
        let r = self
            .inner
            .clone()
            .get_message_status(GetMessageStatusRequest {
                message_id: id.to_vec(),
            })
            .await
            .with_context(|| format!("GetMessageStatus {}", hex::encode(id)))?;
        Ok(r.into_inner())
    }

    /// `ListClientContacts`.
    pub async fn contacts(&self, client_id: &[u8]) -> Result<Vec<ClientContact>> {
        let r = self
            .inner
            .clone()
            .list_client_contacts(ListClientContactsRequest {
                client_id: client_id.to_vec(),
            })
            .await
            .context("ListClientContacts")?;
        Ok(r.into_inner().contacts)
    }

    /// `FetchClientResourceUsageRecords` over a day either side of now.
    pub async fn resource_usage(&self, client_id: &[u8]) -> Result<Vec<ClientResourceUsageRecord>> {
        let now = SystemTime::now();
        let day = Duration::from_secs(86_400);
        let req = FetchClientResourceUsageRecordsRequest {
            client_id: client_id.to_vec(),
            start_timestamp: Some((now - day).into()),
            end_timestamp: Some((now + day).into()),
        };
        let r = self
            .inner
            .clone()
            .fetch_client_resource_usage_records(req)
            .await
            .context("FetchClientResourceUsageRecords")?;
        Ok(r.into_inner().records)
    }
}

/// `service:label` strings of a client's labels, sorted.
pub fn label_strings(c: &Client) -> Vec<String> {
    let mut v: Vec<String> = c
        .labels
        .iter()
        .map(|l| format!("{}:{}", l.service_name, l.label))
        .collect();
    v.sort();
    v
}
