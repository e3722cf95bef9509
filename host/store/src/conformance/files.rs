//! File store checks 53–56.

use std::sync::Arc;

use fleetgate_types::FakeClock;

use super::{Case, ok, secs};
use crate::Store;

pub fn cases() -> Vec<Case> {
    vec![Case {
        name: "files",
        checks: "53-56",
        run: |s, c| Box::pin(files(s, c)),
    }]
}

async fn files(s: Arc<dyn Store>, clock: Arc<FakeClock>) {
    clock.set_seconds(84);
    let data = b"The quick sly fox jumped over the lazy dogs.";
    ok(
        "store_file",
        s.store_file("testService", "testFile", data).await,
    );
    // 53
    assert_eq!(
        ok("stat_file", s.stat_file("testService", "testFile").await),
        secs(84)
    );
    // 54
    let (got, modified) = ok("read_file", s.read_file("testService", "testFile").await);
    assert_eq!((got.as_slice(), modified), (data.as_slice(), secs(84)));
    // 55
    assert!(
        s.stat_file("testService", "missingFile")
            .await
            .is_err_and(|e| e.is_not_found())
    );
    assert!(
        s.read_file("testService", "missingFile")
            .await
            .is_err_and(|e| e.is_not_found())
    );
    // 56
    ok(
        "delete_file",
        s.delete_file("testService", "testFile").await,
    );
    assert!(
        s.stat_file("testService", "testFile")
            .await
            .is_err_and(|e| e.is_not_found())
    );
    ok(
        "delete again",
        s.delete_file("testService", "testFile").await,
    );
    ok(
        "delete missing",
        s.delete_file("testService", "missingFile").await,
    );
    // Replacing a file updates content and time; empty content is allowed.
    ok("store_file", s.store_file("testService", "f", b"one").await);
    clock.set_seconds(90);
    ok("store_file", s.store_file("testService", "f", b"").await);
    assert_eq!(
        ok("read_file", s.read_file("testService", "f").await),
        (Vec::new(), secs(90))
    );
}
