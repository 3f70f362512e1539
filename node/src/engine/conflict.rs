//! Recovery conflicts on a hot standby (`standby.c: ResolveRecoveryConflictWithLock`): a
//! standby transaction that read a table holds it (PostgreSQL's AccessShareLock) until it
//! ends; replay of a commit that drops or truncates the table waits for the holders up to
//! `max_standby_streaming_delay`, then asks each to give up (its conflict handler cancels
//! the statement or ends the idle session), and waits until they have.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::catalog::Oid;

/// Asks a holder to give up its transaction (cancel its statement, or end its session).
#[derive(Clone)]
pub struct ConflictHandler(pub Arc<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for ConflictHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConflictHandler")
    }
}

/// `max_standby_streaming_delay`: how long replay waits before cancelling holders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandbyDelay {
    /// `-1`: replay waits as long as the holders run.
    Forever,
    /// Cancel after this long (0: at once).
    After(Duration),
}

/// Tables held by standby transactions, by holder.
#[derive(Default)]
pub(crate) struct RelationLocks {
    held: Mutex<Held>,
    released: Condvar,
}

#[derive(Default)]
struct Held {
    /// Holder id → its handler and the tables it holds.
    holders: HashMap<u64, (ConflictHandler, HashSet<Oid>)>,
    next_id: u64,
}

impl RelationLocks {
    /// A new holder id.
    pub(crate) fn holder(&self) -> u64 {
        let mut h = self.held.lock();
        h.next_id += 1;
        h.next_id
    }

    /// Holder `id` (asked to give up through `handler`) holds table `oid`.
    pub(crate) fn hold(&self, id: u64, handler: &ConflictHandler, oid: Oid) {
        let mut h = self.held.lock();
        h.holders.entry(id).or_insert_with(|| (handler.clone(), HashSet::new())).1.insert(oid);
    }

    /// Whether any standby transaction holds a table (replay checks its commits for
    /// conflicts only then).
    pub(crate) fn any(&self) -> bool {
        !self.held.lock().holders.is_empty()
    }

    /// Holder `id`'s transaction ended.
    pub(crate) fn release(&self, id: u64) {
        let mut h = self.held.lock();
        if h.holders.remove(&id).is_some() {
            self.released.notify_all();
        }
    }

    fn holding(h: &Held, oids: &[Oid]) -> Vec<(u64, ConflictHandler)> {
        h.holders
            .iter()
            .filter(|(_, (_, held))| oids.iter().any(|o| held.contains(o)))
            .map(|(id, (handler, _))| (*id, handler.clone()))
            .collect()
    }

    /// Waits until no holder holds any of `oids`: up to `delay` for them to end by
    /// themselves, then asks each one left to give up and waits for it. Returns how many
    /// were asked.
    pub(crate) fn resolve(&self, oids: &[Oid], delay: StandbyDelay) -> usize {
        let mut h = self.held.lock();
        if Self::holding(&h, oids).is_empty() {
            return 0;
        }
        let deadline = match delay {
            StandbyDelay::Forever => None,
            StandbyDelay::After(d) => Some(Instant::now() + d),
        };
        loop {
            let left = Self::holding(&h, oids);
            if left.is_empty() {
                return 0;
            }
            match deadline {
                Some(at) if Instant::now() >= at => break,
                Some(at) => {
                    self.released.wait_until(&mut h, at);
                }
                None => self.released.wait(&mut h),
            }
        }
        let asked: HashSet<u64> = Self::holding(&h, oids).iter().map(|(id, _)| *id).collect();
        for (_, handler) in Self::holding(&h, oids) {
            (handler.0)();
        }
        // Re-ask now and then: a handler's request may come between two statements.
        while !Self::holding(&h, oids).is_empty() {
            if self.released.wait_for(&mut h, Duration::from_millis(100)).timed_out() {
                for (_, handler) in Self::holding(&h, oids) {
                    (handler.0)();
                }
            }
        }
        asked.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn handler(count: &Arc<AtomicUsize>, locks: &Arc<RelationLocks>, id: u64) -> ConflictHandler {
        let (count, locks) = (count.clone(), locks.clone());
        ConflictHandler(Arc::new(move || {
            count.fetch_add(1, Ordering::SeqCst);
            // The holder gives up at once (its statement ends).
            let locks = locks.clone();
            std::thread::spawn(move || locks.release(id));
        }))
    }

    #[test]
    fn replay_waits_the_delay_then_cancels_only_the_holders_of_its_tables() {
        let locks = Arc::new(RelationLocks::default());
        let asked = Arc::new(AtomicUsize::new(0));
        let (a, b) = (locks.holder(), locks.holder());
        locks.hold(a, &handler(&asked, &locks, a), 16384);
        locks.hold(b, &handler(&asked, &locks, b), 16385);
        assert_eq!(locks.resolve(&[16390], StandbyDelay::After(Duration::ZERO)), 0);
        let t0 = Instant::now();
        assert_eq!(locks.resolve(&[16384], StandbyDelay::After(Duration::from_millis(50))), 1);
        assert!(t0.elapsed() >= Duration::from_millis(50));
        assert_eq!(asked.load(Ordering::SeqCst), 1);
        // A holder that ends within the delay is not cancelled.
        let l2 = locks.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            l2.release(b);
        });
        assert_eq!(locks.resolve(&[16385], StandbyDelay::Forever), 0);
        assert_eq!(asked.load(Ordering::SeqCst), 1);
    }
}
