//! `rollout status --watch`: the table fetched and redrawn every interval.
//!
//! On a terminal each frame clears the screen and draws in place; into a
//! pipe or file the frames follow one another, each under its header line,
//! so a log keeps the history. With `--json`, one status document per line.
//! A server that is unreachable or failing (5xx) is shown in the frame and
//! retried; a refusal that retrying cannot fix (wrong token, unknown model)
//! ends the watch with its exit code.

use std::io::{IsTerminal, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::args::StatusArgs;
use crate::client::AdminClient;
use crate::failure::{Failure, Kind};
use crate::output::write;
use crate::{table, view};

/// Clears the screen and moves the cursor to its top left corner.
const CLEAR: &str = "\x1b[H\x1b[2J";

/// Runs the watch until Ctrl-C, or `--count` frames (then its last frame's
/// failure, if it failed, is the result).
pub(crate) fn run(
    client: &AdminClient,
    model: Option<&str>,
    args: &StatusArgs,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let tty = std::io::stdout().is_terminal();
    let mut frames = 0u64;
    loop {
        frames += 1;
        let fetched = client
            .get("status")
            .and_then(|doc| Ok((view::models(&doc, model)?, doc)));
        let last = match fetched {
            Ok((models, doc)) => {
                let text = if json {
                    format!("{doc}\n")
                } else {
                    frame(&header(client, model, args), &table::render(&models), tty)
                };
                write(out, &text)?;
                Ok(())
            }
            Err(f) if matches!(f.kind, Kind::Unreachable | Kind::Server) => {
                let retry = format!(
                    "rollout: {f} (retrying every {} s)\n",
                    args.interval.as_secs_f64()
                );
                if json {
                    eprint!("{retry}");
                } else {
                    write(out, &frame(&header(client, model, args), &retry, tty))?;
                }
                Err(f)
            }
            Err(fatal) => return Err(fatal),
        };
        if args.count.is_some_and(|n| frames >= n) {
            return last;
        }
        std::thread::sleep(args.interval);
    }
}

/// The line above each frame: what is watched, how often, when.
fn header(client: &AdminClient, model: Option<&str>, args: &StatusArgs) -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    let model = model.map(|m| format!(" --model {m}")).unwrap_or_default();
    format!(
        "rollout status: {}{model}, every {} s, {h:02}:{m:02}:{s:02} UTC",
        client.base(),
        args.interval.as_secs_f64()
    )
}

/// One frame: on a terminal drawn over the last one, else appended after
/// it with a blank line between.
fn frame(header: &str, body: &str, tty: bool) -> String {
    if tty {
        format!("{CLEAR}{header}\n\n{body}")
    } else {
        format!("{header}\n\n{body}\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_redraw_on_a_terminal_and_append_elsewhere() {
        let on_tty = frame("h", "table\n", true);
        assert!(on_tty.starts_with("\x1b[H\x1b[2J"), "{on_tty:?}");
        assert!(on_tty.ends_with("h\n\ntable\n"), "{on_tty:?}");
        let piped = frame("h", "table\n", false);
        assert!(!piped.contains('\x1b'), "{piped:?}");
        assert_eq!(piped, "h\n\ntable\n\n");
    }
}
