//! Where a value sits relative to the ignore, `only` and tolerance pointers.

use super::pointer::{Key, Seg};
use super::settings::JsonCompare;

// === filter context ===

/// Where a value sits relative to the configured pointers: the pointers
/// partly matched by its path, each as (pointer index, segments matched).
#[derive(Clone)]
pub(super) struct Ctx {
    pub(super) ignore: Vec<(usize, usize)>,
    /// `None`: everything here is compared. `Some`: only values named by the
    /// partly matched `only` pointers are.
    pub(super) only: Option<Vec<(usize, usize)>>,
    pub(super) tol: Vec<(usize, usize)>,
    /// The `tolerance_at` override covering this value (the last set wins).
    pub(super) tol_hit: Option<usize>,
}

pub(super) enum Step {
    /// Compare this value with the given context.
    Visit(Ctx),
    /// Ignored, or not selected by `only`: not compared.
    Skip,
}

impl Ctx {
    pub(super) fn root(cfg: &JsonCompare) -> Step {
        let start = |n: usize| (0..n).map(|i| (i, 0)).collect::<Vec<_>>();
        let ctx = Ctx {
            ignore: start(cfg.ignore.len()),
            only: (!cfg.only.is_empty()).then(|| start(cfg.only.len())),
            tol: start(cfg.overrides.len()),
            tol_hit: None,
        };
        ctx.settle(cfg)
    }

    /// Resolves states that have matched their whole pointer.
    pub(super) fn settle(mut self, cfg: &JsonCompare) -> Step {
        if self
            .ignore
            .iter()
            .any(|&(i, pos)| pos == cfg.ignore[i].segs.len())
        {
            return Step::Skip;
        }
        if let Some(only) = &self.only {
            if only.iter().any(|&(i, pos)| pos == cfg.only[i].segs.len()) {
                self.only = None;
            } else if only.is_empty() {
                return Step::Skip;
            }
        }
        let mut live = Vec::with_capacity(self.tol.len());
        for &(i, pos) in &self.tol {
            if pos == cfg.overrides[i].pointer.segs.len() {
                self.tol_hit = self.tol_hit.max(Some(i));
            } else {
                live.push((i, pos));
            }
        }
        self.tol = live;
        Step::Visit(self)
    }

    pub(super) fn child(&self, key: Key<'_>, cfg: &JsonCompare) -> Step {
        let ctx = Ctx {
            ignore: advance(&self.ignore, key, |i| &cfg.ignore[i].segs),
            only: self
                .only
                .as_ref()
                .map(|only| advance(only, key, |i| &cfg.only[i].segs)),
            tol: advance(&self.tol, key, |i| &cfg.overrides[i].pointer.segs),
            tol_hit: self.tol_hit,
        };
        ctx.settle(cfg)
    }
}

/// Keeps the partial matches whose next segment matches `key`, one segment
/// further on.
pub(super) fn advance<'p>(
    states: &[(usize, usize)],
    key: Key<'_>,
    segs: impl Fn(usize) -> &'p [Seg],
) -> Vec<(usize, usize)> {
    states
        .iter()
        .filter(|&&(i, pos)| segs(i)[pos].matches(key))
        .map(|&(i, pos)| (i, pos + 1))
        .collect()
}
