//! JSON numbers by value, and the distance between two of them.

use std::cmp::Ordering;

use serde_json::Number;

/// 2^127: floats at or beyond it are outside `i128`.
pub(super) const TWO_127: f64 = 170_141_183_460_469_231_731_687_303_715_884_105_728.0;

/// A JSON number by value: integral values (whether written `1` or `1.0`)
/// as integers, so that equality is exact and transitive.
#[derive(Clone, Copy, Debug)]
pub(super) enum Num {
    Int(i128),
    /// Not integral, or beyond `i128`.
    Float(f64),
}

impl Num {
    pub(super) fn of(n: &Number) -> Num {
        if let Some(i) = n.as_i64() {
            return Num::Int(i.into());
        }
        if let Some(u) = n.as_u64() {
            return Num::Int(u.into());
        }
        match n.as_f64() {
            Some(f) if f.fract() == 0.0 && (-TWO_127..TWO_127).contains(&f) => Num::Int(f as i128),
            Some(f) => Num::Float(f),
            None => Num::Float(f64::NAN),
        }
    }
}

/// Orders an integer against a float that is not an integer within `i128`
/// (so they are never equal).
pub(super) fn int_vs_float(i: i128, f: f64) -> Ordering {
    let floor = f.floor();
    if f.is_nan() || floor >= TWO_127 {
        Ordering::Less
    } else if floor < -TWO_127 {
        Ordering::Greater
    } else if i <= floor as i128 {
        Ordering::Less
    } else {
        Ordering::Greater
    }
}

impl Ord for Num {
    fn cmp(&self, other: &Self) -> Ordering {
        match (*self, *other) {
            (Num::Int(a), Num::Int(b)) => a.cmp(&b),
            (Num::Float(a), Num::Float(b)) => a.total_cmp(&b),
            (Num::Int(a), Num::Float(b)) => int_vs_float(a, b),
            (Num::Float(a), Num::Int(b)) => int_vs_float(b, a).reverse(),
        }
    }
}

impl PartialOrd for Num {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Num {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Num {}

/// `|x - y|`, exact for integers beyond 2^53 (where `as_f64` rounds by up
/// to 2^(e-53)): an integer is compared with the other side's integer part
/// in `i128`, and only the fraction (exact in `f64`) is subtracted after.
pub(super) fn distance(x: &Number, y: &Number, a: f64, b: f64) -> f64 {
    fn int(n: &Number) -> Option<i128> {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    }
    // An integer `i` against a float `f`: (i - trunc f) exactly, then the
    // fraction of `f` (every f64 beyond 2^53 is an integer, so large values
    // have none).
    fn against(i: i128, f: f64) -> f64 {
        const LIMIT: f64 = 1e38; // well inside i128
        if !f.is_finite() || f.abs() >= LIMIT {
            return (i as f64 - f).abs();
        }
        let whole = f.trunc();
        let fraction = f - whole;
        ((i - whole as i128) as f64 - fraction).abs()
    }
    match (int(x), int(y)) {
        (Some(i), Some(j)) => (i - j).unsigned_abs() as f64,
        (Some(i), None) => against(i, b),
        (None, Some(j)) => against(j, a),
        (None, None) => (a - b).abs(),
    }
}
