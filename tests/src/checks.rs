//! Assertions shared by the tests, each waiting for its condition with [`eventually`].

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use anyhow::{anyhow, bail};
use fleetgate_pb::fleetspeak::server::Client;

use crate::admin::Admin;
use crate::client::GoClient;
use crate::daemon::{Received, message_ids};
use crate::wait::eventually;

/// Waits until `ListClients` (all clients) lists `client_id`, and returns its record.
pub async fn enrolled(admin: &Admin, client_id: &[u8], timeout: Duration) -> Client {
    eventually(
        timeout,
        &format!("client {} in ListClients", hex::encode(client_id)),
        || async {
            let all = admin.list_clients(&[]).await?;
            all.into_iter()
                .find(|c| c.client_id == client_id)
                .ok_or_else(|| anyhow!("not listed yet"))
        },
    )
    .await
}

/// Waits until the client's last contact is recorded: `last_contact_address` from loopback,
/// and `last_contact_streaming_to` non-empty exactly for a streaming contact.
pub async fn contact_recorded(
    admin: &Admin,
    client_id: &[u8],
    streaming: bool,
    timeout: Duration,
) -> Client {
    eventually(
        timeout,
        &format!(
            "a recorded {} contact of {}",
            if streaming { "streaming" } else { "polling" },
            hex::encode(client_id)
        ),
        || async {
            let all = admin.list_clients(&[]).await?;
            let c = all
                .into_iter()
                .find(|c| c.client_id == client_id)
                .ok_or_else(|| anyhow!("not listed yet"))?;
            if !c.last_contact_address.starts_with("127.0.0.1:")
                || c.last_contact_streaming_to.is_empty() == streaming
            {
                bail!(
                    "last_contact_address {:?}, last_contact_streaming_to {:?}",
                    c.last_contact_address,
                    c.last_contact_streaming_to
                );
            }
            Ok(c)
        },
    )
    .await
}

/// Waits until the client's [`crate::client::TEST_SERVICE`] daemon has received every id in
/// `ids`, then returns all its records. Fails as soon as the client process dies.
pub async fn delivered(client: &GoClient, ids: &[Vec<u8>], timeout: Duration) -> Vec<Received> {
    let want: BTreeSet<&[u8]> = ids.iter().map(Vec::as_slice).collect();
    let n = want.len();
    eventually(
        timeout,
        &format!("{n} message(s) to reach the daemon service"),
        || async {
            let got = client.received();
            let have: BTreeSet<Vec<u8>> = message_ids(&got).into_iter().collect();
            let missing = want.iter().filter(|id| !have.contains(**id)).count();
            if missing > 0 {
                if let Err(e) = client.check_running() {
                    panic!("{e:#}");
                }
                bail!(
                    "{missing} of {n} not received yet ({} received in total)",
                    have.len()
                );
            }
            Ok(got)
        },
    )
    .await
}

/// Waits until `GetMessageStatus` shows a result for every id, and asserts none failed.
pub async fn acked(admin: &Admin, ids: &[Vec<u8>], timeout: Duration) {
    let pending = std::sync::Mutex::new(ids.to_vec());
    let n = ids.len();
    eventually(timeout, &format!("{n} message(s) to be acked (GetMessageStatus with a result)"), || async {
        let todo = pending.lock().map(|v| v.clone()).unwrap_or_default();
        let mut still = Vec::new();
        for id in todo {
            let st = admin.message_status(&id).await?;
            match st.result {
                Some(r) if r.failed => panic!("message {} failed: {:?}", hex::encode(&id), r.failed_reason),
                Some(r) if r.processed_time.is_none() => panic!("message {} has a result without processed_time", hex::encode(&id)),
                Some(_) => {}
                None => {
                    if st.creation_time.is_none() {
                        bail!("GetMessageStatus({}) is empty: the server does not know the message", hex::encode(&id));
                    }
                    still.push(id);
                }
            }
        }
        let left = still.len();
        if let Ok(mut p) = pending.lock() {
            *p = still;
        }
        if left > 0 {
            bail!("{left} of {n} still without a result");
        }
        Ok(())
    })
    .await
}

/// Asserts every message id appears exactly once in `records`.
pub fn assert_no_duplicates(records: &[Received]) {
    let mut counts: HashMap<Vec<u8>, usize> = HashMap::new();
    for id in message_ids(records) {
        *counts.entry(id).or_default() += 1;
    }
    let dups: Vec<String> = counts
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(id, c)| format!("{}×{c}", hex::encode(id)))
        .collect();
    assert!(
        dups.is_empty(),
        "{} message(s) delivered more than once: {}",
        dups.len(),
        dups.join(", ")
    );
}

/// Finds the received record of `id`.
pub fn find<'a>(records: &'a [Received], id: &[u8]) -> Option<&'a Received> {
    records.iter().find(|r| r.id() == Some(id))
}

/// The id the server gives a message from a client (protocol.md §9.3):
/// `sha256(client_id ‖ 0 ‖ source service ‖ 0 ‖ source_message_id)`.
pub fn client_message_id(client_id: &[u8], service: &str, source_message_id: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(client_id);
    h.update([0u8]);
    h.update(service.as_bytes());
    h.update([0u8]);
    h.update(source_message_id);
    h.finalize().to_vec()
}
