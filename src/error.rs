//! Typed errors for configuration and control calls.

use std::fmt;

/// A setting that was rejected when a layer, router or handle call was given it.
///
/// Every setter that can be given a bad value reports it with this type instead of
/// panicking: fractions must be finite and within `0..=1`, header names must be
/// valid HTTP header names, budgets and limits must be positive.
///
/// ```
/// use tower_rollout::{BlueGreenRouter, ConfigError};
/// # let svc = tower::service_fn(|_req: http::Request<()>| async {
/// #     Ok::<_, std::convert::Infallible>(http::Response::new(()))
/// # });
/// let (_router, handle) = BlueGreenRouter::new(svc.clone(), svc);
/// let err = handle.set_split(f64::NAN).unwrap_err();
/// assert!(matches!(
///     err,
///     tower_rollout::control::ControlError::Invalid(ConfigError::InvalidFraction { setting: "split", .. })
/// ));
/// assert_eq!(handle.status().split, 0.0, "nothing changed");
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A fraction was NaN, infinite, negative or above one.
    InvalidFraction {
        /// Which setting was given the value.
        setting: &'static str,
        /// The rejected value.
        value: f64,
    },
    /// A string could not be used as an HTTP header name.
    InvalidHeaderName {
        /// Which setting was given the value.
        setting: &'static str,
        /// The rejected name (lossily converted to UTF-8).
        name: String,
    },
    /// A count, size or duration that must be above zero was zero.
    MustBePositive {
        /// Which setting was given the value.
        setting: &'static str,
    },
    /// A value below its setting's minimum.
    TooSmall {
        /// Which setting was given the value, with its minimum.
        setting: &'static str,
    },
    /// A count above what the implementation supports.
    TooLarge {
        /// Which setting was given the value.
        setting: &'static str,
    },
    /// An authority suffix that would not give a valid host.
    InvalidAuthoritySuffix {
        /// The rejected suffix.
        suffix: String,
    },
    /// A numeric tolerance that is NaN, infinite or negative.
    InvalidTolerance {
        /// Which setting was given the value.
        setting: &'static str,
        /// The rejected value.
        value: f64,
    },
    /// A string that is not a JSON pointer (RFC 6901): neither empty nor
    /// starting with `/`, or with an escape other than `~0` and `~1`.
    InvalidPointer {
        /// The rejected pointer.
        pointer: String,
    },
    /// Shadow work needs an executor: enable the `tokio` feature or set one
    /// with `spawner`.
    MissingSpawner,
    /// A name for metrics and tracing that is empty, longer than 64 bytes, or
    /// has a character other than ASCII letters, digits, `_`, `-`, `.`, `:`
    /// and `/` (see the [`telemetry`](crate::telemetry) module).
    InvalidName {
        /// The rejected name.
        name: String,
    },
    /// A model name for a [`Fleet`](crate::Fleet) that is empty or not usable
    /// as one URL path segment as it is: only ASCII letters, digits, `-`,
    /// `.`, `_` and `~` (RFC 3986's unreserved characters), and neither `.`
    /// nor `..`.
    InvalidModelName {
        /// The rejected name.
        name: String,
    },
    /// A model name already present in the [`Fleet`](crate::Fleet).
    DuplicateModelName {
        /// The name given twice.
        name: String,
    },
    /// The admin service was built without a bearer token, or with an empty
    /// one: it never serves an open endpoint.
    MissingToken,
    /// A bearer token with a character other than visible ASCII (`!` to `~`),
    /// which no `Authorization` header could carry. The token itself is never
    /// shown.
    InvalidToken,
    /// The admin service needs exactly one target: a handle or a fleet.
    AdminTarget {
        /// What was wrong: `"none"` or `"both"`.
        given: &'static str,
    },
    /// A version label that is empty, longer than 64 bytes, or has a
    /// character other than ASCII letters, digits, `_`, `-`, `.`, `:` and `/`
    /// (see [`VersionLabel`](crate::control::VersionLabel)).
    InvalidVersion {
        /// The rejected label.
        label: String,
    },
    /// Both colors were given the same version label.
    DuplicateVersion {
        /// The label given twice.
        label: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::InvalidFraction { setting, value } => write!(
                f,
                "invalid {setting}: {value} is not a fraction between 0 and 1"
            ),
            ConfigError::InvalidHeaderName { setting, name } => {
                write!(f, "invalid {setting}: {name:?} is not a valid header name")
            }
            ConfigError::MustBePositive { setting } => {
                write!(f, "invalid {setting}: must be greater than zero")
            }
            ConfigError::TooSmall { setting } => write!(f, "invalid {setting}: too small"),
            ConfigError::TooLarge { setting } => write!(f, "invalid {setting}: too large"),
            ConfigError::InvalidAuthoritySuffix { suffix } => {
                write!(
                    f,
                    "invalid authority suffix {suffix:?}: the host would not parse"
                )
            }
            ConfigError::InvalidTolerance { setting, value } => write!(
                f,
                "invalid {setting}: {value} is not a finite, non-negative tolerance"
            ),
            ConfigError::InvalidPointer { pointer } => {
                write!(
                    f,
                    "invalid JSON pointer {pointer:?}: must be empty or start with '/'"
                )
            }
            ConfigError::MissingSpawner => f.write_str(
                "no executor for shadow work: enable the `tokio` feature or set a spawner",
            ),
            ConfigError::InvalidName { name } => write!(
                f,
                "invalid name {name:?}: use 1 to 64 ASCII letters, digits, '_', '-', '.', ':' or '/'"
            ),
            ConfigError::InvalidModelName { name } => write!(
                f,
                "invalid model name {name:?}: must be non-empty, only ASCII letters, \
                 digits, '-', '.', '_' or '~', and not '.' or '..'"
            ),
            ConfigError::DuplicateModelName { name } => {
                write!(f, "model name {name:?} is already in the fleet")
            }
            ConfigError::MissingToken => {
                f.write_str("the admin service needs a non-empty bearer token")
            }
            ConfigError::InvalidToken => {
                f.write_str("invalid bearer token: only visible ASCII characters are allowed")
            }
            ConfigError::AdminTarget { given } => write!(
                f,
                "the admin service needs exactly one of a handle or a fleet (given: {given})"
            ),
            ConfigError::InvalidVersion { label } => write!(
                f,
                "invalid version label {label:?}: use 1 to 64 ASCII letters, digits, '_', '-', '.', ':' or '/'"
            ),
            ConfigError::DuplicateVersion { label } => {
                write!(f, "both colors were given version label {label:?}")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// Checks that `value` is a finite fraction in `0..=1`.
pub(crate) fn check_fraction(setting: &'static str, value: f64) -> Result<f64, ConfigError> {
    if value.is_finite() && (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::InvalidFraction { setting, value })
    }
}

/// Parses a header name given by the user.
pub(crate) fn header_name<K>(
    setting: &'static str,
    name: K,
) -> Result<http::HeaderName, ConfigError>
where
    K: TryInto<http::HeaderName>,
    K: Clone + fmt::Debug,
{
    let shown = format!("{name:?}");
    name.try_into().map_err(|_| ConfigError::InvalidHeaderName {
        setting,
        name: shown.trim_matches('"').to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_at_the_edges() {
        assert_eq!(check_fraction("x", 0.0), Ok(0.0));
        assert_eq!(check_fraction("x", 1.0), Ok(1.0));
        assert_eq!(check_fraction("x", -0.0), Ok(-0.0));
        for bad in [f64::NAN, f64::INFINITY, -f64::INFINITY, -1e-12, 1.0 + 1e-12] {
            assert!(check_fraction("x", bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn bad_header_names_are_typed_errors() {
        let err = header_name("sticky header", "bad header").unwrap_err();
        assert_eq!(
            err,
            ConfigError::InvalidHeaderName {
                setting: "sticky header",
                name: "bad header".into()
            }
        );
        assert!(header_name("h", "x-user").is_ok());
        assert!(header_name("h", "").is_err());
    }
}
