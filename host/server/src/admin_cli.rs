//! `fleetgate admin`: everything `fleetspeak-admin` does, with its output formats, plus messages,
//! pending queues and message status. Tables for people; `--json` for scripts.

use std::io::Read;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use fleetgate_config::flags::{FlagKind, FlagSpec, Flags, parse_flags};
use fleetgate_pb::fleetspeak::server::admin_client::AdminClient;
use fleetgate_pb::fleetspeak::server::*;
use fleetgate_pb::fleetspeak::{Address, Message};
use fleetgate_types::{BroadcastId, ClientId, MessageId};
use tonic::transport::Channel;

use crate::admin_conn::{TlsIdentity, channel};
use crate::admin_format as fmt;

pub const USAGE: &str = "\
usage: fleetgate admin [--admin_addr HOST:PORT] [--cert C --key K --ca CA] [--json] <command> [args]
commands (as fleetspeak-admin):
  listclients [<client_id>...]
  listcontacts <client_id> [limit]
  analysehistory <client_id>
  blacklistclients <client_id>...
  storefile <service> <file_name> <path>
  deletefile <service> <file_name>
  listactivebroadcasts [<service>]
  disablebroadcasts <broadcast_id>...
commands (Fleetgate):
  createbroadcast <service> <message_type> <limit|unlimited> [<payload file>|-]
         [--labels=svc:label,...] [--expires=SECONDS] [--type_url=URL]
         clients having every label get the message once, up to limit clients
  insert <client_id> <service> <message_type> [<payload file>|-] [--type_url URL]
         payload from the file, or stdin with '-'; client_id 'server' sends to a server service
  status <message_id>
  pending <client_id>... [--count|--delete|--data]
  plugins list        per service: digest, generation, load time, calls, errors, traps, p50/p99
  plugins reload      re-read the services config and swap the plugins (all or nothing)";

const FLAGS: &[FlagSpec] = &[
    FlagSpec {
        name: "admin_addr",
        kind: FlagKind::String,
        default: "localhost:6061",
        usage: "admin API address",
    },
    FlagSpec {
        name: "cert",
        kind: FlagKind::String,
        default: "",
        usage: "client certificate (PEM) for a locked admin listener; with --key and --ca",
    },
    FlagSpec {
        name: "key",
        kind: FlagKind::String,
        default: "",
        usage: "private key (PEM) of --cert",
    },
    FlagSpec {
        name: "ca",
        kind: FlagKind::String,
        default: "",
        usage: "CA certificate (PEM) that signed the admin listener's certificate",
    },
    FlagSpec {
        name: "json",
        kind: FlagKind::Bool,
        default: "",
        usage: "machine-readable output",
    },
    FlagSpec {
        name: "labels",
        kind: FlagKind::String,
        default: "",
        usage: "createbroadcast: required labels, service:label,...",
    },
    FlagSpec {
        name: "expires",
        kind: FlagKind::Int,
        default: "0",
        usage: "createbroadcast: seconds until the broadcast expires (0: never)",
    },
    FlagSpec {
        name: "type_url",
        kind: FlagKind::String,
        default: "",
        usage: "type URL of an inserted payload",
    },
    FlagSpec {
        name: "count",
        kind: FlagKind::Bool,
        default: "",
        usage: "pending: print the count only",
    },
    FlagSpec {
        name: "delete",
        kind: FlagKind::Bool,
        default: "",
        usage: "pending: delete them",
    },
    FlagSpec {
        name: "data",
        kind: FlagKind::Bool,
        default: "",
        usage: "pending: include payloads",
    },
];

/// Flags given before the command, and `--flag` / `--flag=value` given after it.
struct Opts {
    before: Flags,
    after: Flags,
}

impl Opts {
    fn value(&self, name: &str) -> Option<&str> {
        self.after.value(name).or_else(|| self.before.value(name))
    }
    fn bool(&self, name: &str) -> bool {
        self.after.bool(name) || self.before.bool(name)
    }
}

/// Runs one admin command; the returned text is printed by the caller.
pub async fn run(args: &[String]) -> Result<String> {
    let before = parse_flags(args, FLAGS)?;
    let Some((cmd, tail)) = before.args.split_first() else {
        bail!("A command is required.\n{USAGE}")
    };
    // After the command, flags need the `--name[=value]` form so they can't swallow arguments.
    let (tail_flags, cargs): (Vec<String>, Vec<String>) =
        tail.iter().cloned().partition(|a| a.starts_with("--"));
    let after = parse_flags(&tail_flags, FLAGS)?;
    let cmd = cmd.clone();
    let o = Opts { before, after };
    let json = o.bool("json");
    let addr = o.value("admin_addr").unwrap_or("localhost:6061");
    let tls = TlsIdentity::from_flags(o.value("cert"), o.value("key"), o.value("ca"))?;
    if cmd == "plugins" {
        return plugins(channel(addr, tls.as_ref()).await?, &cargs, json).await;
    }
    let mut admin = connect(addr, tls.as_ref()).await?;
    match (cmd.as_str(), cargs.len()) {
        ("listclients", _) => {
            let ids = parse_ids(&cargs, ClientId::from_hex)?
                .iter()
                .map(ClientId::to_vec)
                .collect();
            let r = admin
                .list_clients(ListClientsRequest { client_ids: ids })
                .await?
                .into_inner();
            Ok(fmt::clients(r.clients, json))
        }
        ("analysehistory", 1) => {
            let id = ClientId::from_hex(&cargs[0])?;
            let req = ListClientContactsRequest {
                client_id: id.to_vec(),
            };
            let contacts = admin.list_client_contacts(req).await?.into_inner().contacts;
            let summary = crate::admin_history::summarise(contacts.clone())?;
            Ok(crate::admin_history::render(&contacts, &summary))
        }
        ("listcontacts", 1 | 2) => {
            let id = ClientId::from_hex(&cargs[0])?;
            let limit = cargs
                .get(1)
                .map(|l| l.parse::<usize>())
                .transpose()
                .context("limit")?;
            let r = admin
                .list_client_contacts(ListClientContactsRequest {
                    client_id: id.to_vec(),
                })
                .await?;
            Ok(fmt::contacts(r.into_inner().contacts, limit, json))
        }
        ("blacklistclients", n) if n > 0 => {
            for id in parse_ids(&cargs, ClientId::from_hex)? {
                admin
                    .blacklist_client(BlacklistClientRequest {
                        client_id: id.to_vec(),
                    })
                    .await?;
            }
            Ok(String::new())
        }
        ("storefile", 3) => {
            let data = std::fs::read(&cargs[2]).with_context(|| format!("reading {}", cargs[2]))?;
            let req = StoreFileRequest {
                service_name: cargs[0].clone(),
                file_name: cargs[1].clone(),
                data,
            };
            admin.store_file(req).await?;
            Ok(format!("Stored file {}/{} to server.", cargs[0], cargs[1]))
        }
        ("deletefile", 2) => {
            admin
                .delete_file(DeleteFileRequest {
                    service_name: cargs[0].clone(),
                    file_name: cargs[1].clone(),
                })
                .await?;
            Ok(format!(
                "Deleted file {}/{} from server.",
                cargs[0], cargs[1]
            ))
        }
        ("listactivebroadcasts", 0 | 1) => {
            let service_name = cargs.first().cloned().unwrap_or_default();
            let r = admin
                .list_active_broadcasts(ListActiveBroadcastsRequest { service_name })
                .await?;
            Ok(fmt::broadcasts(r.into_inner().broadcasts, json))
        }
        ("createbroadcast", 3 | 4) => create_broadcast(&mut admin, &cargs, &o, json).await,
        ("disablebroadcasts", n) if n > 0 => {
            let ids: Vec<_> = parse_ids(&cargs, BroadcastId::from_hex)?
                .iter()
                .map(BroadcastId::to_vec)
                .collect();
            let n = ids.len();
            admin
                .disable_broadcasts(DisableBroadcastsRequest { broadcast_ids: ids })
                .await?;
            Ok(format!(
                "Successfully sent disable request for {n} broadcasts."
            ))
        }
        ("insert", 3 | 4) => insert(&mut admin, &cargs, o.value("type_url"), json).await,
        ("status", 1) => {
            let id = MessageId::from_hex(&cargs[0])?;
            let r = admin
                .get_message_status(GetMessageStatusRequest {
                    message_id: id.to_vec(),
                })
                .await?;
            Ok(fmt::status(&r.into_inner(), json))
        }
        ("pending", n) if n > 0 => pending(&mut admin, &cargs, &o, json).await,
        (c, _) => bail!("Unknown command or wrong arguments: {c}\n{USAGE}"),
    }
}

async fn connect(addr: &str, tls: Option<&TlsIdentity>) -> Result<AdminClient<Channel>> {
    Ok(AdminClient::new(channel(addr, tls).await?).max_decoding_message_size(1 << 30))
}

/// `plugins list|reload`, on Fleetgate's extension service. A refused reload prints the error
/// and the plugins that keep running, and fails the command.
async fn plugins(channel: Channel, args: &[String], json: bool) -> Result<String> {
    use fleetgate_pb::fleetgate::admin::v1::fleetgate_admin_client::FleetgateAdminClient;
    use fleetgate_pb::fleetgate::admin::v1::{ListPluginsRequest, ReloadPluginsRequest};
    let mut ext = FleetgateAdminClient::new(channel);
    match args.first().map(String::as_str) {
        Some("list") if args.len() == 1 => {
            let r = ext.list_plugins(ListPluginsRequest {}).await?.into_inner();
            Ok(fmt::plugins(&r.plugins, json))
        }
        Some("reload") if args.len() == 1 => {
            let r = ext
                .reload_plugins(ReloadPluginsRequest {})
                .await?
                .into_inner();
            let out = fmt::reload(&r, json);
            if r.ok { Ok(out) } else { bail!("{out}") }
        }
        _ => bail!("usage: fleetgate admin plugins list|reload\n{USAGE}"),
    }
}

fn parse_ids<T, E: std::error::Error + Send + Sync + 'static>(
    raw: &[String],
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<Vec<T>> {
    raw.iter()
        .map(|s| parse(s).with_context(|| format!("bad ID {s:?}")))
        .collect()
}

async fn insert(
    admin: &mut AdminClient<Channel>,
    a: &[String],
    type_url: Option<&str>,
    json: bool,
) -> Result<String> {
    let client = if a[0] == "server" {
        None
    } else {
        Some(ClientId::from_hex(&a[0])?)
    };
    let value = payload(a.get(3))?;
    let id = MessageId::random();
    let m = Message {
        message_id: id.to_vec(),
        source: Some(Address {
            client_id: Vec::new(),
            service_name: a[1].clone(),
        }),
        destination: Some(Address {
            client_id: client.map(|c| c.to_vec()).unwrap_or_default(),
            service_name: a[1].clone(),
        }),
        message_type: a[2].clone(),
        data: Some(prost_types::Any {
            type_url: type_url.unwrap_or_default().to_owned(),
            value,
        }),
        ..Default::default()
    };
    admin
        .insert_message(m)
        .await
        .map_err(|s| anyhow!("InsertMessage failed: {}", s.message()))?;
    Ok(if json {
        format!("{{\"message_id\":\"{id}\"}}")
    } else {
        format!("Inserted message {id}.")
    })
}

async fn pending(
    admin: &mut AdminClient<Channel>,
    a: &[String],
    f: &Opts,
    json: bool,
) -> Result<String> {
    let client_ids: Vec<_> = parse_ids(a, ClientId::from_hex)?
        .iter()
        .map(ClientId::to_vec)
        .collect();
    if f.bool("delete") {
        admin
            .delete_pending_messages(DeletePendingMessagesRequest { client_ids })
            .await?;
        return Ok("Deleted pending messages.".into());
    }
    if f.bool("count") {
        let n = admin
            .get_pending_message_count(GetPendingMessageCountRequest { client_ids })
            .await?
            .into_inner()
            .count;
        return Ok(if json {
            format!("{{\"count\":{n}}}")
        } else {
            n.to_string()
        });
    }
    let req = GetPendingMessagesRequest {
        client_ids,
        offset: 0,
        limit: 0,
        want_data: f.bool("data"),
    };
    let r = admin.get_pending_messages(req).await?.into_inner();
    Ok(fmt::messages(r.messages, json))
}

/// A payload from a file, from stdin with `-`, or empty.
fn payload(arg: Option<&String>) -> Result<Vec<u8>> {
    match arg.map(String::as_str) {
        None => Ok(Vec::new()),
        Some("-") => {
            let mut v = Vec::new();
            std::io::stdin()
                .read_to_end(&mut v)
                .context("reading the payload from stdin")?;
            Ok(v)
        }
        Some(path) => std::fs::read(path).with_context(|| format!("reading {path}")),
    }
}

async fn create_broadcast(
    admin: &mut AdminClient<Channel>,
    a: &[String],
    o: &Opts,
    json: bool,
) -> Result<String> {
    let limit = match a[2].as_str() {
        "unlimited" => i64::MAX as u64,
        n => n.parse::<u64>().with_context(|| format!("limit {n:?}"))?,
    };
    let required_labels = o
        .value("labels")
        .unwrap_or_default()
        .split(',')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (service_name, label) = l
                .split_once(':')
                .with_context(|| format!("label {l:?} is not service:label"))?;
            Ok(fleetgate_pb::fleetspeak::Label {
                service_name: service_name.into(),
                label: label.into(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let secs: u64 = o
        .value("expires")
        .unwrap_or("0")
        .parse()
        .context("--expires")?;
    let expiration_time = (secs > 0).then(|| {
        fleetgate_types::time::to_timestamp(
            std::time::SystemTime::now() + Duration::from_secs(secs),
        )
    });
    let id = BroadcastId::random();
    let broadcast = Broadcast {
        broadcast_id: id.to_vec(),
        source: Some(Address {
            client_id: Vec::new(),
            service_name: a[0].clone(),
        }),
        message_type: a[1].clone(),
        required_labels,
        expiration_time,
        data: Some(prost_types::Any {
            type_url: o.value("type_url").unwrap_or_default().to_owned(),
            value: payload(a.get(3))?,
        }),
        ..Default::default()
    };
    admin
        .create_broadcast(CreateBroadcastRequest {
            broadcast: Some(broadcast),
            limit,
        })
        .await
        .map_err(|s| anyhow!("CreateBroadcast failed: {}", s.message()))?;
    Ok(if json {
        format!("{{\"broadcast_id\":\"{id}\"}}")
    } else {
        format!("Created broadcast {id}.")
    })
}
