//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

/// The safety net around every wait: a broken test fails after this long
/// instead of hanging. Never the assertion itself.
pub const SAFETY_NET: Duration = Duration::from_secs(30);

/// Yields to the runtime until `done()` holds; panics with `what` if it still
/// does not hold after [`SAFETY_NET`].
pub async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let wait = async {
        while !done() {
            tokio::task::yield_now().await;
        }
    };
    if tokio::time::timeout(SAFETY_NET, wait).await.is_err() {
        panic!("still waiting for {what} after {SAFETY_NET:?}");
    }
}

/// Awaits `fut`, panicking with `what` if it has not finished after [`SAFETY_NET`].
pub async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(SAFETY_NET, fut).await {
        Ok(out) => out,
        Err(_) => panic!("still waiting for {what} after {SAFETY_NET:?}"),
    }
}
