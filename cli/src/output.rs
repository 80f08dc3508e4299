//! Writing to the terminal: text, or the server's JSON.

use std::io::Write;

use serde_json::Value;

use crate::failure::{Failure, Kind};

/// Prints a JSON document, indented.
pub(crate) fn print_json(out: &mut dyn Write, doc: &Value) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(doc).unwrap_or_default();
    write(out, &format!("{text}\n"))
}

/// Writes and flushes `text`.
pub(crate) fn write(out: &mut dyn Write, text: &str) -> Result<(), Failure> {
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| Failure::new(Kind::Other, format!("cannot write the output: {e}")))
}
