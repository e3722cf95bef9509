//! Keeping label values bounded. Service names and message types come partly from peers (a client
//! chooses the service and type of what it sends), so each label dimension admits a fixed number
//! of distinct values; later ones, and values that do not look like names, become `other`.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::RwLock;

use crate::registry::OTHER;

/// Longest value kept as a label; longer ones are not names anyone configured.
const MAX_LEN: usize = 128;

/// A capped set of label values seen so far.
pub struct BoundedLabel {
    max: usize,
    /// Values that always keep their own label (configured services), on top of `max`.
    pinned: RwLock<HashSet<String>>,
    seen: RwLock<HashSet<String>>,
}

impl BoundedLabel {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            pinned: RwLock::new(HashSet::new()),
            seen: RwLock::new(HashSet::new()),
        }
    }

    /// Always give `v` its own label value.
    pub fn pin(&self, v: &str) {
        self.pinned
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(v.to_owned());
    }

    /// `v` itself if it is pinned, already seen, or there is room; else `other`.
    pub fn value<'a>(&self, v: &'a str) -> Cow<'a, str> {
        if !acceptable(v) {
            return Cow::Borrowed(OTHER);
        }
        let known = |set: &RwLock<HashSet<String>>| {
            set.read().unwrap_or_else(|p| p.into_inner()).contains(v)
        };
        if known(&self.pinned) || known(&self.seen) {
            return Cow::Borrowed(v);
        }
        let mut seen = self.seen.write().unwrap_or_else(|p| p.into_inner());
        if seen.len() < self.max {
            seen.insert(v.to_owned());
            Cow::Borrowed(v)
        } else {
            Cow::Borrowed(OTHER)
        }
    }
}

fn acceptable(v: &str) -> bool {
    v.len() <= MAX_LEN && !v.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_but_keeps_pinned_and_seen() {
        let l = BoundedLabel::new(2);
        l.pin("GRR");
        assert_eq!(l.value("a"), "a");
        assert_eq!(l.value("b"), "b");
        assert_eq!(l.value("c"), OTHER);
        assert_eq!(l.value("a"), "a");
        assert_eq!(l.value("GRR"), "GRR");
        assert_eq!(l.value("bad\nvalue"), OTHER);
    }
}
