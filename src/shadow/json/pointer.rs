//! JSON pointers (RFC 6901) whose `*` segments match any key or index.

use std::fmt::{self, Write as _};

// === pointers ===

/// A parsed JSON pointer whose `*` segments match anything.
#[derive(Clone)]
pub(super) struct Pointer {
    pub(super) text: String,
    pub(super) segs: Vec<Seg>,
}

#[derive(Clone, Debug)]
pub(super) enum Seg {
    Any,
    Key {
        name: String,
        /// The array index this segment names, if it is one (`0` or digits
        /// without a leading zero, as RFC 6901 says).
        index: Option<usize>,
    },
}

impl Pointer {
    pub(super) fn parse(text: &str) -> Option<Pointer> {
        let mut segs = Vec::new();
        if !text.is_empty() {
            let rest = text.strip_prefix('/')?;
            for raw in rest.split('/') {
                segs.push(if raw == "*" {
                    Seg::Any
                } else {
                    let name = unescape(raw)?;
                    let digits = name.bytes().all(|b| b.is_ascii_digit());
                    let index = (digits && (name == "0" || !name.starts_with('0')))
                        .then(|| name.parse().ok())
                        .flatten();
                    Seg::Key { name, index }
                });
            }
        }
        Some(Pointer {
            text: text.to_owned(),
            segs,
        })
    }
}

impl fmt::Debug for Pointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.text, f)
    }
}

pub(super) fn unescape(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '~' {
            match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// The concrete pointer of the value being compared, and where its array
/// indices are, so that a diff can also name its field with the indices
/// folded (`/predictions/*/label`).
#[derive(Default)]
pub(super) struct Path {
    text: String,
    /// Byte offsets of the index segments (their `/`), ascending.
    indices: Vec<usize>,
}

impl Path {
    pub(super) fn as_str(&self) -> &str {
        &self.text
    }

    pub(super) fn len(&self) -> usize {
        self.text.len()
    }

    /// Back to a length `len()` returned before.
    pub(super) fn truncate(&mut self, len: usize) {
        self.text.truncate(len);
        while self.indices.last().is_some_and(|&i| i >= len) {
            self.indices.pop();
        }
    }

    pub(super) fn push_key(&mut self, key: &str) {
        self.text.push('/');
        for c in key.chars() {
            match c {
                '~' => self.text.push_str("~0"),
                '/' => self.text.push_str("~1"),
                c => self.text.push(c),
            }
        }
    }

    pub(super) fn push_index(&mut self, index: usize) {
        self.indices.push(self.text.len());
        // Writing to a String cannot fail.
        let _ = write!(self.text, "/{index}");
    }

    /// Whether the last segment is an array index (keys escape `/`, so the
    /// last `/` starts the last segment).
    pub(super) fn in_array(&self) -> bool {
        self.indices
            .last()
            .is_some_and(|&i| Some(i) == self.text.rfind('/'))
    }

    /// The pointer with every index as `*`.
    pub(super) fn folded(&self) -> String {
        self.folded_to(self.text.len())
    }

    /// The folded pointer without its last segment: for an element, its
    /// array's.
    pub(super) fn folded_parent(&self) -> String {
        self.folded_to(self.text.rfind('/').unwrap_or(0))
    }

    fn folded_to(&self, end: usize) -> String {
        let mut out = String::with_capacity(end);
        let mut from = 0;
        for &i in self.indices.iter().take_while(|&&i| i < end) {
            out.push_str(&self.text[from..i]);
            out.push_str("/*");
            // The index's digits end at the next `/` (or the end).
            from = self.text[i + 1..end].find('/').map_or(end, |j| i + 1 + j);
        }
        out.push_str(&self.text[from..end]);
        out
    }
}

/// A child of a JSON value as pointers see it.
#[derive(Clone, Copy)]
pub(super) enum Key<'a> {
    Field(&'a str),
    Index(usize),
    /// Any element of an unordered array: only `*` matches it.
    Elem,
}

impl Seg {
    pub(super) fn matches(&self, key: Key<'_>) -> bool {
        match (self, key) {
            (Seg::Any, _) => true,
            (Seg::Key { name, .. }, Key::Field(field)) => name == field,
            (Seg::Key { index, .. }, Key::Index(i)) => *index == Some(i),
            (Seg::Key { .. }, Key::Elem) => false,
        }
    }
}
