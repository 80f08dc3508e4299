//! [`JsonCompare`]: field-by-field comparison of JSON bodies, with numeric
//! tolerances, ignored and selected fields, and order-free arrays.
//!
//! The files: `settings.rs` (the type, its setters and their checks),
//! `pointer.rs` (JSON pointers with `*`), `filter.rs` (where a value sits
//! relative to the configured pointers), `walk.rs` (the tree walk),
//! `matching.rs` (pairing the elements of unordered arrays), `canon.rs`
//! (canonical forms for sorting them), `number.rs` (numbers by value and
//! their distance), `output.rs` (collecting and rendering diffs).

use serde_json::Value;

use super::compare::{status_diff, Captured, Compare, FieldDiff, Verdict};
use filter::{Ctx, Step};
use output::{invalid, lossy, Out};
use pointer::Path;
use walk::Walk;

mod canon;
mod filter;
mod matching;
mod number;
mod output;
mod pointer;
mod settings;
#[cfg(test)]
mod tests;
mod walk;

pub use settings::JsonCompare;

/// Nesting depth compared in full: above serde_json's parse limit (127
/// nested arrays or objects), so any body that parses is compared completely.
pub(super) const MAX_DEPTH: usize = 128;

/// Element pairs tried by the tolerant matching of one unordered array
/// (`len(primary) * len(shadow)`), beyond which it falls back to pairing in
/// sorted order.
pub(super) const MATCHING_BUDGET: usize = 1 << 16;

/// Rendered values are cut a little past what [`FieldDiff`] keeps (200 bytes),
/// so its truncation marker shows and huge values are never rendered whole.
pub(super) const RENDER_MAX: usize = 240;

pub(super) const MISSING: &str = "<missing>";
pub(super) const TOO_DEEP: &str = "<nested deeper than 128 levels>";

impl JsonCompare {
    /// The differences between two JSON values under these settings, capped
    /// at [`max_diffs`](Self::max_diffs) plus one `…` diff with the counts.
    ///
    /// Paths are concrete JSON pointers (a `*` in an ignore or `only`
    /// pointer never appears in them), so diffs can be counted per path.
    ///
    /// ```
    /// use serde_json::json;
    /// use tower_rollout::shadow::JsonCompare;
    ///
    /// let cmp = JsonCompare::new().rel_tolerance(0.5);
    /// // |1 - 2| == 0.5 * max(1, 2): the relative bound is inclusive.
    /// assert!(cmp.diff_values(&json!([1, 0]), &json!([2, 0])).is_empty());
    /// // 0 against anything non-zero is never within a relative tolerance below 1.
    /// let diffs = cmp.diff_values(&json!([1, 0]), &json!([2, 1e-9]));
    /// assert_eq!(diffs.len(), 1);
    /// assert_eq!(diffs[0].path, "/1");
    /// assert_eq!((diffs[0].primary.as_str(), diffs[0].shadow.as_str()), ("0", "1e-9"));
    /// ```
    pub fn diff_values(&self, primary: &Value, shadow: &Value) -> Vec<FieldDiff> {
        let mut out = Out::collect(self.max_diffs);
        self.diff_into(primary, shadow, &mut out);
        out.finish()
    }

    fn diff_into(&self, primary: &Value, shadow: &Value, out: &mut Out) {
        if let Step::Visit(ctx) = Ctx::root(self) {
            let walk = Walk::new(self);
            walk.walk(
                Some(primary),
                Some(shadow),
                &ctx,
                &mut Path::default(),
                0,
                out,
            );
        }
    }
}

impl Compare for JsonCompare {
    fn compare(&self, primary: &Captured, shadow: &Captured) -> Verdict {
        let mut out = Out::collect(self.max_diffs);
        if let Some(diff) = status_diff(primary, shadow) {
            out.push_diff(diff);
        }
        let parse = |body: &[u8]| serde_json::from_slice::<Value>(body);
        match (parse(&primary.body), parse(&shadow.body)) {
            (Ok(p), Ok(s)) => self.diff_into(&p, &s, &mut out),
            (Err(e), Ok(_)) => out.push_diff(FieldDiff::new(
                "body",
                invalid(&e, &primary.body),
                lossy(&shadow.body),
            )),
            (Ok(_), Err(e)) => out.push_diff(FieldDiff::new(
                "body",
                lossy(&primary.body),
                invalid(&e, &shadow.body),
            )),
            (Err(_), Err(_)) => {
                if primary.body != shadow.body {
                    out.push_diff(FieldDiff::new(
                        "body",
                        lossy(&primary.body),
                        lossy(&shadow.body),
                    ));
                }
            }
        }
        Verdict::from_diffs(out.finish())
    }
}
