//! Server nodes sharing a store: their leases, and the leader lease for the sweeps.

/// What renewing a node's lease found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Heartbeat {
    /// The node had no lease: it is new, or it was presumed dead and its jobs were released.
    Registered,
    /// The node's lease was renewed.
    Renewed,
}

/// Which nodes [`Store::reap_nodes`](crate::Store::reap_nodes) treats as gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reap<'a> {
    /// Nodes whose lease expired (and jobs held by no known node).
    Expired,
    /// Every node but this one: a store only one server process uses, starting up.
    AllBut(&'a str),
}

/// Completed jobs of one queue in one minute, as one node counted them, recorded in a shared
/// store so that every node shows the same throughput.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MinuteCount {
    /// The node that counted them.
    pub node_id: String,
    /// The queue.
    pub queue: String,
    /// The minute: whole minutes since the Unix epoch.
    pub minute: i64,
    /// Jobs completed in it.
    pub count: u64,
}

/// The leader role whose holder runs the maintenance sweeps.
pub const MAINTENANCE_ROLE: &str = "maintenance";

/// A worker connection as a node recorded it in a shared store.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedWorker {
    /// The worker connection's id.
    pub id: String,
    /// The node it is connected to.
    pub node_id: String,
    /// What the node shows about it (the server's worker status, as JSON).
    pub info: serde_json::Value,
}
