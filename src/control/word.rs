//! The routing word: everything the request path needs, in one `u64`.

use rand::RngExt;

use crate::Color;

/// Fractions are stored as thresholds out of 2^20 (about one in a million).
pub(crate) const SCALE: u32 = 1 << 20;
const FIELD_BITS: u32 = 21;
const FIELD_MASK: u64 = (1 << FIELD_BITS) - 1;
const MEASURE_BIT: u64 = 1 << 1;
const SPLIT_SHIFT: u32 = 2;
const MIRROR_SHIFT: u32 = SPLIT_SHIFT + FIELD_BITS;
const EPOCH_SHIFT: u32 = MIRROR_SHIFT + FIELD_BITS;
/// The slot epoch's bits: it counts deploys modulo 2^20.
pub(crate) const EPOCH_MASK: u32 = (1 << (64 - EPOCH_SHIFT)) - 1;

/// The active color (bit 0), whether outcomes are measured (bit 1), the split
/// and mirror thresholds (21 bits each) and the slot epoch (20 bits), which
/// rises with every deploy so router clones know when to pick up a new
/// version. One `AtomicU64` load costs well under a nanosecond and scales
/// with cores.
///
/// A router clone compares the epoch with the one its cached services came
/// from; a clone that sat idle through exactly 2^20 deploys would miss one,
/// which at one deploy a minute takes two years.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Word(pub(crate) u64);

impl Word {
    pub(crate) fn pack(active: Color, split: u32, mirror: u32, measure: bool, epoch: u32) -> Word {
        debug_assert!(split <= SCALE && mirror <= SCALE);
        Word(
            active.index() as u64
                | if measure { MEASURE_BIT } else { 0 }
                | (u64::from(split) << SPLIT_SHIFT)
                | (u64::from(mirror) << MIRROR_SHIFT)
                | (u64::from(epoch & EPOCH_MASK) << EPOCH_SHIFT),
        )
    }

    #[inline]
    pub(crate) fn active(self) -> Color {
        Color::from_bit(self.0)
    }

    /// Whether requests' outcomes are measured.
    #[inline]
    pub(crate) fn measure(self) -> bool {
        self.0 & MEASURE_BIT != 0
    }

    #[inline]
    pub(crate) fn split(self) -> u32 {
        ((self.0 >> SPLIT_SHIFT) & FIELD_MASK) as u32
    }

    #[inline]
    pub(crate) fn mirror(self) -> u32 {
        ((self.0 >> MIRROR_SHIFT) & FIELD_MASK) as u32
    }

    #[inline]
    pub(crate) fn epoch(self) -> u32 {
        (self.0 >> EPOCH_SHIFT) as u32
    }

    /// Measuring or mirroring: the request needs more than a pick.
    #[inline]
    pub(crate) fn extras(self) -> bool {
        self.0 & (MEASURE_BIT | (FIELD_MASK << MIRROR_SHIFT)) != 0
    }

    /// The color a request with bucket `bucket` (in `0..SCALE`) goes to.
    #[inline]
    pub(crate) fn color_for(self, bucket: u32) -> Color {
        if bucket < self.split() {
            self.active().other()
        } else {
            self.active()
        }
    }

    /// The color for a request without a key: a random bucket, drawn only
    /// when a split is set.
    #[inline(always)]
    pub(crate) fn pick(self) -> Color {
        if self.split() == 0 {
            self.active()
        } else {
            self.draw()
        }
    }

    /// A canary draw, out of line: the random number generator is large.
    #[inline(never)]
    fn draw(self) -> Color {
        self.color_for(random_bucket())
    }
}

/// A uniformly random bucket in `0..SCALE`, from a per-thread wyrand
/// generator seeded from `rand`'s thread generator: canary draws need speed
/// and uniformity, not unpredictability, and this costs a few instructions
/// where `rand::rng()` costs dozens.
#[inline]
pub(crate) fn random_bucket() -> u32 {
    thread_local! {
        static STATE: std::cell::Cell<u64> = std::cell::Cell::new(rand::rng().random::<u64>() | 1);
    }
    let r = STATE
        .try_with(|s| {
            let x = s.get().wrapping_add(0xa076_1d64_78bd_642f);
            s.set(x);
            let t = u128::from(x) * u128::from(x ^ 0xe703_7ed1_a0b4_28db);
            (t as u64) ^ ((t >> 64) as u64)
        })
        // Thread-locals being torn down: the slow generator.
        .unwrap_or_else(|_| rand::rng().random::<u64>());
    (r >> 44) as u32
}

/// A draw against a threshold: never at 0, always at `SCALE`, random between.
#[inline]
pub(crate) fn hit(threshold: u32) -> bool {
    match threshold {
        0 => false,
        t if t >= SCALE => true,
        t => random_bucket() < t,
    }
}

/// The threshold for a fraction already checked to be within `0..=1`.
pub(crate) fn threshold(fraction: f64) -> u32 {
    (fraction * f64::from(SCALE))
        .round()
        .clamp(0.0, f64::from(SCALE)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_round_trips() {
        for active in Color::ALL {
            for split in [0, 1, SCALE / 3, SCALE - 1, SCALE] {
                for mirror in [0, 7, SCALE] {
                    for measure in [false, true] {
                        for epoch in [0, 1, EPOCH_MASK] {
                            let w = Word::pack(active, split, mirror, measure, epoch);
                            assert_eq!(
                                (w.active(), w.split(), w.mirror(), w.measure(), w.epoch()),
                                (active, split, mirror, measure, epoch)
                            );
                            assert_eq!(w.extras(), measure || mirror != 0);
                        }
                    }
                }
            }
        }
        assert_eq!(
            Word::pack(Color::Blue, 0, 0, false, EPOCH_MASK + 1).epoch(),
            0
        );
    }

    #[test]
    fn thresholds_cover_the_ends() {
        assert_eq!(threshold(0.0), 0);
        assert_eq!(threshold(1.0), SCALE);
        let w = Word::pack(Color::Blue, threshold(1.0), 0, false, 0);
        assert_eq!(w.color_for(SCALE - 1), Color::Green);
        assert!((0..1000).all(|_| w.pick() == Color::Green));
        let w = Word::pack(Color::Green, 0, 0, false, 0);
        assert!((0..1000).all(|_| w.pick() == Color::Green));
        assert!((0..1000).all(|_| random_bucket() < SCALE));
    }

    #[test]
    fn draws_are_uniform() {
        // 200 000 draws into 20 ranges: each gets 10 000 ± a few hundred
        // (5 standard deviations is about 490).
        let mut ranges = [0u32; 20];
        for _ in 0..200_000 {
            ranges[(random_bucket() as usize * 20) >> 20] += 1;
        }
        for n in ranges {
            assert!((9_500..10_500).contains(&n), "{ranges:?}");
        }
        // And a 10% threshold hits about 10% of the time.
        let t = threshold(0.1);
        let hits = (0..100_000).filter(|_| hit(t)).count();
        assert!((9_000..11_000).contains(&hits), "{hits}");
    }
}
