//! When each gateway peer next needs attention, in a binary heap with lazy
//! deletion, so finding the next deadline and the peers that are due costs
//! O(log n) instead of a pass over every peer.
//!
//! Each peer remembers the one deadline it currently has in the heap
//! (`Scheduled`). Moving a deadline pushes a new entry and leaves the old
//! one behind; an entry whose time no longer matches what its key has
//! scheduled is stale and skipped when it reaches the top. The heap is
//! rebuilt when stale entries outnumber live ones, so it stays O(peers).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// A heap of (deadline, key) with lazy deletion. The caller owns the truth
/// (which deadline each key has scheduled) and answers `is_current`.
#[derive(Debug)]
pub(crate) struct Deadlines<K: Ord> {
    heap: BinaryHeap<Reverse<(Instant, K)>>,
}

impl<K: Ord + Copy> Default for Deadlines<K> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
        }
    }
}

impl<K: Ord + Copy> Deadlines<K> {
    /// Add an entry. The caller records `at` as the key's current deadline;
    /// any older entry of the key becomes stale.
    pub(crate) fn push(&mut self, at: Instant, key: K) {
        self.heap.push(Reverse((at, key)));
    }

    /// The next key whose current deadline is at or before `now` (removed
    /// from the heap); stale entries on the way are dropped.
    pub(crate) fn pop_due(
        &mut self,
        now: Instant,
        is_current: impl Fn(K, Instant) -> bool,
    ) -> Option<K> {
        while let Some(Reverse((at, key))) = self.heap.peek().copied() {
            if at > now {
                return None;
            }
            self.heap.pop();
            if is_current(key, at) {
                return Some(key);
            }
        }
        None
    }

    /// The earliest current deadline (stale entries on top are dropped).
    pub(crate) fn next(&mut self, is_current: impl Fn(K, Instant) -> bool) -> Option<Instant> {
        while let Some(Reverse((at, key))) = self.heap.peek().copied() {
            if is_current(key, at) {
                return Some(at);
            }
            self.heap.pop();
        }
        None
    }

    /// Entries in the heap, stale ones included.
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Drop every stale entry (O(n)); for when they pile up.
    pub(crate) fn compact(&mut self, is_current: impl Fn(K, Instant) -> bool) {
        self.heap.retain(|Reverse((at, key))| is_current(*key, *at));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::time::Duration;

    /// The caller's side: what each key has scheduled now.
    struct Book {
        heap: Deadlines<u32>,
        current: HashMap<u32, Instant>,
    }

    impl Book {
        fn new() -> Self {
            Self {
                heap: Deadlines::default(),
                current: HashMap::new(),
            }
        }
        fn schedule(&mut self, key: u32, at: Instant) {
            self.current.insert(key, at);
            self.heap.push(at, key);
        }
        fn pop_due(&mut self, now: Instant) -> Option<u32> {
            let current = &self.current;
            let key = self
                .heap
                .pop_due(now, |k, at| current.get(&k) == Some(&at))?;
            self.current.remove(&key);
            Some(key)
        }
        fn next(&mut self) -> Option<Instant> {
            let current = &self.current;
            self.heap.next(|k, at| current.get(&k) == Some(&at))
        }
    }

    #[test]
    fn only_due_keys_come_out_in_deadline_order() {
        let t0 = Instant::now();
        let mut b = Book::new();
        b.schedule(1, t0 + Duration::from_millis(30));
        b.schedule(2, t0 + Duration::from_millis(10));
        b.schedule(3, t0 + Duration::from_millis(20));
        assert_eq!(b.pop_due(t0), None, "nothing is due yet");
        assert_eq!(b.next(), Some(t0 + Duration::from_millis(10)));
        assert_eq!(b.pop_due(t0 + Duration::from_millis(25)), Some(2));
        assert_eq!(b.pop_due(t0 + Duration::from_millis(25)), Some(3));
        assert_eq!(b.pop_due(t0 + Duration::from_millis(25)), None);
        assert_eq!(b.next(), Some(t0 + Duration::from_millis(30)));
    }

    #[test]
    fn a_moved_deadline_leaves_a_stale_entry_that_is_ignored() {
        let t0 = Instant::now();
        let mut b = Book::new();
        b.schedule(7, t0 + Duration::from_millis(10));
        // Moved later: the 10 ms entry is stale.
        b.schedule(7, t0 + Duration::from_millis(50));
        assert_eq!(b.next(), Some(t0 + Duration::from_millis(50)));
        assert_eq!(b.pop_due(t0 + Duration::from_millis(20)), None);
        assert_eq!(b.pop_due(t0 + Duration::from_millis(50)), Some(7));
        assert_eq!(
            b.pop_due(t0 + Duration::from_millis(50)),
            None,
            "fired once"
        );
    }

    #[test]
    fn a_forgotten_key_never_fires() {
        let t0 = Instant::now();
        let mut b = Book::new();
        b.schedule(1, t0);
        b.schedule(2, t0);
        b.current.remove(&1);
        assert_eq!(b.pop_due(t0), Some(2));
        assert_eq!(b.pop_due(t0), None);
        assert_eq!(b.next(), None);
    }

    #[test]
    fn compact_keeps_exactly_the_current_entries() {
        let t0 = Instant::now();
        let mut b = Book::new();
        for i in 0..100u32 {
            b.schedule(i % 10, t0 + Duration::from_millis(u64::from(i)));
        }
        assert_eq!(b.heap.len(), 100);
        let current = &b.current;
        b.heap.compact(|k, at| current.get(&k) == Some(&at));
        assert_eq!(b.heap.len(), 10);
        assert_eq!(b.next(), Some(t0 + Duration::from_millis(90)));
    }
}
