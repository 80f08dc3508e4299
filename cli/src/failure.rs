//! What went wrong, and the exit code a script reads from it.

use std::fmt;

/// The kinds of failure, one exit code each (listed in `--help` by
/// [`EXIT_CODES`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// An answer the CLI does not understand (not the admin's JSON, a
    /// redirect), or a status no other kind covers.
    Other,
    /// Bad arguments or plan file, or the server answered 400, 405 or 413.
    /// The same code clap exits with on a usage error.
    Usage,
    /// 401 or 403: no token, or the wrong one.
    Unauthorized,
    /// 404: an unknown model, or `--url` is not the admin's base.
    NotFound,
    /// 409: a stale `--expect-generation`, a standby not ready, no plan to
    /// steer, a plan already running.
    Conflict,
    /// No connection, no answer within `--timeout`, or 408.
    Unreachable,
    /// 5xx.
    Server,
}

impl Kind {
    /// Every kind, in exit-code order.
    #[cfg(test)]
    pub(crate) const ALL: [Kind; 7] = [
        Kind::Other,
        Kind::Usage,
        Kind::Unauthorized,
        Kind::NotFound,
        Kind::Conflict,
        Kind::Unreachable,
        Kind::Server,
    ];

    /// The process exit code.
    pub(crate) fn code(self) -> u8 {
        match self {
            Kind::Other => 1,
            Kind::Usage => 2,
            Kind::Unauthorized => 3,
            Kind::NotFound => 4,
            Kind::Conflict => 5,
            Kind::Unreachable => 6,
            Kind::Server => 7,
        }
    }

    /// The kind of an HTTP error status.
    pub(crate) fn of_status(status: u16) -> Kind {
        match status {
            400 | 405 | 413 | 422 => Kind::Usage,
            401 | 403 => Kind::Unauthorized,
            404 => Kind::NotFound,
            409 => Kind::Conflict,
            408 => Kind::Unreachable,
            500..=599 => Kind::Server,
            _ => Kind::Other,
        }
    }
}

/// The exit codes, as `--help` shows them. `tests` below checks that it
/// names every [`Kind`] with its code.
pub(crate) const EXIT_CODES: &str = "\
Exit codes:
  0  done
  1  other error: an answer that is not the admin's JSON
  2  usage or bad request: bad arguments or plan file; the server answered 400, 405 or 413
  3  unauthorized: the server answered 401 or 403 (missing or wrong token)
  4  not found: the server answered 404 (unknown model, or --url is not the admin's base)
  5  conflict: the server answered 409 (stale --expect-generation, standby not ready, no plan to steer, a plan already running)
  6  unreachable: no connection, or no answer within --timeout (or 408)
  7  server error: the server answered 5xx";

/// A failed command: its kind (the exit code) and a message naming what
/// went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) kind: Kind,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(kind: Kind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
        }
    }

    pub(crate) fn usage(message: impl Into<String>) -> Failure {
        Failure::new(Kind::Usage, message)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_lists_every_code_once_and_codes_are_distinct() {
        let mut codes: Vec<u8> = Kind::ALL.iter().map(|k| k.code()).collect();
        codes.dedup();
        assert_eq!(codes, (1..=7).collect::<Vec<_>>());
        for kind in Kind::ALL {
            let line = format!("\n  {}  ", kind.code());
            assert_eq!(EXIT_CODES.matches(&line).count(), 1, "{kind:?}");
        }
        assert!(EXIT_CODES.contains("\n  0  done"));
        // clap exits with 2 on a usage error: the same code as ours.
        assert_eq!(Kind::Usage.code(), 2);
    }

    #[test]
    fn statuses_map_to_kinds() {
        for (status, kind) in [
            (400, Kind::Usage),
            (401, Kind::Unauthorized),
            (403, Kind::Unauthorized),
            (404, Kind::NotFound),
            (408, Kind::Unreachable),
            (409, Kind::Conflict),
            (413, Kind::Usage),
            (500, Kind::Server),
            (503, Kind::Server),
            (302, Kind::Other),
            (418, Kind::Other),
        ] {
            assert_eq!(Kind::of_status(status), kind, "{status}");
        }
    }
}
