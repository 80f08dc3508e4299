//! The drift statistics, over two fixed samples: the primary's (the
//! reference, `expected`) and the shadow's (`actual`).
//!
//! Categorical fields compare category counts: the population stability
//! index, the Jensen–Shannon distance and Pearson's chi-square test of
//! homogeneity. Numeric fields compare samples: the two-sample
//! Kolmogorov–Smirnov statistic with its p-value, and the first Wasserstein
//! distance. Distribution functions come from `statrs`; the reference
//! figures of the tests are scipy's (`scripts/drift_reference.py`).

use statrs::distribution::{ChiSquared, ContinuousCDF};
use statrs::stats_tests::ks_test::{ks_twosample, KSTwoSampleAlternativeMethod};
use statrs::stats_tests::NaNPolicy;

/// Pseudo-count added to every category of both sides before the PSI is
/// computed, so that a category one side never produced contributes a
/// large but finite term instead of an infinite one.
pub const PSI_SMOOTHING: f64 = 0.5;

/// The largest `n · m` for which the Kolmogorov–Smirnov p-value is exact
/// (Schröer and Trenkler's count of lattice paths, as `statrs` computes it);
/// larger samples use the asymptotic Kolmogorov distribution.
pub const KS_EXACT_MAX: usize = 10_000;

/// The population stability index of `actual` against `expected`, counts
/// per category in the same order: `Σ (aᵢ − eᵢ) · ln(aᵢ / eᵢ)` over the
/// proportions after adding [`PSI_SMOOTHING`] to every count. `None` when
/// either side is empty.
pub fn psi(expected: &[u64], actual: &[u64]) -> Option<f64> {
    let (e, a) = (smoothed(expected)?, smoothed(actual)?);
    Some(e.iter().zip(&a).map(|(e, a)| (a - e) * (a / e).ln()).sum())
}

fn smoothed(counts: &[u64]) -> Option<Vec<f64>> {
    if counts.iter().all(|&c| c == 0) {
        return None;
    }
    let total: f64 = counts.iter().map(|&c| c as f64 + PSI_SMOOTHING).sum();
    Some(
        counts
            .iter()
            .map(|&c| (c as f64 + PSI_SMOOTHING) / total)
            .collect(),
    )
}

/// The Jensen–Shannon distance (natural logarithm, so within `0..=√ln 2`)
/// between the two distributions of counts: the square root of the mean
/// Kullback–Leibler divergence of each from their average. `None` when
/// either side is empty.
pub fn jensen_shannon(expected: &[u64], actual: &[u64]) -> Option<f64> {
    let (p, q) = (proportions(expected)?, proportions(actual)?);
    let kl = |x: &[f64], m: &[f64]| -> f64 {
        x.iter()
            .zip(m)
            .filter(|(x, _)| **x > 0.0)
            .map(|(x, m)| x * (x / m).ln())
            .sum()
    };
    let m: Vec<f64> = p.iter().zip(&q).map(|(p, q)| (p + q) / 2.0).collect();
    let js = (kl(&p, &m) + kl(&q, &m)) / 2.0;
    Some(js.max(0.0).sqrt())
}

fn proportions(counts: &[u64]) -> Option<Vec<f64>> {
    let total: u64 = counts.iter().sum();
    (total > 0).then(|| counts.iter().map(|&c| c as f64 / total as f64).collect())
}

/// Pearson's chi-square test of homogeneity of the two rows of counts (a
/// 2 × k contingency table, no continuity correction): whether both sides
/// draw their categories from one distribution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChiSquare {
    /// `Σ (O − E)² / E` over the table's cells.
    pub statistic: f64,
    /// Degrees of freedom: the categories either side produced, minus one.
    pub dof: usize,
    /// The probability of a statistic at least this large if both sides
    /// had one distribution.
    pub p_value: f64,
}

/// The [`ChiSquare`] test; `None` when either side is empty or fewer than
/// two categories occur (nothing to compare).
pub fn chi_square(expected: &[u64], actual: &[u64]) -> Option<ChiSquare> {
    let (ne, na) = (
        expected.iter().sum::<u64>() as f64,
        actual.iter().sum::<u64>() as f64,
    );
    if ne == 0.0 || na == 0.0 {
        return None;
    }
    let n = ne + na;
    let mut statistic = 0.0;
    let mut categories = 0;
    for (&e, &a) in expected.iter().zip(actual) {
        let column = (e + a) as f64;
        if column == 0.0 {
            continue; // a category neither side produced
        }
        categories += 1;
        for (observed, row) in [(e as f64, ne), (a as f64, na)] {
            let expect = row * column / n;
            statistic += (observed - expect).powi(2) / expect;
        }
    }
    if categories < 2 {
        return None;
    }
    let dof = categories - 1;
    let dist = ChiSquared::new(dof as f64).ok()?;
    Some(ChiSquare {
        statistic,
        dof,
        p_value: dist.sf(statistic),
    })
}

/// The two-sample Kolmogorov–Smirnov test (two-sided).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KolmogorovSmirnov {
    /// The largest distance between the two empirical distribution
    /// functions.
    pub statistic: f64,
    /// The probability of a distance at least this large if both samples
    /// came from one continuous distribution: exact up to
    /// [`KS_EXACT_MAX`] `= n · m`, asymptotic beyond.
    pub p_value: f64,
    /// Whether `p_value` is exact.
    pub exact: bool,
}

/// The [`KolmogorovSmirnov`] test; `None` when a sample is empty or holds a
/// value that is not finite (the callers only keep finite values).
pub fn kolmogorov_smirnov(expected: &[f64], actual: &[f64]) -> Option<KolmogorovSmirnov> {
    if expected.is_empty() || actual.is_empty() {
        return None;
    }
    if !expected.iter().chain(actual).all(|x| x.is_finite()) {
        return None;
    }
    let exact = expected.len().saturating_mul(actual.len()) <= KS_EXACT_MAX;
    let method = if exact {
        KSTwoSampleAlternativeMethod::TwoSidedExact
    } else {
        KSTwoSampleAlternativeMethod::TwoSidedAsymptotic
    };
    let (statistic, p_value) =
        ks_twosample(expected.to_vec(), actual.to_vec(), method, NaNPolicy::Error).ok()?;
    Some(KolmogorovSmirnov {
        statistic,
        p_value: p_value.clamp(0.0, 1.0),
        exact,
    })
}

/// The first Wasserstein (earth mover's) distance between the two
/// samples: `∫ |F(x) − G(x)| dx` over their empirical distribution
/// functions. `None` when a sample is empty or not finite.
pub fn wasserstein(expected: &[f64], actual: &[f64]) -> Option<f64> {
    if expected.is_empty() || actual.is_empty() {
        return None;
    }
    if !expected.iter().chain(actual).all(|x| x.is_finite()) {
        return None;
    }
    let sorted = |xs: &[f64]| {
        let mut v = xs.to_vec();
        v.sort_by(f64::total_cmp);
        v
    };
    let (u, v) = (sorted(expected), sorted(actual));
    let mut all: Vec<f64> = u.iter().chain(&v).copied().collect();
    all.sort_by(f64::total_cmp);
    // The distribution functions just right of each point, times the gap
    // to the next point.
    let cdf = |xs: &[f64], x: f64| xs.partition_point(|&y| y <= x) as f64 / xs.len() as f64;
    Some(
        all.windows(2)
            .map(|w| (cdf(&u, w[0]) - cdf(&v, w[0])).abs() * (w[1] - w[0]))
            .sum(),
    )
}
