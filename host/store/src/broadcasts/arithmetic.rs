//! Allocation arithmetic after the original (`fleetspeak/src/server/db/store.go`), so several
//! servers can share one broadcast's limit — with the overshoot fixed (see `compute_allocation`).

use crate::StoreError;
use crate::api::BROADCAST_UNLIMITED;

/// How many messages a new allocation gets and the broadcast's new `allocated`; `(0, allocated)`
/// when nothing is left.
pub fn compute_allocation(limit: u64, allocated: u64, sent: u64, frac: f32) -> (u64, u64) {
    if limit == BROADCAST_UNLIMITED {
        return (BROADCAST_UNLIMITED, allocated);
    }
    // Held allocations and finished sends are both spent budget. The original took the larger
    // of the two, which lets servers together overshoot the limit once one of them has returned
    // its allocations (their sends move from `allocated` to `sent`).
    let a = allocated.saturating_add(sent);
    if a > limit {
        return (0, allocated);
    }
    let mut n = ((limit - a) as f32 * frac) as u64;
    if n == 0 {
        n = 1;
    }
    n = n.min(limit - a);
    (n, allocated + n)
}

/// The broadcast's `allocated` after an allocation of `alloc_limit` is returned.
pub fn compute_cleanup(alloc_limit: u64, allocated: u64) -> Result<u64, StoreError> {
    if alloc_limit == BROADCAST_UNLIMITED {
        return Ok(allocated);
    }
    allocated.checked_sub(alloc_limit).ok_or_else(|| {
        StoreError::Invalid(format!(
            "allocation limit {alloc_limit} is larger than allocated {allocated}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_eight_is_split_as_in_the_original() {
        let (mut allocated, mut got) = (0, Vec::new());
        for frac in [0.5, 0.5, 0.1, 2.0, 2.0] {
            let (n, a) = compute_allocation(8, allocated, 0, frac);
            got.push(n);
            allocated = a;
        }
        assert_eq!(got, [4, 2, 1, 1, 0]);
        assert_eq!(
            compute_allocation(BROADCAST_UNLIMITED, 3, 0, 0.1),
            (BROADCAST_UNLIMITED, 3)
        );
    }

    #[test]
    fn returned_sends_still_count_against_the_limit() {
        // Limit 10: one server holds 4, another returned its allocation after sending 6.
        assert_eq!(compute_allocation(10, 4, 6, 0.5), (0, 4));
        assert_eq!(compute_allocation(10, 2, 6, 0.5).0, 1);
    }

    #[test]
    fn cleanup_returns_the_share() {
        assert_eq!(compute_cleanup(4, 8).ok(), Some(4));
        assert!(compute_cleanup(9, 8).is_err());
        assert_eq!(compute_cleanup(BROADCAST_UNLIMITED, 8).ok(), Some(8));
    }
}
