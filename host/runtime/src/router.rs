//! [`ComponentRouter`]: a component of the `router` world. It sees a message and answers
//! where copies of it go; the payload never comes back from the guest, so a router can
//! re-address, annotate, fan out or drop, but not rewrite.

use std::sync::Arc;

use fleetgate_pb::fleetspeak::Message;

use crate::bindings::{RouterWorldPre, WitProcessError};
use crate::call::{self, Loaded};
use crate::convert::{address_from_wit, annotations_from_wit, to_wit};
use crate::error::{CallError, RuntimeError};
use crate::host::HostServices;
use crate::runtime::Runtime;
use crate::spec::PluginSpec;
use crate::state::{HostState, ServiceContext};
use crate::stats::StatsSnapshot;

pub struct ComponentRouter {
    runtime: Runtime,
    pre: RouterWorldPre<HostState>,
    ctx: Arc<ServiceContext>,
    config: Vec<u8>,
    digest: String,
}

impl ComponentRouter {
    pub fn load(
        runtime: &Runtime,
        spec: PluginSpec,
        host: HostServices,
    ) -> Result<Self, RuntimeError> {
        let Loaded { pre, ctx, digest } = call::load(runtime, &spec, host, "router")?;
        let pre = RouterWorldPre::new(pre).map_err(|e| RuntimeError::World {
            service: spec.name.clone(),
            world: "router",
            reason: format!("{e:#}"),
        })?;
        Ok(Self {
            runtime: runtime.clone(),
            pre,
            ctx,
            config: spec.config,
            digest,
        })
    }

    /// SHA-256 of the component binary that was loaded, hex.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.ctx.stats.snapshot()
    }

    /// The messages `message` becomes: each a copy with the router's destination and
    /// annotations. An empty list means drop it.
    pub async fn route(&self, message: &Message) -> Result<Vec<Message>, CallError> {
        let started = std::time::Instant::now();
        let result = self.route_once(message).await;
        let trap = result.as_ref().is_err_and(CallError::is_trap);
        self.ctx
            .stats
            .record(started.elapsed(), result.is_ok(), trap);
        result
    }

    async fn route_once(&self, message: &Message) -> Result<Vec<Message>, CallError> {
        let _slot = self.runtime.slot().await;
        let mut store = call::store(self.runtime.engine(), &self.ctx, None)?;
        let world = match self.pre.instantiate_async(&mut store).await {
            Ok(w) => w,
            Err(e) => return Err(call::instantiate_error(e, store.data())),
        };
        let guest = |e: String| CallError::Guest(fleetgate_engine::ServiceError::Temporary(e));
        match world.call_init(&mut store, &self.config).await {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => return Err(guest(format!("init: {reason}"))),
            Err(e) => return Err(call::classify(e, store.data())),
        }
        let routed = match world.call_route(&mut store, &to_wit(message)).await {
            Ok(Ok(routed)) => routed,
            Ok(Err(WitProcessError::Temporary(r))) => return Err(guest(r)),
            Ok(Err(WitProcessError::Permanent(r))) => {
                return Err(CallError::Guest(fleetgate_engine::ServiceError::Permanent(
                    r,
                )));
            }
            Err(e) => return Err(call::classify(e, store.data())),
        };
        Ok(routed
            .into_iter()
            .map(|r| Message {
                destination: Some(address_from_wit(r.destination)),
                annotations: annotations_from_wit(r.annotations),
                ..message.clone()
            })
            .collect())
    }
}
