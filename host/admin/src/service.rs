//! Handlers of `fleetspeak.server.Admin` (admin.md §2).

use std::pin::Pin;

use fleetgate_engine::Engine;
use fleetgate_pb::fleetspeak::server::admin_server::Admin;
use fleetgate_pb::fleetspeak::server::*;
use fleetgate_pb::fleetspeak::{EmptyMessage, Message};
use fleetgate_types::time::from_timestamp;
use fleetgate_types::{BroadcastId, MessageId};
use futures::Stream;
use tonic::{Request, Response, Status};

use crate::lock::Grant;
use crate::parse::{self, broadcast_ids, client_id, client_ids, time};
use crate::status::{from_engine, from_store, invalid};

pub use crate::parse::MAX_CLIENT_MESSAGE;

type Reply<T> = Result<Response<T>, Status>;
type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

pub struct AdminService {
    engine: Engine,
}

impl AdminService {
    pub fn new(engine: Engine) -> Self {
        Self { engine }
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn create_broadcast(&self, req: Request<CreateBroadcastRequest>) -> Reply<EmptyMessage> {
        Grant::note(&req, |r| {
            let b = r.broadcast.as_ref();
            format!(
                "service={:?} type={:?} limit={}",
                b.and_then(|b| b.source.as_ref())
                    .map(|s| s.service_name.as_str())
                    .unwrap_or_default(),
                b.map(|b| b.message_type.as_str()).unwrap_or_default(),
                r.limit
            )
        });
        let req = req.into_inner();
        let mut b = req
            .broadcast
            .ok_or_else(|| invalid("CreateBroadcast requires a broadcast"))?;
        if b.broadcast_id.is_empty() {
            b.broadcast_id = BroadcastId::random().to_vec();
        }
        let store = self.engine.store();
        store
            .create_broadcast(&b, req.limit)
            .await
            .map_err(|e| from_store("can't create broadcast", e))?;
        Ok(Response::new(EmptyMessage {}))
    }

    async fn list_active_broadcasts(
        &self,
        req: Request<ListActiveBroadcastsRequest>,
    ) -> Reply<ListActiveBroadcastsResponse> {
        let service = req.into_inner().service_name;
        let active = self
            .engine
            .store()
            .list_active_broadcasts()
            .await
            .map_err(|e| from_store("can't list broadcasts", e))?;
        let broadcasts = active
            .into_iter()
            .map(|i| i.broadcast)
            .filter(|b| {
                service.is_empty() || b.source.as_ref().is_some_and(|s| s.service_name == service)
            })
            .collect();
        Ok(Response::new(ListActiveBroadcastsResponse { broadcasts }))
    }

    async fn disable_broadcasts(
        &self,
        req: Request<DisableBroadcastsRequest>,
    ) -> Reply<EmptyMessage> {
        Grant::note(&req, |r| {
            format!("broadcasts={}", hex_list(&r.broadcast_ids))
        });
        // Every ID is checked before anything changes; nil IDs match nothing.
        let ids = broadcast_ids(&req.into_inner().broadcast_ids)?;
        self.engine
            .store()
            .disable_broadcasts(&ids)
            .await
            .map_err(|e| from_store("can't disable broadcasts", e))?;
        Ok(Response::new(EmptyMessage {}))
    }

    async fn list_clients(&self, req: Request<ListClientsRequest>) -> Reply<ListClientsResponse> {
        // Empty list: every client. Only nil IDs: none.
        let Some(ids) = client_ids(&req.into_inner().client_ids)? else {
            return Ok(Response::new(ListClientsResponse::default()));
        };
        let clients = self
            .engine
            .store()
            .list_clients(&ids)
            .await
            .map_err(|e| from_store("can't list clients", e))?;
        Ok(Response::new(ListClientsResponse { clients }))
    }

    type StreamClientIdsStream = BoxStream<StreamClientIdsResponse>;

    async fn stream_client_ids(
        &self,
        req: Request<StreamClientIdsRequest>,
    ) -> Reply<Self::StreamClientIdsStream> {
        let req = req.into_inner();
        let after = req.last_contact_after.as_ref().and_then(from_timestamp);
        let ids = self
            .engine
            .store()
            .stream_client_ids(req.include_blacklisted, after)
            .await
            .map_err(|e| from_store("can't list client IDs", e))?;
        let items = ids.into_iter().map(|id| {
            Ok(StreamClientIdsResponse {
                client_id: id.to_vec(),
            })
        });
        Ok(Response::new(Box::pin(futures::stream::iter(items))))
    }

    async fn list_client_contacts(
        &self,
        req: Request<ListClientContactsRequest>,
    ) -> Reply<ListClientContactsResponse> {
        let contacts = match client_id(&req.into_inner().client_id)? {
            Some(id) => self
                .engine
                .store()
                .list_client_contacts(id)
                .await
                .map_err(|e| from_store("can't list contacts", e))?,
            None => Vec::new(),
        };
        Ok(Response::new(ListClientContactsResponse { contacts }))
    }

    type StreamClientContactsStream = BoxStream<StreamClientContactsResponse>;

    async fn stream_client_contacts(
        &self,
        req: Request<StreamClientContactsRequest>,
    ) -> Reply<Self::StreamClientContactsStream> {
        let contacts = match client_id(&req.into_inner().client_id)? {
            Some(id) => self
                .engine
                .store()
                .list_client_contacts(id)
                .await
                .map_err(|e| from_store("can't list contacts", e))?,
            None => Vec::new(),
        };
        let items = contacts
            .into_iter()
            .map(|c| Ok(StreamClientContactsResponse { contact: Some(c) }));
        Ok(Response::new(Box::pin(futures::stream::iter(items))))
    }

    async fn get_message_status(
        &self,
        req: Request<GetMessageStatusRequest>,
    ) -> Reply<GetMessageStatusResponse> {
        let raw = req.into_inner().message_id;
        let Some(id) = MessageId::from_wire(&raw).map_err(|e| invalid(e.to_string()))? else {
            return Ok(Response::new(GetMessageStatusResponse::default()));
        };
        let status = self
            .engine
            .store()
            .get_message_status(id)
            .await
            .map_err(|e| from_store("can't read message status", e))?;
        let resp = match status {
            Some((creation_time, result)) => GetMessageStatusResponse {
                creation_time: Some(creation_time),
                result,
            },
            None => GetMessageStatusResponse::default(),
        };
        Ok(Response::new(resp))
    }

    async fn insert_message(&self, req: Request<Message>) -> Reply<EmptyMessage> {
        let grant = Grant::of(&req)?;
        Grant::note(&req, |m| {
            let d = m.destination.as_ref();
            format!(
                "client={} service={:?} type={:?}",
                hex::encode(d.map(|d| d.client_id.as_slice()).unwrap_or_default()),
                d.map(|d| d.service_name.as_str()).unwrap_or_default(),
                m.message_type
            )
        });
        let mut m = req.into_inner();
        let dest = parse::message(&mut m, &self.engine, &grant)?;
        let known = match dest {
            Some(client) => parse::clients_exist(&self.engine, &[client]).await?,
            None => Vec::new(),
        };
        self.engine
            .insert_message_known(m, &known)
            .await
            .map_err(|e| from_engine("can't insert message", e))?;
        Ok(Response::new(EmptyMessage {}))
    }

    async fn delete_pending_messages(
        &self,
        req: Request<DeletePendingMessagesRequest>,
    ) -> Reply<EmptyMessage> {
        Grant::note(&req, |r| format!("clients={}", hex_list(&r.client_ids)));
        let ids = client_ids(&req.into_inner().client_ids)?.unwrap_or_default();
        if !ids.is_empty() {
            self.engine
                .store()
                .delete_pending_messages(&ids)
                .await
                .map_err(|e| from_store("can't delete pending messages", e))?;
        }
        Ok(Response::new(EmptyMessage {}))
    }

    async fn get_pending_messages(
        &self,
        req: Request<GetPendingMessagesRequest>,
    ) -> Reply<GetPendingMessagesResponse> {
        let req = req.into_inner();
        if req.offset > 0 && req.limit == 0 {
            return Err(invalid(
                "Can't read pending messages: if offset is provided, a limit must be provided as well",
            ));
        }
        let ids = client_ids(&req.client_ids)?.unwrap_or_default();
        let messages = if ids.is_empty() {
            Vec::new()
        } else {
            self.engine
                .store()
                .get_pending_messages(&ids, req.offset, req.limit, req.want_data)
                .await
                .map_err(|e| from_store("can't read pending messages", e))?
        };
        Ok(Response::new(GetPendingMessagesResponse { messages }))
    }

    async fn get_pending_message_count(
        &self,
        req: Request<GetPendingMessageCountRequest>,
    ) -> Reply<GetPendingMessageCountResponse> {
        let ids = client_ids(&req.into_inner().client_ids)?.unwrap_or_default();
        let count = if ids.is_empty() {
            0
        } else {
            self.engine
                .store()
                .get_pending_message_count(&ids)
                .await
                .map_err(|e| from_store("can't read pending message count", e))?
        };
        Ok(Response::new(GetPendingMessageCountResponse { count }))
    }

    async fn store_file(&self, req: Request<StoreFileRequest>) -> Reply<EmptyMessage> {
        Grant::note(&req, |r| {
            format!(
                "service={:?} file={:?} bytes={}",
                r.service_name,
                r.file_name,
                r.data.len()
            )
        });
        let req = req.into_inner();
        if req.service_name.is_empty() || req.file_name.is_empty() {
            return Err(invalid("file must have service_name and file_name"));
        }
        self.engine
            .store()
            .store_file(&req.service_name, &req.file_name, &req.data)
            .await
            .map_err(|e| from_store("can't store file", e))?;
        Ok(Response::new(EmptyMessage {}))
    }

    async fn delete_file(&self, req: Request<DeleteFileRequest>) -> Reply<EmptyMessage> {
        Grant::note(&req, |r| {
            format!("service={:?} file={:?}", r.service_name, r.file_name)
        });
        let req = req.into_inner();
        if req.service_name.is_empty() || req.file_name.is_empty() {
            return Err(invalid("file must have service_name and file_name"));
        }
        self.engine
            .store()
            .delete_file(&req.service_name, &req.file_name)
            .await
            .map_err(|e| from_store("can't delete file", e))?;
        Ok(Response::new(EmptyMessage {}))
    }

    async fn keep_alive(&self, _req: Request<EmptyMessage>) -> Reply<EmptyMessage> {
        Ok(Response::new(EmptyMessage {}))
    }

    async fn blacklist_client(&self, req: Request<BlacklistClientRequest>) -> Reply<EmptyMessage> {
        Grant::note(&req, |r| format!("client={}", hex::encode(&r.client_id)));
        if let Some(id) = client_id(&req.into_inner().client_id)? {
            self.engine
                .store()
                .blacklist_client(id)
                .await
                .map_err(|e| from_store("can't blacklist client", e))?;
            // Take effect on this server's next contact, not after the cache entry ages out.
            self.engine.forget_client(id);
        }
        Ok(Response::new(EmptyMessage {}))
    }

    async fn fetch_client_resource_usage_records(
        &self,
        req: Request<FetchClientResourceUsageRecordsRequest>,
    ) -> Reply<FetchClientResourceUsageRecordsResponse> {
        let req = req.into_inner();
        let id = client_id(&req.client_id)?;
        let start = time(req.start_timestamp.as_ref(), "start_timestamp")?;
        let end = time(req.end_timestamp.as_ref(), "end_timestamp")?;
        if start > end {
            return Err(invalid(
                "timerange is invalid: start timestamp is after end timestamp",
            ));
        }
        // The nil ID has no records; the original answered it with an empty list too.
        let Some(id) = id else {
            return Ok(Response::new(
                FetchClientResourceUsageRecordsResponse::default(),
            ));
        };
        let records = self
            .engine
            .store()
            .fetch_resource_usage_records(id, start, end)
            .await
            .map_err(|e| from_store("can't fetch resource usage records", e))?;
        Ok(Response::new(FetchClientResourceUsageRecordsResponse {
            records,
        }))
    }
}

/// IDs for an audit line: the first few in hex, and how many in all.
pub(crate) fn hex_list(ids: &[Vec<u8>]) -> String {
    const SHOWN: usize = 4;
    let mut text: Vec<String> = ids.iter().take(SHOWN).map(hex::encode).collect();
    if ids.len() > SHOWN {
        text.push(format!("… ({} in all)", ids.len()));
    }
    format!("[{}]", text.join(","))
}
