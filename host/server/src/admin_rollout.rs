//! `fleetgate admin plugins deploy|promote|rollback|status|history`: the rollout RPCs of the
//! extension API, as text for people or JSON for scripts.

use anyhow::{Context, Result, anyhow};
use fleetgate_pb::fleetgate::admin::v1::fleetgate_admin_client::FleetgateAdminClient;
use fleetgate_pb::fleetgate::admin::v1::{
    DeployPluginRequest, Deployment, PluginHistoryRequest, PluginRolloutStatusRequest,
    PromotePluginRequest, RollbackPluginRequest, ServiceRollout, ShadowStats, VersionStats,
};
use fleetgate_runtime::WasmConfig;
use prost::Message as _;
use serde_json::{Value, json};
use tonic::transport::Channel;

use crate::admin_format::time;
use crate::args::PluginsCommand;

fn failed(rpc: &str) -> impl Fn(tonic::Status) -> anyhow::Error + '_ {
    move |s| anyhow!("{rpc} failed: {}", s.message())
}

pub async fn run(
    ext: &mut FleetgateAdminClient<Channel>,
    c: PluginsCommand,
    json: bool,
) -> Result<String> {
    match c {
        PluginsCommand::List | PluginsCommand::Reload => {
            unreachable!("handled by admin_cli")
        }
        PluginsCommand::Deploy {
            service,
            component,
            config,
            share,
            labels,
            shadow,
            auto_rollback,
            window,
            window_calls,
            min_calls,
            max_error_points,
            max_p99_ratio,
        } => {
            let wasm = std::fs::read(&component)
                .with_context(|| format!("reading the component {}", component.display()))?;
            let config = config
                .map(|path| {
                    let text = std::fs::read(&path)
                        .with_context(|| format!("reading the plugin config {}", path.display()))?;
                    let c: WasmConfig = fleetgate_config::textproto::parse(
                        &path,
                        &text,
                        "fleetgate.plugin.v1.WasmConfig",
                    )
                    .map_err(|e| anyhow!("{e}"))?;
                    Ok::<_, anyhow::Error>(c.encode_to_vec())
                })
                .transpose()?;
            if let Some(s) = share.filter(|s| *s > 100) {
                anyhow::bail!("--share {s}: a share is a percentage, 0-100");
            }
            let window = window
                .map(|w| {
                    let d = fleetgate_config::duration::parse_go_duration(&w)
                        .map_err(|e| anyhow!("--window {w:?}: {e}"))?;
                    prost_types::Duration::try_from(d).map_err(|e| anyhow!("--window {w:?}: {e}"))
                })
                .transpose()?;
            let d = ext
                .deploy_plugin(DeployPluginRequest {
                    service,
                    wasm,
                    config,
                    share,
                    labels,
                    shadow,
                    auto_rollback,
                    window,
                    window_calls,
                    min_calls,
                    error_rate_points: max_error_points,
                    p99_ratio: max_p99_ratio,
                })
                .await
                .map_err(failed("DeployPlugin"))?
                .into_inner();
            Ok(if json {
                pretty(deployment_json(&d))
            } else {
                format!(
                    "Deployed sha256:{} to {} as deployment {} ({}); every server serves it within a few seconds.",
                    d.digest,
                    d.service,
                    d.id,
                    selection(&d)
                )
            })
        }
        PluginsCommand::Promote { service } => {
            let d = ext
                .promote_plugin(PromotePluginRequest { service })
                .await
                .map_err(failed("PromotePlugin"))?
                .into_inner();
            Ok(if json {
                pretty(deployment_json(&d))
            } else {
                format!(
                    "Promoted deployment {} (sha256:{}) of {}: every client gets it.",
                    d.id, d.digest, d.service
                )
            })
        }
        PluginsCommand::Rollback { service, reason } => {
            let d = ext
                .rollback_plugin(RollbackPluginRequest {
                    service,
                    reason: reason.unwrap_or_default(),
                })
                .await
                .map_err(failed("RollbackPlugin"))?
                .into_inner();
            Ok(if json {
                pretty(deployment_json(&d))
            } else {
                format!(
                    "Rolled back deployment {} (sha256:{}) of {}: the stable version serves everything.",
                    d.id, d.digest, d.service
                )
            })
        }
        PluginsCommand::Status {
            service,
            json: local,
        } => {
            let r = ext
                .plugin_rollout_status(PluginRolloutStatusRequest {
                    service: service.unwrap_or_default(),
                })
                .await
                .map_err(failed("PluginRolloutStatus"))?
                .into_inner();
            Ok(if json || local {
                pretty(Value::Array(r.services.iter().map(status_json).collect()))
            } else if r.services.is_empty() {
                "No deployments.".into()
            } else {
                r.services
                    .iter()
                    .map(status_text)
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        PluginsCommand::History {
            service,
            json: local,
        } => {
            let r = ext
                .plugin_history(PluginHistoryRequest {
                    service: service.clone(),
                })
                .await
                .map_err(failed("PluginHistory"))?
                .into_inner();
            Ok(if json || local {
                pretty(Value::Array(
                    r.deployments.iter().map(deployment_json).collect(),
                ))
            } else if r.deployments.is_empty() {
                format!("No deployments of {service}.")
            } else {
                let mut out = format!(
                    "{:<5} {:<12} {:<14} {:<16} {:<25} {:<12} REASON\n",
                    "ID", "DIGEST", "STATE", "SELECTION", "CREATED", "BY"
                );
                for d in &r.deployments {
                    out += &format!(
                        "{:<5} {:<12} {:<14} {:<16} {:<25} {:<12} {}\n",
                        d.id,
                        short(&d.digest),
                        d.state,
                        selection(d),
                        time(d.created.as_ref()),
                        if d.requested_by.is_empty() {
                            "-"
                        } else {
                            &d.requested_by
                        },
                        d.reason
                    );
                }
                out.trim_end().to_owned()
            })
        }
    }
}

fn pretty(v: Value) -> String {
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

fn selection(d: &Deployment) -> String {
    let mut s = match d.share {
        Some(share) => format!("{share}%"),
        None => format!("labels {}", d.labels.join(",")),
    };
    if d.shadow {
        s += ", shadow";
    }
    if d.auto_rollback {
        s += ", auto-rollback";
    }
    s
}

fn deployment_json(d: &Deployment) -> Value {
    json!({
        "id": d.id,
        "service": d.service,
        "digest": d.digest,
        "state": d.state,
        "share": d.share,
        "labels": d.labels,
        "shadow": d.shadow,
        "auto_rollback": d.auto_rollback,
        "window_seconds": d.window.map(|w| w.seconds as f64 + f64::from(w.nanos) / 1e9),
        "window_calls": d.window_calls,
        "min_calls": d.min_calls,
        "error_rate_points": d.error_rate_points,
        "p99_ratio": d.p99_ratio,
        "requested_by": d.requested_by,
        "created": time(d.created.as_ref()),
        "updated": time(d.updated.as_ref()),
        "reason": d.reason,
    })
}

fn stats_json(s: Option<&VersionStats>) -> Value {
    match s {
        None => Value::Null,
        Some(s) => json!({
            "calls": s.calls, "errors": s.errors, "traps": s.traps, "permanent": s.permanent,
            "p50_ms": s.p50_ms, "p99_ms": s.p99_ms,
        }),
    }
}

fn status_json(s: &ServiceRollout) -> Value {
    json!({
        "service": s.service,
        "canary": s.canary.as_ref().map(deployment_json),
        "promoted": s.promoted.as_ref().map(deployment_json),
        "latest": s.latest.as_ref().map(deployment_json),
        "shadow": s.shadow.as_ref().map(shadow_json),
        "stable_stats": stats_json(s.stable.as_ref()),
        "candidate_stats": stats_json(s.candidate.as_ref()),
        "servers": s.servers.iter().map(|v| json!({
            "server": v.server,
            "stable_digest": v.stable_digest,
            "candidate_digest": v.candidate_digest,
            "deployment": v.deployment,
            "since": time(v.since.as_ref()),
            "updated": time(v.updated.as_ref()),
            "stable": stats_json(v.stable.as_ref()),
            "candidate": stats_json(v.candidate.as_ref()),
            "failure": v.failure,
            "shadow": v.shadow.as_ref().map(shadow_json),
        })).collect::<Vec<_>>(),
    })
}

fn shadow_json(s: &ShadowStats) -> Value {
    json!({
        "copies": s.copies,
        "agreed": s.agreed,
        "candidate_failed": s.candidate_failed,
        "candidate_succeeded": s.candidate_succeeded,
        "withheld_messages": s.withheld_messages,
        "withheld_grpc_calls": s.withheld_grpc_calls,
        "last_difference": s.last_difference,
    })
}

fn stats_line(name: &str, s: Option<&VersionStats>) -> String {
    match s {
        None => format!("  {name:<10} -"),
        Some(s) => format!(
            "  {name:<10} calls {:<6} errors {:<5} traps {:<5} permanent {:<5} p50 {:.2} ms  p99 {:.2} ms",
            s.calls, s.errors, s.traps, s.permanent, s.p50_ms, s.p99_ms
        ),
    }
}

fn status_text(s: &ServiceRollout) -> String {
    let mut out = format!("{}\n", s.service);
    let stable = match &s.promoted {
        Some(p) => format!("sha256:{} (deployment {}, promoted)", p.digest, p.id),
        None => "the services file's version".into(),
    };
    out += &format!("  stable     {stable}\n");
    match &s.canary {
        Some(c) => {
            out += &format!(
                "  candidate  sha256:{} (deployment {}, canary, {}{})\n",
                c.digest,
                c.id,
                selection(c),
                if c.requested_by.is_empty() {
                    String::new()
                } else {
                    format!(", by {}", c.requested_by)
                }
            );
        }
        None => out += "  candidate  none\n",
    }
    if let Some(l) = &s.latest
        && s.canary.as_ref().is_none_or(|c| c.id != l.id)
    {
        out += &format!(
            "  latest     deployment {} sha256:{} {}{}\n",
            l.id,
            short(&l.digest),
            l.state,
            if l.reason.is_empty() {
                String::new()
            } else {
                format!(": {}", l.reason)
            }
        );
    }
    out += &stats_line("stable", s.stable.as_ref());
    out.push('\n');
    if s.canary.is_some() {
        out += &stats_line("candidate", s.candidate.as_ref());
        out.push('\n');
    }
    if let Some(sh) = &s.shadow {
        out += &format!(
            "  shadow     {} copies: {} agreed, {} failed only on the candidate, {} only on the stable version; withheld {} messages, {} gRPC calls\n",
            sh.copies,
            sh.agreed,
            sh.candidate_failed,
            sh.candidate_succeeded,
            sh.withheld_messages,
            sh.withheld_grpc_calls
        );
        if !sh.last_difference.is_empty() {
            out += &format!("  latest difference  {}\n", sh.last_difference);
        }
    }
    if !s.servers.is_empty() {
        out += &format!(
            "  {:<24} {:<12} {:<12} {:<25} {}\n",
            "SERVER", "STABLE", "CANDIDATE", "SINCE", "FAILURE"
        );
        for v in &s.servers {
            out += &format!(
                "  {:<24} {:<12} {:<12} {:<25} {}\n",
                v.server,
                short(&v.stable_digest),
                if v.candidate_digest.is_empty() {
                    "-"
                } else {
                    short(&v.candidate_digest)
                },
                time(v.since.as_ref()),
                v.failure
            );
        }
    }
    out.trim_end().to_owned()
}
