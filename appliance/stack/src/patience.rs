//! Believing a "no" only once it persisted: right after a restart Consul and
//! Nomad reject valid tokens until their ACL state is loaded. Owns only the
//! polling; the question asked is the caller's.

use std::future::Future;
use std::time::{Duration, Instant};

/// Asks `check` every 250 ms until it answers yes (`Ok(true)`) or `patience`
/// has passed (`Ok(false)`); an error ends the wait at once.
pub async fn yes_within<E, F, Fut>(patience: Duration, mut check: F) -> Result<bool, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, E>>,
{
    let start = Instant::now();
    loop {
        if check().await? {
            return Ok(true);
        }
        if start.elapsed() >= patience {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
