//! `fleetgate admin analysehistory`: what a client's contact history says about restored backups
//! and clones, computed as `fleetspeak-admin analysehistory` does (admin.md §3).

use std::collections::{HashMap, HashSet};

use anyhow::{Result, bail};
use fleetgate_pb::fleetspeak::server::ClientContact;

use crate::admin_format::time;

/// The summary of a contact history.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub count: usize,
    pub ip_count: usize,
    pub split_points: usize,
    pub splits: usize,
    pub skips: usize,
}

fn key(c: &ClientContact) -> (i64, i32) {
    c.timestamp
        .as_ref()
        .map(|t| (t.seconds, t.nanos))
        .unwrap_or_default()
}

/// Validates and summarises contacts (any order). A client restored from a backup presents an
/// old nonce again (a split); a clone's contacts interleave, so nonces stop chaining (skips).
pub fn summarise(mut contacts: Vec<ClientContact>) -> Result<Summary> {
    contacts.sort_by_key(key);
    let mut sent_at: HashMap<u64, usize> = HashMap::new();
    for (i, c) in contacts.iter().enumerate() {
        if i > 0 && key(&contacts[i - 1]) == key(c) {
            bail!("duplicate contact timestamp {}", time(c.timestamp.as_ref()));
        }
        if sent_at.insert(c.sent_nonce, i).is_some() {
            bail!("duplicate sent nonce {:x}", c.sent_nonce);
        }
    }
    let mut targets: HashMap<u64, usize> = HashMap::new();
    for (i, c) in contacts.iter().enumerate() {
        let target = match sent_at.get(&c.received_nonce) {
            Some(&j) if j < i => c.received_nonce,
            Some(_) => bail!(
                "contact at {} refers to a later contact",
                time(c.timestamp.as_ref())
            ),
            None => 0,
        };
        *targets.entry(target).or_default() += 1;
    }
    let referenced: Vec<usize> = targets.values().copied().filter(|&t| t > 1).collect();
    let hosts: HashSet<&str> = contacts
        .iter()
        .filter_map(|c| c.observed_address.rsplit_once(':').map(|(h, _)| h))
        .collect();
    let skips = contacts
        .windows(2)
        .filter(|w| w[1].received_nonce != w[0].sent_nonce)
        .count();
    Ok(Summary {
        count: contacts.len(),
        ip_count: hosts.len(),
        split_points: referenced.len(),
        splits: referenced.iter().map(|t| t - 1).sum(),
        skips,
    })
}

/// The report as the original prints it.
pub fn render(contacts: &[ClientContact], s: &Summary) -> String {
    let first = contacts
        .iter()
        .min_by_key(|c| key(c))
        .and_then(|c| c.timestamp.as_ref());
    let last = contacts
        .iter()
        .max_by_key(|c| key(c))
        .and_then(|c| c.timestamp.as_ref());
    let mut out = format!(
        "Raw Summary:\n  First Recorded Contact: {}\n  Last Recorded Contact: {}\n  Contact Count: {}\n  \
         Observed IP Count: {}\n  Split Points: {}\n  Splits: {}\n  Skips: {}",
        time(first),
        time(last),
        s.count,
        s.ip_count,
        s.split_points,
        s.splits,
        s.skips
    );
    if s.splits > 0 {
        out += &format!(
            "\nThis client appears to have been restored {} times from {} different backup images.",
            s.splits, s.split_points
        );
    }
    if s.skips > s.splits {
        out += "\nObserved skips exceed splits, this client may have been cloned.";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_types::Timestamp;

    fn c(t: i64, sent: u64, received: u64, addr: &str) -> ClientContact {
        ClientContact {
            sent_nonce: sent,
            received_nonce: received,
            observed_address: addr.into(),
            timestamp: Some(Timestamp {
                seconds: t,
                nanos: 0,
            }),
        }
    }

    #[test]
    fn a_clean_chain_has_no_splits_or_skips() {
        let s = summarise(vec![
            c(3, 30, 20, "1.2.3.4:5"),
            c(1, 10, 0, "1.2.3.4:6"),
            c(2, 20, 10, "5.6.7.8:1"),
        ])
        .unwrap();
        assert_eq!(
            s,
            Summary {
                count: 3,
                ip_count: 2,
                split_points: 0,
                splits: 0,
                skips: 0
            }
        );
    }

    #[test]
    fn a_restored_backup_is_a_split_and_a_clone_skips() {
        // Contacts 3 and 4 both continue from contact 2: restored once from one image.
        let s = summarise(vec![
            c(1, 10, 0, "a:1"),
            c(2, 20, 10, "a:1"),
            c(3, 30, 20, "a:1"),
            c(4, 40, 20, "a:1"),
        ])
        .unwrap();
        assert_eq!((s.split_points, s.splits, s.skips), (1, 1, 1));
        assert!(render(&[], &s).contains("restored 1 times from 1 different backup images"));
    }

    #[test]
    fn inconsistent_histories_are_errors() {
        assert!(summarise(vec![c(1, 10, 0, "a:1"), c(1, 20, 10, "a:1")]).is_err());
        assert!(summarise(vec![c(1, 10, 0, "a:1"), c(2, 10, 10, "a:1")]).is_err());
        assert!(summarise(vec![c(1, 10, 20, "a:1"), c(2, 20, 0, "a:1")]).is_err());
    }
}
