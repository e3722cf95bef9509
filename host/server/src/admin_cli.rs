//! `fleetgate admin`: everything `fleetspeak-admin` does, with its output formats, plus
//! messages, pending queues, message status and Fleetgate's extension service (batched insert,
//! purge, plugins). Tables for people; `--json` for scripts. Commands and flags are defined in
//! `args::AdminCommand`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use fleetgate_pb::fleetgate::admin::v1::fleetgate_admin_client::FleetgateAdminClient;
use fleetgate_pb::fleetgate::admin::v1::{
    InsertMessagesRequest, ListPluginsRequest, PurgePendingMessagesRequest, ReloadPluginsRequest,
    TraceMessageRequest,
};
use fleetgate_pb::fleetspeak::server::admin_client::AdminClient;
use fleetgate_pb::fleetspeak::server::*;
use fleetgate_pb::fleetspeak::{Address, Message};
use fleetgate_types::{BroadcastId, ClientId, MessageId};
use prost::Message as _;
use tonic::transport::Channel;

use crate::admin_conn::TlsIdentity;
use crate::admin_format as fmt;
use crate::args::{AdminArgs, AdminCommand, Connection, NewBroadcast, PluginsCommand};

/// `fleetspeak-admin`'s default address, used when nothing else names one.
const DEFAULT_ADDR: &str = "localhost:6061";

/// Runs one admin command; the returned text is printed by the caller.
pub async fn run(a: AdminArgs) -> Result<String> {
    let json = a.json;
    let channel = connect(&a.connection).await?;
    let mut admin = AdminClient::new(channel.clone()).max_decoding_message_size(1 << 30);
    let mut ext = FleetgateAdminClient::new(channel).max_decoding_message_size(1 << 30);
    match a.command {
        AdminCommand::Listclients { client_ids } => {
            let ids = parse_ids(&client_ids, ClientId::from_hex)?
                .iter()
                .map(ClientId::to_vec)
                .collect();
            let r = admin
                .list_clients(ListClientsRequest { client_ids: ids })
                .await?
                .into_inner();
            Ok(fmt::clients(r.clients, json))
        }
        AdminCommand::Analysehistory { client_id } => {
            let req = ListClientContactsRequest {
                client_id: ClientId::from_hex(&client_id)?.to_vec(),
            };
            let contacts = admin.list_client_contacts(req).await?.into_inner().contacts;
            let summary = crate::admin_history::summarise(contacts.clone())?;
            Ok(crate::admin_history::render(&contacts, &summary))
        }
        AdminCommand::Listcontacts { client_id, limit } => {
            let r = admin
                .list_client_contacts(ListClientContactsRequest {
                    client_id: ClientId::from_hex(&client_id)?.to_vec(),
                })
                .await?;
            Ok(fmt::contacts(r.into_inner().contacts, limit, json))
        }
        AdminCommand::Blacklistclients { client_ids } => {
            for id in parse_ids(&client_ids, ClientId::from_hex)? {
                admin
                    .blacklist_client(BlacklistClientRequest {
                        client_id: id.to_vec(),
                    })
                    .await?;
            }
            Ok(String::new())
        }
        AdminCommand::Storefile {
            service,
            file_name,
            path,
        } => {
            let data =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            admin
                .store_file(StoreFileRequest {
                    service_name: service.clone(),
                    file_name: file_name.clone(),
                    data,
                })
                .await?;
            Ok(format!("Stored file {service}/{file_name} to server."))
        }
        AdminCommand::Deletefile { service, file_name } => {
            admin
                .delete_file(DeleteFileRequest {
                    service_name: service.clone(),
                    file_name: file_name.clone(),
                })
                .await?;
            Ok(format!("Deleted file {service}/{file_name} from server."))
        }
        AdminCommand::Listactivebroadcasts { service } => {
            let r = admin
                .list_active_broadcasts(ListActiveBroadcastsRequest {
                    service_name: service.unwrap_or_default(),
                })
                .await?;
            Ok(fmt::broadcasts(r.into_inner().broadcasts, json))
        }
        AdminCommand::Createbroadcast(b) => create_broadcast(&mut admin, b, json).await,
        AdminCommand::Disablebroadcasts { broadcast_ids } => {
            let ids: Vec<_> = parse_ids(&broadcast_ids, BroadcastId::from_hex)?
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
        AdminCommand::Insert {
            client_id,
            service,
            message_type,
            payload: file,
            type_url,
        } => {
            let client = if client_id == "server" {
                None
            } else {
                Some(ClientId::from_hex(&client_id)?)
            };
            let id = MessageId::random();
            let data = payload_any(payload(file.as_deref())?, type_url);
            admin
                .insert_message(message(Some(id), client, &service, &message_type, data))
                .await
                .map_err(|s| anyhow!("InsertMessage failed: {}", s.message()))?;
            Ok(if json {
                format!("{{\"message_id\":\"{id}\"}}")
            } else {
                format!("Inserted message {id}.")
            })
        }
        AdminCommand::Insertbatch {
            service,
            message_type,
            client_ids,
            clients_from,
            payload: file,
            type_url,
            batch,
        } => {
            if clients_from.as_deref() == Some("-") && file.as_deref() == Some("-") {
                bail!("--clients_from - and --payload - cannot both read stdin");
            }
            let mut ids = client_ids;
            if let Some(from) = &clients_from {
                ids.extend(client_lines(from)?);
            }
            if ids.is_empty() {
                bail!("no client IDs: give them as arguments or with --clients_from FILE");
            }
            let clients = parse_ids(&ids, ClientId::from_hex)?;
            let data = payload_any(payload(file.as_deref())?, type_url);
            let messages = clients
                .iter()
                .map(|c| message(None, Some(*c), &service, &message_type, data.clone()))
                .collect();
            insert_batches(&mut ext, &clients, messages, batch as usize, json).await
        }
        AdminCommand::Status { message_id } => {
            let id = MessageId::from_hex(&message_id)?;
            let r = admin
                .get_message_status(GetMessageStatusRequest {
                    message_id: id.to_vec(),
                })
                .await?;
            Ok(fmt::status(&r.into_inner(), json))
        }
        AdminCommand::Pending {
            client_ids,
            count,
            delete,
            data,
        } => {
            let client_ids: Vec<_> = parse_ids(&client_ids, ClientId::from_hex)?
                .iter()
                .map(ClientId::to_vec)
                .collect();
            if delete {
                admin
                    .delete_pending_messages(DeletePendingMessagesRequest { client_ids })
                    .await?;
                return Ok("Deleted pending messages.".into());
            }
            if count {
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
                want_data: data,
            };
            let r = admin.get_pending_messages(req).await?.into_inner();
            Ok(fmt::messages(r.messages, json))
        }
        AdminCommand::Purge {
            client_ids,
            all_clients: _,
            service,
            message_type,
            older_than,
        } => {
            let older_than = older_than
                .map(|d| {
                    fleetgate_config::duration::parse_go_duration(&d)
                        .map_err(|e| anyhow!("--older_than {d:?}: {e}"))
                })
                .transpose()?;
            // No IDs means every client; clap only lets that through with --all_clients.
            let req = PurgePendingMessagesRequest {
                client_ids: parse_ids(&client_ids, ClientId::from_hex)?
                    .iter()
                    .map(ClientId::to_vec)
                    .collect(),
                service_name: service.unwrap_or_default(),
                message_type: message_type.unwrap_or_default(),
                older_than: older_than.map(|d| prost_types::Duration {
                    seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                    nanos: i32::try_from(d.subsec_nanos()).unwrap_or_default(),
                }),
            };
            let n = ext
                .purge_pending_messages(req)
                .await
                .map_err(|s| anyhow!("PurgePendingMessages failed: {}", s.message()))?
                .into_inner()
                .purged;
            Ok(if json {
                format!("{{\"purged\":{n}}}")
            } else {
                format!("Purged {n} pending messages.")
            })
        }
        AdminCommand::Trace { message_id } => {
            let id = MessageId::from_hex(&message_id)
                .map_err(|e| anyhow!("message ID {message_id:?}: {e}"))?;
            let steps = ext
                .trace_message(TraceMessageRequest {
                    message_id: id.to_vec(),
                })
                .await
                .map_err(|s| anyhow!("TraceMessage failed: {}", s.message()))?
                .into_inner()
                .steps;
            Ok(fmt::trace(&id.to_hex(), &steps, json))
        }
        AdminCommand::Plugins(PluginsCommand::List) => {
            let r = ext.list_plugins(ListPluginsRequest {}).await?.into_inner();
            Ok(fmt::plugins(&r.plugins, json))
        }
        // A refused reload prints the error and the plugins that keep running, and fails.
        AdminCommand::Plugins(PluginsCommand::Reload) => {
            let r = ext
                .reload_plugins(ReloadPluginsRequest {})
                .await?
                .into_inner();
            let out = fmt::reload(&r, json);
            if r.ok { Ok(out) } else { bail!("{out}") }
        }
        AdminCommand::Plugins(c) => crate::admin_rollout::run(&mut ext, c, json).await,
        AdminCommand::DeadLetters(c) => crate::admin_dead_letters::run(&mut ext, c, json).await,
    }
}

/// An admin address and where it came from, so a failure can say why that one was tried.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    addr: String,
    origin: String,
}

/// Where the admin API is: `--admin_addr`, the file of `--state_dir`, `$FLEETGATE_ADMIN`, the
/// file a quickstart started from this directory wrote, or `fleetspeak-admin`'s default.
fn target(c: &Connection, env: Option<String>, cwd_state: &Path) -> Result<Target> {
    if let Some(addr) = &c.admin_addr {
        return Ok(Target {
            addr: addr.clone(),
            origin: "--admin_addr".into(),
        });
    }
    if let Some(dir) = &c.state_dir {
        return from_file(&dir.join(crate::quickstart::ADMIN_ADDR_FILE));
    }
    if let Some(addr) = env.filter(|a| !a.trim().is_empty()) {
        return Ok(Target {
            addr: addr.trim().to_owned(),
            origin: "$FLEETGATE_ADMIN".into(),
        });
    }
    let file = cwd_state.join(crate::quickstart::ADMIN_ADDR_FILE);
    if file.is_file() {
        return from_file(&file);
    }
    Ok(Target {
        addr: DEFAULT_ADDR.into(),
        origin: format!(
            "fleetspeak-admin's default: no --admin_addr, no $FLEETGATE_ADMIN and no {} here",
            file.display()
        ),
    })
}

fn from_file(file: &Path) -> Result<Target> {
    let text = std::fs::read_to_string(file).with_context(|| {
        format!(
            "reading the admin address from {} (written by `fleetgate quickstart` when it starts)",
            file.display()
        )
    })?;
    let addr = text.trim();
    if addr.is_empty() || addr.contains(char::is_whitespace) {
        bail!("{}: expected one HOST:PORT, found {text:?}", file.display());
    }
    Ok(Target {
        addr: addr.to_owned(),
        origin: format!("{}, written by `fleetgate quickstart`", file.display()),
    })
}

/// Opens the connection to the admin API that `c` names. Every admin command connects here.
pub async fn connect(c: &Connection) -> Result<Channel> {
    let t = target(
        c,
        std::env::var("FLEETGATE_ADMIN").ok(),
        &PathBuf::from(crate::quickstart::DEFAULT_STATE_DIR),
    )?;
    let tls = TlsIdentity::from_paths(c.cert.as_deref(), c.key.as_deref(), c.ca.as_deref())?;
    crate::admin_conn::channel(&t.addr, tls.as_ref())
        .await
        .with_context(|| {
            format!(
                "cannot connect to the admin API at {} (address from {}; is the server running? \
                 --admin_addr HOST:PORT or $FLEETGATE_ADMIN name another)",
                t.addr, t.origin
            )
        })
}

fn parse_ids<T, E: std::error::Error + Send + Sync + 'static>(
    raw: &[String],
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<Vec<T>> {
    raw.iter()
        .map(|s| parse(s).with_context(|| format!("bad ID {s:?}")))
        .collect()
}

/// Client IDs from a file or stdin, one per line; blank lines are skipped.
fn client_lines(from: &str) -> Result<Vec<String>> {
    let text = if from == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading client IDs from stdin")?;
        s
    } else {
        std::fs::read_to_string(from).with_context(|| format!("reading client IDs from {from}"))?
    };
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

/// A message from the server's `service` to the same service of `client` (a server service
/// when `None`). Without an ID the server assigns one.
fn message(
    id: Option<MessageId>,
    client: Option<ClientId>,
    service: &str,
    message_type: &str,
    data: prost_types::Any,
) -> Message {
    Message {
        message_id: id.map(|id| id.to_vec()).unwrap_or_default(),
        source: Some(Address {
            client_id: Vec::new(),
            service_name: service.to_owned(),
        }),
        destination: Some(Address {
            client_id: client.map(|c| c.to_vec()).unwrap_or_default(),
            service_name: service.to_owned(),
        }),
        message_type: message_type.to_owned(),
        data: Some(data),
        ..Default::default()
    }
}

fn payload_any(value: Vec<u8>, type_url: Option<String>) -> prost_types::Any {
    prost_types::Any {
        type_url: type_url.unwrap_or_default(),
        value,
    }
}

/// Sends `messages` (one per client of `clients`) in `InsertMessages` calls of at most `batch`
/// messages, and below the server's request size limit. Each call is stored all or nothing;
/// a failure says how many went in before it.
async fn insert_batches(
    ext: &mut FleetgateAdminClient<Channel>,
    clients: &[ClientId],
    messages: Vec<Message>,
    batch: usize,
    json: bool,
) -> Result<String> {
    // Room for the request's own framing.
    const MAX_BYTES: usize = fleetgate_admin::MAX_REQUEST - 64 * 1024;
    let total = messages.len();
    let mut ids: Vec<Vec<u8>> = Vec::with_capacity(total);
    let mut pending: Vec<Message> = Vec::new();
    let mut bytes = 0;
    let mut it = messages.into_iter().peekable();
    while let Some(m) = it.next() {
        let len = m.encoded_len() + 8;
        if len > MAX_BYTES {
            bail!(
                "the message is {len} bytes, larger than a request may be ({MAX_BYTES}); use \
                 `insert` per client, or a smaller payload"
            );
        }
        bytes += len;
        pending.push(m);
        let full = pending.len() >= batch
            || it
                .peek()
                .is_some_and(|next| bytes + next.encoded_len() + 8 > MAX_BYTES);
        if full || it.peek().is_none() {
            let r = ext
                .insert_messages(InsertMessagesRequest {
                    messages: std::mem::take(&mut pending),
                })
                .await
                .map_err(|s| {
                    anyhow!(
                        "InsertMessages failed after {} of {total} messages were inserted: {}",
                        ids.len(),
                        s.message()
                    )
                })?;
            ids.extend(r.into_inner().message_ids);
            bytes = 0;
        }
    }
    let rows: Vec<(String, String)> = clients
        .iter()
        .zip(&ids)
        .map(|(c, id)| (c.to_string(), hex::encode(id)))
        .collect();
    Ok(fmt::inserted(&rows, json))
}

/// A payload from a file, from stdin with `-`, or empty.
fn payload(arg: Option<&str>) -> Result<Vec<u8>> {
    match arg {
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
    b: NewBroadcast,
    json: bool,
) -> Result<String> {
    let limit = match b.limit.as_str() {
        "unlimited" => i64::MAX as u64,
        n => n
            .parse::<u64>()
            .with_context(|| format!("limit {n:?}: a number or `unlimited`"))?,
    };
    let required_labels = b
        .labels
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
    let expiration_time = (b.expires > 0).then(|| {
        fleetgate_types::time::to_timestamp(
            std::time::SystemTime::now() + Duration::from_secs(b.expires),
        )
    });
    let id = BroadcastId::random();
    let broadcast = Broadcast {
        broadcast_id: id.to_vec(),
        source: Some(Address {
            client_id: Vec::new(),
            service_name: b.service,
        }),
        message_type: b.message_type,
        required_labels,
        expiration_time,
        data: Some(payload_any(payload(b.payload.as_deref())?, b.type_url)),
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn conn(addr: Option<&str>, dir: Option<&Path>) -> Connection {
        Connection {
            admin_addr: addr.map(str::to_owned),
            state_dir: dir.map(Path::to_path_buf),
            ..Connection::default()
        }
    }

    #[test]
    fn the_address_comes_from_the_flag_the_state_dir_the_environment_or_the_quickstart() {
        let dir = tempfile_dir();
        let state = dir.join(".fleetgate");
        std::fs::create_dir_all(&state).unwrap();
        let none = dir.join("nothing-here");
        // Nothing anywhere: fleetspeak-admin's default, saying what was looked for.
        let t = target(&conn(None, None), None, &none).unwrap();
        assert_eq!(t.addr, DEFAULT_ADDR);
        assert!(t.origin.contains("FLEETGATE_ADMIN"), "{}", t.origin);
        // The quickstart's file in the directory.
        std::fs::write(state.join("admin.addr"), "127.0.0.1:4444\n").unwrap();
        let t = target(&conn(None, None), None, &state).unwrap();
        assert_eq!(t.addr, "127.0.0.1:4444");
        assert!(t.origin.contains("admin.addr"), "{}", t.origin);
        // The environment beats the file, --state_dir the environment, --admin_addr everything.
        let env = || Some("10.0.0.1:1".to_owned());
        assert_eq!(
            target(&conn(None, None), env(), &state).unwrap().origin,
            "$FLEETGATE_ADMIN"
        );
        assert_eq!(
            target(&conn(None, Some(&state)), env(), &none)
                .unwrap()
                .addr,
            "127.0.0.1:4444"
        );
        assert_eq!(
            target(&conn(Some("h:1"), Some(&state)), env(), &state)
                .unwrap()
                .addr,
            "h:1"
        );
        // A --state_dir without the file is an error naming it.
        let e = target(&conn(None, Some(&none)), None, &state).unwrap_err();
        assert!(
            format!("{e:#}").contains("nothing-here/admin.addr"),
            "{e:#}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "fleetgate-admin-target-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
