//! Diffs collected up to a cap, and values rendered for display.

use serde_json::Value;

use super::super::compare::{DiffKind, FieldDiff};
use super::pointer::Path;
use super::{MAX_DEPTH, RENDER_MAX};

/// Diffs found so far: kept up to a cap, counted beyond it; or, for pairing
/// elements, just whether there is any.
pub(super) struct Out {
    pub(super) diffs: Vec<FieldDiff>,
    pub(super) max: usize,
    pub(super) total: usize,
    /// Stop at the first difference.
    pub(super) any: bool,
}

impl Out {
    pub(super) fn collect(max: usize) -> Self {
        Out {
            diffs: Vec::new(),
            max,
            total: 0,
            any: false,
        }
    }

    pub(super) fn any() -> Self {
        Out {
            diffs: Vec::new(),
            max: 0,
            total: 0,
            any: true,
        }
    }

    pub(super) fn done(&self) -> bool {
        self.any && self.total > 0
    }

    /// A diff of `kind` at `path` (values rendered only if kept).
    pub(super) fn push(
        &mut self,
        path: &Path,
        kind: DiffKind,
        primary: impl FnOnce() -> String,
        shadow: impl FnOnce() -> String,
    ) {
        self.total += 1;
        if self.diffs.len() < self.max {
            let pattern = match kind {
                DiffKind::Length => path.folded_parent(),
                _ => path.folded(),
            };
            let diff = FieldDiff::new(path.as_str(), primary(), shadow());
            self.diffs.push(diff.with_kind(kind, pattern));
        }
    }

    pub(super) fn push_diff(&mut self, diff: FieldDiff) {
        self.total += 1;
        if self.diffs.len() < self.max {
            self.diffs.push(diff);
        }
    }

    pub(super) fn finish(mut self) -> Vec<FieldDiff> {
        let left_out = self.total - self.diffs.len();
        if left_out > 0 {
            let s = if left_out == 1 { "" } else { "s" };
            self.diffs.push(FieldDiff::new(
                "…",
                format!("{left_out} more difference{s}"),
                format!("{} in total", self.total),
            ));
        }
        self.diffs
    }
}

/// Compact JSON, stopping soon after [`RENDER_MAX`] bytes.
pub(super) fn render(v: &Value) -> String {
    let mut out = String::new();
    render_into(v, &mut out, 0);
    out
}

pub(super) fn render_into(v: &Value, out: &mut String, depth: usize) {
    if out.len() > RENDER_MAX {
        return;
    }
    if depth > MAX_DEPTH {
        out.push('…');
        return;
    }
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => render_str(s, out),
        Value::Array(a) => {
            out.push('[');
            for (i, e) in a.iter().enumerate() {
                if out.len() > RENDER_MAX {
                    return;
                }
                if i > 0 {
                    out.push(',');
                }
                render_into(e, out, depth + 1);
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push('{');
            for (i, (k, e)) in m.iter().enumerate() {
                if out.len() > RENDER_MAX {
                    return;
                }
                if i > 0 {
                    out.push(',');
                }
                render_str(k, out);
                out.push(':');
                render_into(e, out, depth + 1);
            }
            out.push('}');
        }
    }
}

pub(super) fn render_str(s: &str, out: &mut String) {
    let mut cut = s.len().min(RENDER_MAX);
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    // Serializing a string cannot fail.
    out.push_str(&serde_json::to_string(&s[..cut]).unwrap_or_default());
}

/// The start of a body as text.
pub(super) fn lossy(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(RENDER_MAX)]).into_owned()
}

pub(super) fn invalid(err: &serde_json::Error, body: &[u8]) -> String {
    format!("<invalid JSON: {err}> {}", lossy(body))
}
