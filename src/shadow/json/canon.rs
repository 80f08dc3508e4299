//! Canonical forms: equal exactly when an exact comparison finds no
//! difference, and ordered, so the elements of unordered arrays can be
//! sorted and paired.

use serde_json::{Map, Value};

use super::filter::{Ctx, Step};
use super::number::Num;
use super::pointer::Key;
use super::settings::JsonCompare;
use super::MAX_DEPTH;

/// Builds canonical forms under one comparison's settings.
pub(super) struct Canonizer<'c> {
    pub(super) cfg: &'c JsonCompare,
}

impl<'c> Canonizer<'c> {
    /// Canonical forms of the compared elements, sorted, with their indices.
    pub(super) fn canon_elems<'v>(
        &self,
        elems: &'v [Value],
        ectx: &Ctx,
        depth: usize,
    ) -> Result<Vec<(usize, Canon<'v>)>, TooDeep> {
        let mut out = Vec::with_capacity(elems.len());
        for (i, e) in elems.iter().enumerate() {
            let c = self.canon(e, ectx, depth)?;
            if !c.is_empty_selection() {
                out.push((i, c));
            }
        }
        out.sort_by(|a, b| a.1.cmp(&b.1));
        Ok(out)
    }

    /// A form of `v` that equals another's exactly when an exact comparison
    /// (no tolerances) under `ctx` finds no difference, and sorts.
    pub(super) fn canon<'v>(
        &self,
        v: &'v Value,
        ctx: &Ctx,
        depth: usize,
    ) -> Result<Canon<'v>, TooDeep> {
        if depth > MAX_DEPTH {
            return Err(TooDeep);
        }
        if ctx.only.is_some() {
            let fields = match v.as_object() {
                Some(m) => self.canon_fields(m, ctx, depth)?,
                None => Vec::new(),
            };
            let (items, bag) = match v.as_array() {
                Some(a) if self.cfg.unordered => (Vec::new(), self.canon_bag(a, ctx, depth)?),
                Some(a) => (self.canon_items(a, ctx, depth)?, Vec::new()),
                None => (Vec::new(), Vec::new()),
            };
            return Ok(Canon::Sel { fields, items, bag });
        }
        Ok(match v {
            Value::Null => Canon::Null,
            Value::Bool(b) => Canon::Bool(*b),
            Value::Number(n) => Canon::Num(Num::of(n)),
            Value::String(s) => Canon::Str(s),
            Value::Array(a) if self.cfg.unordered => Canon::Bag(self.canon_bag(a, ctx, depth)?),
            Value::Array(a) => Canon::Arr(self.canon_items(a, ctx, depth)?),
            Value::Object(m) => Canon::Obj(self.canon_fields(m, ctx, depth)?),
        })
    }

    pub(super) fn canon_fields<'v>(
        &self,
        m: &'v Map<String, Value>,
        ctx: &Ctx,
        depth: usize,
    ) -> Result<Vec<(&'v str, Canon<'v>)>, TooDeep> {
        let mut out = Vec::new();
        for (k, v) in m {
            if let Step::Visit(c) = ctx.child(Key::Field(k), self.cfg) {
                let cv = self.canon(v, &c, depth + 1)?;
                if !cv.is_empty_selection() {
                    out.push((k.as_str(), cv));
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(b.0));
        Ok(out)
    }

    pub(super) fn canon_items<'v>(
        &self,
        a: &'v [Value],
        ctx: &Ctx,
        depth: usize,
    ) -> Result<Vec<(usize, Canon<'v>)>, TooDeep> {
        let mut out = Vec::new();
        for (i, v) in a.iter().enumerate() {
            if let Step::Visit(c) = ctx.child(Key::Index(i), self.cfg) {
                let cv = self.canon(v, &c, depth + 1)?;
                if !cv.is_empty_selection() {
                    out.push((i, cv));
                }
            }
        }
        Ok(out)
    }

    pub(super) fn canon_bag<'v>(
        &self,
        a: &'v [Value],
        ctx: &Ctx,
        depth: usize,
    ) -> Result<Vec<Canon<'v>>, TooDeep> {
        match ctx.child(Key::Elem, self.cfg) {
            Step::Visit(ectx) => Ok(self
                .canon_elems(a, &ectx, depth + 1)?
                .into_iter()
                .map(|(_, c)| c)
                .collect()),
            Step::Skip => Ok(Vec::new()),
        }
    }
}

/// Nesting beyond [`MAX_DEPTH`] met while building a canonical form.
pub(super) struct TooDeep;

/// A value's canonical form: equal forms compare equal exactly, and forms
/// sort, so multisets of them can be compared by sorting.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Canon<'v> {
    Null,
    Bool(bool),
    Num(Num),
    Str(&'v str),
    /// An ordered array: compared indices and their values.
    Arr(Vec<(usize, Canon<'v>)>),
    /// An unordered array: its compared elements, sorted.
    Bag(Vec<Canon<'v>>),
    /// An object: compared keys, sorted, with their values.
    Obj(Vec<(&'v str, Canon<'v>)>),
    /// A value above the values `only` names: those values, whatever this
    /// one is (empty ones left out, as missing and empty compare equal).
    Sel {
        fields: Vec<(&'v str, Canon<'v>)>,
        items: Vec<(usize, Canon<'v>)>,
        bag: Vec<Canon<'v>>,
    },
}

impl Canon<'_> {
    pub(super) fn is_scalar(&self) -> bool {
        matches!(
            self,
            Canon::Null | Canon::Bool(_) | Canon::Num(_) | Canon::Str(_)
        )
    }

    pub(super) fn is_empty_selection(&self) -> bool {
        matches!(self, Canon::Sel { fields, items, bag }
            if fields.is_empty() && items.is_empty() && bag.is_empty())
    }
}
