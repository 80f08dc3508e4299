//! The tree walk: two values compared into diffs.

use serde_json::{Map, Number, Value};

use super::super::compare::DiffKind;

use super::canon::{Canon, Canonizer};
use super::filter::{Ctx, Step};
use super::matching::{max_matching, unpaired_equal};
use super::number::{distance, Num};
use super::output::{render, Out};
use super::pointer::{Key, Path};
use super::settings::JsonCompare;
use super::{MATCHING_BUDGET, MAX_DEPTH, MISSING, TOO_DEEP};

/// One comparison's settings, borrowed.
pub(super) struct Walk<'c> {
    pub(super) cfg: &'c JsonCompare,
    /// No tolerance anywhere: numbers match only when equal.
    pub(super) exact: bool,
    pub(super) canon: Canonizer<'c>,
}

impl<'c> Walk<'c> {
    pub(super) fn new(cfg: &'c JsonCompare) -> Self {
        Walk {
            cfg,
            exact: !cfg.has_tolerance(),
            canon: Canonizer { cfg },
        }
    }

    /// Compares the values at `path` (either may be missing) into `out`.
    pub(super) fn walk(
        &self,
        p: Option<&Value>,
        s: Option<&Value>,
        ctx: &Ctx,
        path: &mut Path,
        depth: usize,
        out: &mut Out,
    ) {
        if out.done() {
            return;
        }
        if depth > MAX_DEPTH {
            out.push(
                path,
                DiffKind::Value,
                || TOO_DEEP.into(),
                || TOO_DEEP.into(),
            );
            return;
        }
        if ctx.only.is_some() {
            // `only` pointers name values below this one: compare those, and
            // nothing about this value itself.
            let (po, so) = (p.and_then(Value::as_object), s.and_then(Value::as_object));
            if po.is_some() || so.is_some() {
                self.objects(po, so, ctx, path, depth, out);
            }
            let (pa, sa) = (p.and_then(Value::as_array), s.and_then(Value::as_array));
            if pa.is_some() || sa.is_some() {
                let (pa, sa) = (pa.map(Vec::as_slice), sa.map(Vec::as_slice));
                self.arrays(pa, sa, ctx, path, depth, out);
            }
            return;
        }
        match (p, s) {
            (None, None) => {}
            (Some(a), None) => {
                let kind = one_sided(path, DiffKind::OnlyPrimary);
                out.push(path, kind, || render(a), || MISSING.into());
            }
            (None, Some(b)) => {
                let kind = one_sided(path, DiffKind::OnlyShadow);
                out.push(path, kind, || MISSING.into(), || render(b));
            }
            (Some(a), Some(b)) => self.values(a, b, ctx, path, depth, out),
        }
    }

    pub(super) fn values(
        &self,
        a: &Value,
        b: &Value,
        ctx: &Ctx,
        path: &mut Path,
        depth: usize,
        out: &mut Out,
    ) {
        let same = match (a, b) {
            (Value::Null, Value::Null) => true,
            (Value::Bool(x), Value::Bool(y)) => x == y,
            (Value::String(x), Value::String(y)) => x == y,
            (Value::Number(x), Value::Number(y)) => self.numbers_match(x, y, ctx),
            (Value::Object(x), Value::Object(y)) => {
                return self.objects(Some(x), Some(y), ctx, path, depth, out);
            }
            (Value::Array(x), Value::Array(y)) => {
                return self.arrays(Some(x), Some(y), ctx, path, depth, out);
            }
            _ => {
                return out.push(path, DiffKind::Type, || render(a), || render(b));
            }
        };
        if !same {
            out.push(path, DiffKind::Value, || render(a), || render(b));
        }
    }

    pub(super) fn numbers_match(&self, x: &Number, y: &Number, ctx: &Ctx) -> bool {
        if Num::of(x) == Num::of(y) {
            return true;
        }
        let (abs, rel) = match ctx.tol_hit {
            Some(i) => (self.cfg.overrides[i].abs, self.cfg.overrides[i].rel),
            None => (self.cfg.abs, self.cfg.rel),
        };
        let (Some(a), Some(b)) = (x.as_f64(), y.as_f64()) else {
            return false;
        };
        let d = distance(x, y, a, b);
        // Zero means exact: distinct values never compare within a zero
        // tolerance, even integers beyond 2^53 that convert to one float.
        (abs > 0.0 && d <= abs) || (rel > 0.0 && d <= rel * a.abs().max(b.abs()))
    }

    pub(super) fn objects(
        &self,
        x: Option<&Map<String, Value>>,
        y: Option<&Map<String, Value>>,
        ctx: &Ctx,
        path: &mut Path,
        depth: usize,
        out: &mut Out,
    ) {
        let len = path.len();
        let mut child = |key: &str, p: Option<&Value>, s: Option<&Value>, out: &mut Out| {
            if let Step::Visit(c) = ctx.child(Key::Field(key), self.cfg) {
                path.push_key(key);
                self.walk(p, s, &c, path, depth + 1, out);
                path.truncate(len);
            }
        };
        for (k, v) in x.into_iter().flatten() {
            if out.done() {
                return;
            }
            child(k, Some(v), y.and_then(|y| y.get(k)), out);
        }
        for (k, v) in y.into_iter().flatten() {
            if out.done() {
                return;
            }
            if !x.is_some_and(|x| x.contains_key(k)) {
                child(k, None, Some(v), out);
            }
        }
    }

    pub(super) fn arrays(
        &self,
        x: Option<&[Value]>,
        y: Option<&[Value]>,
        ctx: &Ctx,
        path: &mut Path,
        depth: usize,
        out: &mut Out,
    ) {
        let (x, y) = (x.unwrap_or(&[]), y.unwrap_or(&[]));
        if self.cfg.unordered {
            return self.bag(x, y, ctx, path, depth, out);
        }
        let len = path.len();
        for i in 0..x.len().max(y.len()) {
            if out.done() {
                return;
            }
            if let Step::Visit(c) = ctx.child(Key::Index(i), self.cfg) {
                path.push_index(i);
                self.walk(x.get(i), y.get(i), &c, path, depth + 1, out);
                path.truncate(len);
            }
        }
    }

    /// Compares two arrays as multisets (see the type docs for the pairing).
    pub(super) fn bag(
        &self,
        x: &[Value],
        y: &[Value],
        ctx: &Ctx,
        path: &mut Path,
        depth: usize,
        out: &mut Out,
    ) {
        let Step::Visit(ectx) = ctx.child(Key::Elem, self.cfg) else {
            return;
        };
        let (Ok(cx), Ok(cy)) = (
            self.canon.canon_elems(x, &ectx, depth + 1),
            self.canon.canon_elems(y, &ectx, depth + 1),
        ) else {
            out.push(
                path,
                DiffKind::Value,
                || TOO_DEEP.into(),
                || TOO_DEEP.into(),
            );
            return;
        };
        if cx.len() == cy.len() && cx.iter().zip(&cy).all(|(a, b)| a.1 == b.1) {
            return;
        }
        if out.any && cx.len() != cy.len() {
            return out.push(path, DiffKind::Value, String::new, String::new);
        }
        // Positions in `cx` and `cy` (sorted order) left unpaired, and
        // whether they are known to differ.
        let (left, right, conclusive) = if self.exact {
            let (l, r) = unpaired_equal(&cx, &cy);
            (l, r, true)
        } else if cx.len() == 1 && cy.len() == 1 {
            (vec![0], vec![0], false)
        } else if cx.len().saturating_mul(cy.len()) <= MATCHING_BUDGET {
            let (l, r) = self.unpaired_matching(x, y, &cx, &cy, &ectx, depth + 1);
            (l, r, true)
        } else if cx.len() == cy.len() && cx.iter().chain(&cy).all(|c| c.1.is_scalar()) {
            // Sorted pairing is optimal for scalars (see the type docs).
            ((0..cx.len()).collect(), (0..cy.len()).collect(), false)
        } else {
            let (l, r) = unpaired_equal(&cx, &cy);
            (l, r, false)
        };
        if out.any && conclusive && !(left.is_empty() && right.is_empty()) {
            // Walking them again would only confirm it, and, nested, double
            // the work at every level.
            return out.push(path, DiffKind::Value, String::new, String::new);
        }
        // Pair the rest in sorted order so that diffs name fields where they
        // can; the surplus of the longer side is missing on the other.
        let len = path.len();
        for k in 0..left.len().max(right.len()) {
            if out.done() {
                return;
            }
            let p = left.get(k).map(|&a| cx[a].0);
            let s = right.get(k).map(|&b| cy[b].0);
            let Some(index) = p.or(s) else { break };
            path.push_index(index);
            self.walk(
                p.map(|i| &x[i]),
                s.map(|j| &y[j]),
                &ectx,
                path,
                depth + 1,
                out,
            );
            path.truncate(len);
        }
    }

    /// Pairs elements by a maximum matching over "no diff between them";
    /// returns the unpaired positions on each side.
    pub(super) fn unpaired_matching(
        &self,
        x: &[Value],
        y: &[Value],
        cx: &[(usize, Canon<'_>)],
        cy: &[(usize, Canon<'_>)],
        ectx: &Ctx,
        depth: usize,
    ) -> (Vec<usize>, Vec<usize>) {
        let (n, m) = (cx.len(), cy.len());
        let mut compat = vec![false; n * m];
        for (a, (i, ca)) in cx.iter().enumerate() {
            for (b, (j, cb)) in cy.iter().enumerate() {
                compat[a * m + b] = ca == cb || !self.differs(&x[*i], &y[*j], ectx, depth);
            }
        }
        let left_of = max_matching(&compat, n, m);
        let mut paired = vec![false; n];
        for a in left_of.iter().flatten() {
            paired[*a] = true;
        }
        let left = (0..n).filter(|&a| !paired[a]).collect();
        let right = (0..m).filter(|&b| left_of[b].is_none()).collect();
        (left, right)
    }

    pub(super) fn differs(&self, a: &Value, b: &Value, ctx: &Ctx, depth: usize) -> bool {
        let mut out = Out::any();
        self.walk(Some(a), Some(b), ctx, &mut Path::default(), depth, &mut out);
        out.total > 0
    }
}

/// A value on one side only: an array element past the other side's
/// length, or an object field the other side lacks.
fn one_sided(path: &Path, field: DiffKind) -> DiffKind {
    if path.in_array() {
        DiffKind::Length
    } else {
        field
    }
}
