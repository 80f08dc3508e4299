//! Prediction drift between two versions: how far the distribution of a
//! response field moved from the primary's answers to the shadow's.
//!
//! [`stats`] holds the statistics over two fixed samples. Checked against
//! scipy for fixed samples within 1e-9 (`tests/drift_reference.rs`; the
//! reference figures are computed by `scripts/drift_reference.py`).
//!
//! How to read them (the usual conventions):
//!
//! | statistic | no shift | moderate | large |
//! |---|---|---|---|
//! | PSI | < 0.1 | 0.1 – 0.25 | > 0.25 |
//! | Jensen–Shannon distance (ln) | < 0.1 | 0.1 – 0.2 | > 0.2 |
//! | chi-square, KS p-value | ≥ 0.05 | | < 0.05 (divide by the number of gated fields: Bonferroni) |
//!
//! The Wasserstein distance is in the field's own units.

pub mod stats;
