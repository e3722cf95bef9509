//! `fleetgate.admin.v1.FleetgateAdmin`: our additions, served on the admin port next to
//! `fleetspeak.server.Admin`.

use std::sync::Arc;
use std::time::Duration;

use fleetgate_engine::Engine;
use fleetgate_pb::fleetgate::admin::v1::fleetgate_admin_server::FleetgateAdmin;
use fleetgate_pb::fleetgate::admin::v1::*;
use tonic::{Request, Response, Status};

use crate::dead_letters;
use crate::lock::Grant;
use crate::parse::{self, client_ids};
use crate::plugins::PluginControl;
use crate::rollout;
use crate::status::{for_item, from_engine, from_store, invalid, not_found, unimplemented};
use fleetgate_types::MessageId;

type Reply<T> = Result<Response<T>, Status>;

pub struct ExtensionService {
    engine: Engine,
    /// `None` when the binary runs no plugin runtime: the plugin RPCs answer UNIMPLEMENTED.
    plugins: Option<Arc<dyn PluginControl>>,
}

impl ExtensionService {
    pub fn new(engine: Engine, plugins: Option<Arc<dyn PluginControl>>) -> Self {
        Self { engine, plugins }
    }

    fn plugins(&self) -> Result<&Arc<dyn PluginControl>, Status> {
        self.plugins
            .as_ref()
            .ok_or_else(|| unimplemented("this server runs no plugin runtime"))
    }
}

fn age(d: Option<prost_types::Duration>) -> Result<Option<Duration>, Status> {
    let Some(d) = d else { return Ok(None) };
    let secs = u64::try_from(d.seconds);
    let nanos = u32::try_from(d.nanos).ok().filter(|n| *n < 1_000_000_000);
    match (secs, nanos) {
        (Ok(s), Some(n)) => Ok(Some(Duration::new(s, n))),
        _ => Err(invalid(format!(
            "older_than must be a non-negative duration, got {}s {}ns",
            d.seconds, d.nanos
        ))),
    }
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

#[tonic::async_trait]
impl FleetgateAdmin for ExtensionService {
    /// Checks every message (as `InsertMessage` does) before storing any, then stores all in one
    /// transaction.
    async fn insert_messages(
        &self,
        req: Request<InsertMessagesRequest>,
    ) -> Reply<InsertMessagesResponse> {
        let grant = Grant::of(&req)?;
        Grant::note(&req, |r| {
            let mut services: Vec<&str> = r
                .messages
                .iter()
                .filter_map(|m| m.destination.as_ref().map(|d| d.service_name.as_str()))
                .collect();
            services.sort_unstable();
            services.dedup();
            format!("messages={} services={services:?}", r.messages.len())
        });
        let mut msgs = req.into_inner().messages;
        let mut clients = Vec::new();
        for (i, m) in msgs.iter_mut().enumerate() {
            let dest = parse::message(m, &self.engine, &grant).map_err(|s| for_item(i, s))?;
            clients.extend(dest);
        }
        let known = parse::clients_exist(&self.engine, &clients).await?;
        let ids = self
            .engine
            .insert_messages(msgs, &known)
            .await
            .map_err(|e| from_engine("can't insert messages", e))?;
        Ok(Response::new(InsertMessagesResponse {
            message_ids: ids.iter().map(|id| id.to_vec()).collect(),
        }))
    }

    async fn purge_pending_messages(
        &self,
        req: Request<PurgePendingMessagesRequest>,
    ) -> Reply<PurgePendingMessagesResponse> {
        Grant::note(&req, |r| {
            format!(
                "clients={} service={:?} type={:?}",
                // An empty list purges every client's queue.
                if r.client_ids.is_empty() {
                    "all".to_owned()
                } else {
                    crate::service::hex_list(&r.client_ids)
                },
                r.service_name,
                r.message_type
            )
        });
        let req = req.into_inner();
        let older_than = age(req.older_than)?;
        // Empty list: every client. Only nil IDs: none.
        let Some(ids) = client_ids(&req.client_ids)? else {
            return Ok(Response::new(PurgePendingMessagesResponse { purged: 0 }));
        };
        let purged = self
            .engine
            .store()
            .purge_pending_messages(
                &ids,
                non_empty(&req.service_name),
                non_empty(&req.message_type),
                older_than,
            )
            .await
            .map_err(|e| from_store("can't purge pending messages", e))?;
        Ok(Response::new(PurgePendingMessagesResponse { purged }))
    }

    /// The steps of one message from the shared store. An ID that is not 32 bytes is
    /// INVALID_ARGUMENT; one with no steps and no stored message is NOT_FOUND. A stored message
    /// without steps (traced while tracing was off, or its steps pruned) answers no steps.
    async fn trace_message(
        &self,
        req: Request<TraceMessageRequest>,
    ) -> Reply<TraceMessageResponse> {
        let raw = req.into_inner().message_id;
        let id = MessageId::from_bytes(&raw)
            .map_err(|e| invalid(format!("{e} (given {})", hex::encode(&raw))))?;
        let store = self.engine.store();
        let steps = store
            .message_trace(id)
            .await
            .map_err(|e| from_store(&format!("can't read the trace of message {id}"), e))?;
        if steps.is_empty()
            && store
                .get_message_status(id)
                .await
                .map_err(|e| from_store(&format!("can't read message {id}"), e))?
                .is_none()
        {
            return Err(not_found(format!(
                "message {id} is unknown: no trace and no stored message"
            )));
        }
        Ok(Response::new(TraceMessageResponse {
            steps: steps
                .into_iter()
                .map(|s| TraceStep {
                    time: Some(fleetgate_types::time::to_timestamp(s.time)),
                    server: s.server,
                    step: s.step,
                    detail: s.detail,
                })
                .collect(),
        }))
    }

    async fn list_plugins(&self, _req: Request<ListPluginsRequest>) -> Reply<ListPluginsResponse> {
        let plugins = self.plugins()?.list().await;
        Ok(Response::new(ListPluginsResponse {
            plugins: plugins.into_iter().map(Into::into).collect(),
        }))
    }

    /// A failed reload is an answer, not an RPC error: `ok` is false, `error` says why and
    /// `plugins` lists the set that keeps running.
    async fn reload_plugins(
        &self,
        _req: Request<ReloadPluginsRequest>,
    ) -> Reply<ReloadPluginsResponse> {
        let control = self.plugins()?;
        let resp = match control.reload().await {
            Ok(plugins) => ReloadPluginsResponse {
                ok: true,
                error: String::new(),
                plugins: plugins.into_iter().map(Into::into).collect(),
            },
            Err(error) => {
                tracing::warn!(%error, "plugin reload failed");
                ReloadPluginsResponse {
                    ok: false,
                    error,
                    plugins: control.list().await.into_iter().map(Into::into).collect(),
                }
            }
        };
        Ok(Response::new(resp))
    }

    async fn list_dead_letters(
        &self,
        req: Request<ListDeadLettersRequest>,
    ) -> Reply<ListDeadLettersResponse> {
        dead_letters::list(&self.engine, req.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_dead_letter(&self, req: Request<GetDeadLetterRequest>) -> Reply<DeadLetter> {
        dead_letters::get(&self.engine, req.into_inner())
            .await
            .map(Response::new)
    }

    async fn replay_dead_letters(
        &self,
        req: Request<ReplayDeadLettersRequest>,
    ) -> Reply<ReplayDeadLettersResponse> {
        Grant::note(&req, |r| {
            if r.message_ids.is_empty() {
                format!("service={:?} since={:?}", r.service, r.since)
            } else {
                format!("messages={}", crate::service::hex_list(&r.message_ids))
            }
        });
        dead_letters::replay(&self.engine, req.into_inner())
            .await
            .map(Response::new)
    }

    async fn purge_dead_letters(
        &self,
        req: Request<PurgeDeadLettersRequest>,
    ) -> Reply<PurgeDeadLettersResponse> {
        Grant::note(&req, |r| {
            format!("service={:?} since={:?} all={}", r.service, r.since, r.all)
        });
        dead_letters::purge(&self.engine, req.into_inner())
            .await
            .map(Response::new)
    }

    async fn deploy_plugin(&self, req: Request<DeployPluginRequest>) -> Reply<Deployment> {
        let grant = Grant::of(&req)?;
        Grant::note(&req, |r| {
            format!(
                "service={:?} bytes={} share={:?} labels={:?} auto_rollback={}",
                r.service,
                r.wasm.len(),
                r.share,
                r.labels,
                r.auto_rollback
            )
        });
        let control = self.plugins()?;
        rollout::deploy(
            &self.engine,
            control.as_ref(),
            caller(&grant),
            req.into_inner(),
        )
        .await
        .map(Response::new)
    }

    async fn promote_plugin(&self, req: Request<PromotePluginRequest>) -> Reply<Deployment> {
        Grant::note(&req, |r| format!("service={:?}", r.service));
        rollout::promote(&self.engine, req.into_inner())
            .await
            .map(Response::new)
    }

    async fn rollback_plugin(&self, req: Request<RollbackPluginRequest>) -> Reply<Deployment> {
        let grant = Grant::of(&req)?;
        Grant::note(&req, |r| {
            format!("service={:?} reason={:?}", r.service, r.reason)
        });
        rollout::rollback(&self.engine, caller(&grant), req.into_inner())
            .await
            .map(Response::new)
    }

    async fn plugin_rollout_status(
        &self,
        req: Request<PluginRolloutStatusRequest>,
    ) -> Reply<PluginRolloutStatusResponse> {
        rollout::status(&self.engine, req.into_inner())
            .await
            .map(Response::new)
    }

    async fn plugin_history(
        &self,
        req: Request<PluginHistoryRequest>,
    ) -> Reply<PluginHistoryResponse> {
        rollout::history(&self.engine, req.into_inner())
            .await
            .map(Response::new)
    }
}

/// Who asked, as a deployment records it: the locked listener's identity, empty on the
/// plaintext listener.
fn caller(grant: &Grant) -> &str {
    match grant.caller.as_str() {
        "plaintext" => "",
        c => c,
    }
}
