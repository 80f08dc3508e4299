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

pub(super) fn push_segment(path: &mut String, key: &str) {
    path.push('/');
    for c in key.chars() {
        match c {
            '~' => path.push_str("~0"),
            '/' => path.push_str("~1"),
            c => path.push(c),
        }
    }
}

pub(super) fn push_index(path: &mut String, index: usize) {
    // Writing to a String cannot fail.
    let _ = write!(path, "/{index}");
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
