//! Bounded samples of one field on one side: category counts, or a
//! reservoir of numbers. Whatever the traffic, a side keeps at most
//! [`MAX_CATEGORIES`] categories or `capacity` numbers.

use std::collections::HashMap;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

/// Distinct categories counted per side; further ones are counted together
/// under [`OTHER_CATEGORY`].
pub const MAX_CATEGORIES: usize = 64;
/// The bucket for categories beyond [`MAX_CATEGORIES`].
pub const OTHER_CATEGORY: &str = "(other)";

/// Category counts, in order of first appearance.
#[derive(Debug, Clone, Default)]
pub(crate) struct Categories {
    counts: Vec<(String, u64)>,
    /// Where each category is in `counts`.
    index: HashMap<String, usize>,
    other: u64,
}

impl Categories {
    pub(crate) fn add(&mut self, category: &str) {
        if let Some(&i) = self.index.get(category) {
            self.counts[i].1 += 1;
        } else if self.counts.len() < MAX_CATEGORIES {
            self.index.insert(category.to_owned(), self.counts.len());
            self.counts.push((category.to_owned(), 1));
        } else {
            self.other += 1;
        }
    }

    pub(crate) fn total(&self) -> u64 {
        self.counts.iter().map(|(_, n)| n).sum::<u64>() + self.other
    }

    /// Both sides' counts over the union of their categories, in one order
    /// (the primary's first), the overflow bucket last when either has one.
    pub(crate) fn aligned(primary: &Categories, shadow: &Categories) -> Aligned {
        let mut names: Vec<&str> = primary.counts.iter().map(|(c, _)| c.as_str()).collect();
        for (c, _) in &shadow.counts {
            if !names.contains(&c.as_str()) {
                names.push(c);
            }
        }
        let count = |side: &Categories, name: &str| {
            side.counts
                .iter()
                .find(|(c, _)| c == name)
                .map_or(0, |(_, n)| *n)
        };
        let mut aligned = Aligned {
            categories: names.iter().map(|n| (*n).to_owned()).collect(),
            primary: names.iter().map(|n| count(primary, n)).collect(),
            shadow: names.iter().map(|n| count(shadow, n)).collect(),
        };
        if primary.other + shadow.other > 0 {
            aligned.categories.push(OTHER_CATEGORY.to_owned());
            aligned.primary.push(primary.other);
            aligned.shadow.push(shadow.other);
        }
        aligned
    }
}

/// Both sides' category counts in one order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Aligned {
    pub(crate) categories: Vec<String>,
    pub(crate) primary: Vec<u64>,
    pub(crate) shadow: Vec<u64>,
}

/// A uniform sample of at most `capacity` of the numbers seen (Vitter's
/// algorithm R), with a generator seeded per reservoir so that runs repeat.
#[derive(Debug, Clone)]
pub(crate) struct Reservoir {
    values: Vec<f64>,
    seen: u64,
    capacity: usize,
    rng: SmallRng,
}

impl Reservoir {
    pub(crate) fn new(capacity: usize, seed: u64) -> Self {
        Reservoir {
            values: Vec::with_capacity(capacity),
            seen: 0,
            capacity,
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    pub(crate) fn add(&mut self, x: f64) {
        self.seen += 1;
        if self.values.len() < self.capacity {
            self.values.push(x);
            return;
        }
        let j = self.rng.random_range(0..self.seen);
        if let Ok(j) = usize::try_from(j) {
            if j < self.capacity {
                self.values[j] = x;
            }
        }
    }

    pub(crate) fn values(&self) -> &[f64] {
        &self.values
    }

    /// Numbers seen, sampled or not.
    pub(crate) fn seen(&self) -> u64 {
        self.seen
    }

    /// The bytes the reservoir holds on the heap (its capacity, fixed).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.values.capacity() * std::mem::size_of::<f64>()
    }
}
