//! Polling helpers: no fixed sleeps, only "until this holds, or fail after a deadline".

use std::future::Future;
use std::time::{Duration, Instant};

/// How often [`eventually`] re-checks.
pub const POLL: Duration = Duration::from_millis(200);

/// Calls `check` until it returns `Ok`, and returns that value. Each attempt is bounded by the
/// remaining time. Panics after `timeout` with `what` and the last error.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let start = Instant::now();
    let deadline = start + timeout;
    let mut last = String::from("no attempt finished");
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining.max(Duration::from_millis(1)), check()).await {
            Ok(Ok(v)) => return v,
            Ok(Err(e)) => last = format!("{e:#}"),
            Err(_) => {
                last =
                    format!("the last attempt was still running at the deadline (previous: {last})")
            }
        }
        if Instant::now() + POLL >= deadline {
            panic!(
                "timed out after {:.1?} waiting for {what}: {last}",
                start.elapsed()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}
