//! Attribute-set interning.
//!
//! A route reflector holds the same attribute set for thousands of prefixes (every block a node
//! announces carries the same ORIGIN/AS_PATH/NEXT_HOP). Interning keeps one `Arc` per distinct
//! value, so the RIB stores a pointer per prefix, equality between routes is a pointer
//! comparison, and outbound UPDATEs can be grouped by pointer.

use std::collections::HashSet;
use std::sync::Arc;

use crate::wire::PathAttributes;

/// Smallest table size at which a sweep of dead entries is considered.
const MIN_SWEEP: usize = 64;

/// A set of shared attribute values. Why a set of `Arc`s: lookups by value (`Arc<T>: Borrow<T>`)
/// return the existing allocation; an entry is dead when the set holds the only reference.
#[derive(Debug)]
pub(crate) struct Interner {
    set: HashSet<Arc<PathAttributes>>,
    /// Size at which the next sweep runs; doubling keeps sweeps amortised O(1) per insert.
    sweep_at: usize,
}

impl Default for Interner {
    fn default() -> Self {
        Interner { set: HashSet::new(), sweep_at: MIN_SWEEP }
    }
}

impl Interner {
    /// The shared copy of `attrs`, inserting it when new.
    pub(crate) fn intern(&mut self, attrs: PathAttributes) -> Arc<PathAttributes> {
        if let Some(existing) = self.set.get(&attrs) {
            return existing.clone();
        }
        let shared = Arc::new(attrs);
        self.set.insert(shared.clone());
        if self.set.len() >= self.sweep_at {
            self.sweep();
        }
        shared
    }

    /// Give back one reference; the entry is dropped when nobody else holds it.
    pub(crate) fn release(&mut self, attrs: Arc<PathAttributes>) {
        // Two references: the caller's and the set's own.
        if Arc::strong_count(&attrs) == 2 && self.set.get(&*attrs).is_some_and(|e| Arc::ptr_eq(e, &attrs)) {
            self.set.remove(&*attrs);
        }
    }

    /// Drop every entry only the set still references (e.g. after callers dropped `RouteView`s).
    pub(crate) fn sweep(&mut self) {
        self.set.retain(|a| Arc::strong_count(a) > 1);
        self.sweep_at = (self.set.len() * 2).max(MIN_SWEEP);
    }

    /// Entries that something besides the interner still uses.
    pub(crate) fn live(&self) -> usize {
        self.set.iter().filter(|a| Arc::strong_count(a) > 1).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_value_same_allocation_and_release() {
        let mut i = Interner::default();
        let a = i.intern(PathAttributes { med: Some(5), ..Default::default() });
        let b = i.intern(PathAttributes { med: Some(5), ..Default::default() });
        let c = i.intern(PathAttributes { med: Some(6), ..Default::default() });
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(i.live(), 2);
        i.release(a);
        assert_eq!(i.set.len(), 2, "b still uses the entry");
        i.release(b);
        assert_eq!(i.set.len(), 1);
        drop(c);
        assert_eq!(i.live(), 0);
        i.sweep();
        assert_eq!(i.set.len(), 0);
    }
}
