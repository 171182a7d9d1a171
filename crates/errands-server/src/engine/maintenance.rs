//! The maintenance loop: promotes scheduled jobs, enforces timeouts and purges old jobs,
//! sleeping until the store says something is due rather than scanning on a timer.

use std::sync::Arc;
use std::time::Duration;

use super::Engine;

/// Longest sleep between passes, in case another process changed the store behind our back.
const MAX_IDLE: Duration = Duration::from_secs(1);

/// Runs maintenance until the task is dropped.
pub async fn run_maintenance_loop(engine: Arc<Engine>) {
    let mut vanished_checked = tokio::time::Instant::now();
    loop {
        // Every node, leader or not, looks after the jobs of its own workers.
        engine.check_vanished_workers(&mut vanished_checked).await;
        let sleep_for = match engine.run_maintenance().await {
            Ok(Some(next)) => (next - engine.now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(MAX_IDLE),
            Ok(None) => MAX_IDLE,
            Err(error) => {
                tracing::error!(%error, "maintenance pass failed");
                MAX_IDLE
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(sleep_for) => {}
            _ = engine.maintenance_requested() => {}
        }
    }
}
