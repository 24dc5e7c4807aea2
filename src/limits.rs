//! Budgets: how much of the service one caller can hold, and how much of the logs input from
//! nobody in particular can fill. A leaf: the values are set by `config`, the budgets are held
//! by `api`, `read`, `segments` and `sync`, and `telemetry` reports them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Every budget a deployment may change, with its default. `config` checks them; the README's
/// budget table lists each with its flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Concurrent gRPC calls on one HTTP/2 connection (the SETTINGS a client must respect).
    pub streams_per_connection: u32,
    /// Concurrent exports (`ExportUsers`, `ListSegmentMembers`) in all, and per key (per peer
    /// address when serving without keys).
    pub exports: usize,
    pub exports_per_key: usize,
    /// Concurrent `WatchSegment` streams in all, and per key (or peer address).
    pub watches: usize,
    pub watches_per_key: usize,
    /// Bytes of users one export may hold between the index and the connection.
    pub stream_buffer_bytes: usize,
    /// Open connections on the HTTP port.
    pub http_connections: usize,
    /// Open connections on the gRPC port in all, and from one peer address.
    pub grpc_connections: usize,
    pub grpc_connections_per_peer: usize,
    /// How long the HTTP port waits for a request's headers, idle keep-alive time included.
    pub http_header_timeout: Duration,
    /// How long a stream on the HTTP port may be quiet before it sends a heartbeat.
    pub stream_heartbeat: Duration,
    /// Log lines per second from unauthenticated input (refused webhook deliveries).
    pub unauthenticated_log_lines_per_second: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            streams_per_connection: 128,
            exports: 16,
            exports_per_key: 4,
            watches: 4096,
            watches_per_key: 256,
            stream_buffer_bytes: 8 << 20,
            http_connections: 1024,
            grpc_connections: 4096,
            grpc_connections_per_peer: 1024,
            http_header_timeout: Duration::from_secs(10),
            stream_heartbeat: Duration::from_secs(15),
            unauthenticated_log_lines_per_second: 10,
        }
    }
}

/// What a budget is for: the label of its metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    Exports,
    Watches,
    HttpConnections,
    GrpcConnections,
}

impl Budget {
    pub const ALL: [Budget; 4] = [
        Budget::Exports,
        Budget::Watches,
        Budget::HttpConnections,
        Budget::GrpcConnections,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Budget::Exports => "exports",
            Budget::Watches => "watches",
            Budget::HttpConnections => "http_connections",
            Budget::GrpcConnections => "grpc_connections",
        }
    }
}

/// A refused request: which budget, and whose share of it ran out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("too many concurrent {what} {whose} (at most {limit}); retry when one has ended")]
pub struct Exhausted {
    pub what: &'static str,
    pub whose: &'static str,
    pub limit: usize,
}

/// Held slots of one budget, in all and by holder.
#[derive(Default)]
struct Slots {
    by_holder: Mutex<HashMap<Arc<str>, usize>>,
    held: AtomicUsize,
    refused: AtomicU64,
}

/// The budgets of one running service: the limits, what is held of each now, what was refused,
/// and the log budget of unauthenticated input. Shared by every part that holds a slot.
pub struct Budgets {
    pub limits: Limits,
    slots: [Slots; 4],
    /// Bytes of export chunks produced and not yet handed to the connection.
    buffered_bytes: AtomicUsize,
    /// Export producers on blocking threads now (none while they wait for a slow reader).
    producing: AtomicUsize,
    pub unauthenticated_log: LogBudget,
}

impl Budgets {
    pub fn new(limits: Limits) -> Arc<Budgets> {
        Arc::new(Budgets {
            unauthenticated_log: LogBudget::new(limits.unauthenticated_log_lines_per_second),
            limits,
            slots: Default::default(),
            buffered_bytes: AtomicUsize::new(0),
            producing: AtomicUsize::new(0),
        })
    }

    fn slots(&self, budget: Budget) -> &Slots {
        &self.slots[budget as usize]
    }

    fn caps(&self, budget: Budget) -> (usize, usize, &'static str) {
        let l = &self.limits;
        match budget {
            Budget::Exports => (l.exports, l.exports_per_key, "exports"),
            Budget::Watches => (l.watches, l.watches_per_key, "watches"),
            Budget::HttpConnections => (l.http_connections, l.http_connections, "connections"),
            Budget::GrpcConnections => (
                l.grpc_connections,
                l.grpc_connections_per_peer,
                "connections",
            ),
        }
    }

    /// A slot of `budget` for `holder` (a key's name, or a peer address), released when the
    /// returned guard is dropped; refused when the holder's share or the whole budget is in use.
    pub fn acquire(self: &Arc<Self>, budget: Budget, holder: &str) -> Result<Slot, Exhausted> {
        let (total, per_holder, what) = self.caps(budget);
        let slots = self.slots(budget);
        let mut by_holder = slots.by_holder.lock().expect("budget lock");
        let mine = by_holder.get(holder).copied().unwrap_or(0);
        let refusal = if slots.held.load(Ordering::Relaxed) >= total {
            Some((total, "in all"))
        } else if mine >= per_holder {
            Some((per_holder, "for this key"))
        } else {
            None
        };
        if let Some((limit, whose)) = refusal {
            slots.refused.fetch_add(1, Ordering::Relaxed);
            return Err(Exhausted { what, whose, limit });
        }
        let holder: Arc<str> = Arc::from(holder);
        *by_holder.entry(holder.clone()).or_insert(0) += 1;
        slots.held.fetch_add(1, Ordering::Relaxed);
        Ok(Slot {
            budgets: self.clone(),
            budget,
            holder,
        })
    }

    /// Slots of `budget` held now.
    pub fn held(&self, budget: Budget) -> usize {
        self.slots(budget).held.load(Ordering::Relaxed)
    }

    /// Requests `budget` refused since start.
    pub fn refused(&self, budget: Budget) -> u64 {
        self.slots(budget).refused.load(Ordering::Relaxed)
    }

    /// Counts a refusal made elsewhere (a connection turned away at accept).
    pub fn count_refusal(&self, budget: Budget) {
        self.slots(budget).refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Bytes of export chunks produced and not yet handed to their connections.
    pub fn buffered_bytes(&self) -> usize {
        self.buffered_bytes.load(Ordering::Relaxed)
    }

    /// `bytes` buffered until the returned guard is dropped.
    pub fn buffer(self: &Arc<Self>, bytes: usize) -> Buffered {
        self.buffered_bytes.fetch_add(bytes, Ordering::Relaxed);
        Buffered {
            budgets: self.clone(),
            bytes,
        }
    }

    /// Export producers on blocking threads now.
    pub fn producing(&self) -> usize {
        self.producing.load(Ordering::Relaxed)
    }

    /// Counts a producer on a blocking thread until the guard is dropped.
    pub fn producer(self: &Arc<Self>) -> Producing {
        self.producing.fetch_add(1, Ordering::Relaxed);
        Producing(self.clone())
    }
}

/// A held slot of a budget; dropping it gives the slot back.
pub struct Slot {
    budgets: Arc<Budgets>,
    budget: Budget,
    holder: Arc<str>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let slots = self.budgets.slots(self.budget);
        let mut by_holder = slots.by_holder.lock().expect("budget lock");
        if let Some(count) = by_holder.get_mut(&self.holder) {
            *count -= 1;
            if *count == 0 {
                by_holder.remove(&self.holder);
            }
        }
        slots.held.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Bytes counted as buffered while this lives.
pub struct Buffered {
    budgets: Arc<Budgets>,
    bytes: usize,
}

impl Drop for Buffered {
    fn drop(&mut self) {
        self.budgets
            .buffered_bytes
            .fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// A producer counted as on a blocking thread while this lives.
pub struct Producing(Arc<Budgets>);

impl Drop for Producing {
    fn drop(&mut self) {
        self.0.producing.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Log lines per second for one kind of unauthenticated input (forged webhook deliveries...):
/// past it, lines are counted instead of written, so a flood of bad requests cannot fill the
/// disk or drown the lines that matter.
pub struct LogBudget {
    per_second: u32,
    started: Instant,
    /// The current one-second window and the lines written in it.
    window: Mutex<(u64, u32)>,
    suppressed: AtomicU64,
}

impl LogBudget {
    pub fn new(per_second: u32) -> LogBudget {
        LogBudget {
            per_second,
            started: Instant::now(),
            window: Mutex::new((0, 0)),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Whether one more line may be written now; a refused line is counted as suppressed.
    pub fn allow(&self) -> bool {
        let second = self.started.elapsed().as_secs();
        let mut window = self.window.lock().expect("log budget lock");
        if window.0 != second {
            *window = (second, 0);
        }
        if window.1 < self.per_second {
            window.1 += 1;
            true
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            false
        }
    }

    /// Lines not written since start.
    pub fn suppressed(&self) -> u64 {
        self.suppressed.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_per_holder_and_in_all_and_come_back_when_dropped() {
        let budgets = Budgets::new(Limits {
            exports: 3,
            exports_per_key: 2,
            ..Limits::default()
        });
        let a1 = budgets.acquire(Budget::Exports, "a").unwrap();
        let _a2 = budgets.acquire(Budget::Exports, "a").unwrap();
        let refused = budgets.acquire(Budget::Exports, "a").err().unwrap();
        assert_eq!(refused.whose, "for this key");
        let _b1 = budgets.acquire(Budget::Exports, "b").unwrap();
        let refused = budgets.acquire(Budget::Exports, "c").err().unwrap();
        assert_eq!(refused.whose, "in all");
        assert_eq!(
            (
                budgets.held(Budget::Exports),
                budgets.refused(Budget::Exports)
            ),
            (3, 2)
        );
        drop(a1);
        assert_eq!(budgets.held(Budget::Exports), 2);
        budgets.acquire(Budget::Exports, "c").unwrap();
        assert_eq!(budgets.held(Budget::Watches), 0);
    }

    #[test]
    fn a_log_budget_writes_its_lines_per_second_and_counts_the_rest() {
        let budget = LogBudget::new(10);
        let written = (0..2_000).filter(|_| budget.allow()).count();
        // All in one or two one-second windows.
        assert!((10..=20).contains(&written), "{written}");
        assert_eq!(budget.suppressed(), 2_000 - written as u64);
    }
}
