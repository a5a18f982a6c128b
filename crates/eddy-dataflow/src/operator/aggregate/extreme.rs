//! The multiset of one group's values for an integer MIN or MAX, kept so
//! that inserts cost an append.
//!
//! Changes are appended to a log of `(value, weight)`; the log's first
//! `sorted` entries are consolidated (one entry per value, sorted, no zero
//! weights). The current extreme is tracked as changes arrive and stays
//! valid while they cannot have removed it: an insert can only improve it,
//! and a delete of a value worse than it cannot touch it. A delete of the
//! extreme itself, or of a value at least as good (which the multiset may
//! not hold yet within an epoch), makes it stale; it is recomputed from a
//! consolidated log when asked for. The log is consolidated when it grows
//! to twice its consolidated length, so it stays within twice the number of
//! distinct values plus a constant, and each change is sorted O(log n)
//! times over its life.

/// One group's values of an integer MIN or MAX.
#[derive(Debug, Default, Clone)]
pub(super) struct IntExtreme {
    log: Vec<(i64, i64)>,
    sorted: usize,
    best: Option<i64>,
    stale: bool,
}

/// Consolidate once the log holds this many unconsolidated entries more
/// than its consolidated part.
const SLACK: usize = 16;

impl IntExtreme {
    /// Apply `weight` copies of `value` (negative: deletions).
    #[inline]
    pub(super) fn add(&mut self, value: i64, weight: i64, maximum: bool) {
        self.log.push((value, weight));
        if !self.stale {
            let better = |a: i64, b: i64| if maximum { a > b } else { a < b };
            if weight > 0 {
                if self.best.is_none_or(|best| better(value, best)) {
                    self.best = Some(value);
                }
            } else if self.best.is_none_or(|best| !better(best, value)) {
                self.stale = true;
            }
        }
        if self.log.len() > 2 * self.sorted + SLACK {
            self.consolidate(maximum);
        }
    }

    /// The extreme of the values with a positive net weight.
    pub(super) fn extreme(&mut self, maximum: bool) -> Option<i64> {
        if self.stale {
            self.consolidate(maximum);
        }
        self.best
    }

    /// The values with their net weights, consolidated, in value order.
    pub(super) fn entries(&mut self, maximum: bool) -> &[(i64, i64)] {
        if self.sorted < self.log.len() {
            self.consolidate(maximum);
        }
        &self.log
    }

    /// The values [`IntExtreme::entries`] returned.
    pub(super) fn from_entries(entries: Vec<(i64, i64)>, maximum: bool) -> Self {
        let mut extreme = Self {
            log: entries,
            ..Self::default()
        };
        extreme.consolidate(maximum);
        extreme
    }

    /// Empty it (for a group id that is reused).
    pub(super) fn clear(&mut self) {
        self.log.clear();
        self.sorted = 0;
        self.best = None;
        self.stale = false;
    }

    fn consolidate(&mut self, maximum: bool) {
        self.log.sort_unstable_by_key(|(value, _)| *value);
        let mut kept = 0;
        for index in 0..self.log.len() {
            let (value, weight) = self.log[index];
            if kept > 0 && self.log[kept - 1].0 == value {
                self.log[kept - 1].1 += weight;
                if self.log[kept - 1].1 == 0 {
                    kept -= 1;
                }
            } else {
                self.log[kept] = (value, weight);
                kept += 1;
            }
        }
        self.log.truncate(kept);
        self.sorted = kept;
        // Within an epoch a value may be deleted before it is inserted, so
        // a weight can be negative here; only positive ones count.
        let positive = |entry: &&(i64, i64)| entry.1 > 0;
        self.best = if maximum {
            self.log.iter().rev().find(positive)
        } else {
            self.log.iter().find(positive)
        }
        .map(|(value, _)| *value);
        self.stale = self.log.iter().any(|(_, weight)| *weight < 0);
        if self.log.capacity() > 4 * (self.log.len() + SLACK) {
            self.log.shrink_to(2 * self.log.len() + SLACK);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The extreme of a plain multiset, for comparison.
    fn reference(values: &std::collections::BTreeMap<i64, i64>, maximum: bool) -> Option<i64> {
        let mut positive = values.iter().filter(|(_, w)| **w > 0).map(|(v, _)| *v);
        if maximum {
            positive.next_back()
        } else {
            positive.next()
        }
    }

    #[test]
    fn follows_a_plain_multiset_under_random_changes() {
        use rand::{Rng, SeedableRng};
        for seed in 0..200u64 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            for maximum in [true, false] {
                let mut extreme = IntExtreme::default();
                let mut plain = std::collections::BTreeMap::new();
                for _ in 0..300 {
                    let value = rng.random_range(0..20);
                    let current = plain.get(&value).copied().unwrap_or(0i64);
                    // Deletes only of present values, except for an
                    // occasional delete-before-insert that is undone next.
                    let weight = if current > 0 && rng.random_bool(0.4) {
                        -1
                    } else if rng.random_bool(0.05) {
                        extreme.add(value, -1, maximum);
                        *plain.entry(value).or_insert(0) -= 1;
                        1
                    } else {
                        1
                    };
                    extreme.add(value, weight, maximum);
                    *plain.entry(value).or_insert(0) += weight;
                    assert_eq!(
                        extreme.extreme(maximum),
                        reference(&plain, maximum),
                        "seed {seed}"
                    );
                }
            }
        }
    }

    #[test]
    fn stays_within_twice_the_distinct_values() {
        let mut extreme = IntExtreme::default();
        for round in 0..10_000 {
            extreme.add(round % 10, 1, true);
            extreme.add(round % 10, -1, true);
        }
        assert!(extreme.log.len() <= SLACK + 1, "{}", extreme.log.len());
        assert_eq!(extreme.extreme(true), None);
    }
}
