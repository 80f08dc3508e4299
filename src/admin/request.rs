//! Reading a control route's request: its body, within a size limit and a
//! deadline, and the JSON arguments it carries.

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::StatusCode;
use http_body::Body;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::Value;
use tower::BoxError;

use super::reply::{error, Reply};
use super::routes::Action;
use crate::control::{self, VersionLabel};
use crate::plan::document::strict_json;
use crate::Color;

/// The largest request body read, on every route; a larger one is answered
/// with 413 and changes nothing.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// How long a control route waits for its request body; a body that does
/// not arrive in time is answered with 408 and changes nothing.
pub const BODY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads and parses a control route's body, within [`BODY_DEADLINE`].
pub(crate) async fn read_args<B>(
    action: Action,
    headers: &http::HeaderMap,
    body: B,
) -> Result<Args, Reply>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let bytes = read_within_deadline(headers, body).await?;
    Args::parse(action, &bytes).map_err(|msg| error(StatusCode::BAD_REQUEST, &msg))
}

/// Reads a request body within [`BODY_DEADLINE`] (408 after it). Outside a
/// tokio runtime (a test driving the service by hand) there is no timer:
/// the body is read without a deadline.
pub(crate) async fn read_within_deadline<B>(
    headers: &http::HeaderMap,
    body: B,
) -> Result<Bytes, Reply>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let read = read_body(headers, body);
    if tokio::runtime::Handle::try_current().is_err() {
        return read.await;
    }
    match tokio::time::timeout(BODY_DEADLINE, read).await {
        Ok(read) => read,
        Err(_) => Err(error(
            StatusCode::REQUEST_TIMEOUT,
            &format!(
                "the request body did not arrive within {} s",
                BODY_DEADLINE.as_secs()
            ),
        )),
    }
}

/// The JSON body of a control route: `{"to": "green"}` or `{"version":
/// "iris-v3"}` and `{"force": true}` for a promote, `{"fraction": 0.1}` for
/// a split or mirror, and `{"expect_generation": 7}` for any of them. An
/// empty body is `{}`.
#[derive(Debug, Default)]
pub(crate) struct Args {
    pub(crate) to: Option<control::Target>,
    pub(crate) fraction: Option<f64>,
    pub(crate) expect: Option<u64>,
    pub(crate) force: bool,
}

impl Args {
    /// Parses `bytes` for `action`; any field the action does not take is an
    /// error, so a typo never goes unnoticed.
    pub(crate) fn parse(action: Action, bytes: &[u8]) -> Result<Args, String> {
        let fields = if bytes.iter().all(u8::is_ascii_whitespace) {
            serde_json::Map::new()
        } else {
            // Duplicate keys refused: `{"to": "blue", "to": "green"}` must
            // not silently mean green.
            match strict_json(bytes)? {
                Value::Object(fields) => fields,
                _ => return Err(r#"expected a JSON object such as {"fraction": 0.1}"#.into()),
            }
        };
        let allowed: &[&str] = match action {
            Action::Promote => &["to", "version", "force", "expect_generation"],
            Action::Rollback => &["expect_generation"],
            Action::Split | Action::Mirror => &["fraction", "expect_generation"],
            Action::Deploy => &["version", "expect_generation"],
            _ => &[],
        };
        if let Some(unknown) = fields.keys().find(|k| !allowed.contains(&k.as_str())) {
            let expected = if allowed.is_empty() {
                "no fields".to_owned()
            } else {
                allowed
                    .iter()
                    .map(|f| format!("{f:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(format!("unknown field {unknown:?}: expected {expected}"));
        }
        let mut args = Args::default();
        if let Some(v) = fields.get("expect_generation") {
            args.expect = Some(v.as_u64().ok_or_else(|| {
                format!("\"expect_generation\" must be a generation (a whole number), got {v}")
            })?);
        }
        if let Some(v) = fields.get("force") {
            args.force = v
                .as_bool()
                .ok_or_else(|| format!("\"force\" must be true or false, got {v}"))?;
        }
        match (fields.get("to"), fields.get("version")) {
            (Some(_), Some(_)) => return Err(r#"give "to" or "version", not both"#.into()),
            (Some(v), None) => {
                let color = v
                    .as_str()
                    .and_then(|s| s.parse::<Color>().ok())
                    .ok_or_else(|| format!("\"to\" must be \"blue\" or \"green\", got {v}"))?;
                args.to = Some(control::Target::Color(color));
            }
            (None, Some(v)) => {
                let label = v
                    .as_str()
                    .ok_or_else(|| format!("\"version\" must be a version label, got {v}"))?;
                let label = VersionLabel::new(label).map_err(|e| e.to_string())?;
                args.to = Some(control::Target::Version(label));
            }
            (None, None) => {}
        }
        if action == Action::Deploy && args.to.is_none() {
            return Err(r#"missing field "version""#.into());
        }
        if matches!(action, Action::Split | Action::Mirror) {
            args.fraction = Some(match fields.get("fraction") {
                None => return Err(r#"missing field "fraction""#.into()),
                Some(v) => v
                    .as_f64()
                    .ok_or_else(|| format!("\"fraction\" must be a number, got {v}"))?,
            });
        }
        Ok(args)
    }
}

/// Reads a request body of at most [`MAX_BODY_BYTES`].
async fn read_body<B>(headers: &http::HeaderMap, body: B) -> Result<Bytes, Reply>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("request body larger than {MAX_BODY_BYTES} bytes"),
        )
    };
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(too_large()),
        Err(_) => Err(error(
            StatusCode::BAD_REQUEST,
            "could not read the request body",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_fraction(bytes: &[u8]) -> Result<f64, String> {
        Args::parse(Action::Split, bytes).map(|a| a.fraction.expect("required"))
    }

    #[test]
    fn fractions_are_parsed_strictly() {
        assert_eq!(parse_fraction(br#"{"fraction": 0.1}"#), Ok(0.1));
        assert_eq!(parse_fraction(br#"{"fraction": 1}"#), Ok(1.0));
        assert_eq!(
            parse_fraction(br#"{"fraction": 7}"#),
            Ok(7.0),
            "range: the handle's"
        );
        for (body, says) in [
            (&b""[..], "missing field"),
            (b"{", "invalid JSON"),
            (b"{\"fraction\": NaN}", "invalid JSON"),
            (b"{\"fraction\": 1e999}", "invalid JSON"),
            (b"[0.1]", "expected a JSON object"),
            (b"0.1", "expected a JSON object"),
            (b"{}", "missing field"),
            (b"{\"fracton\": 0.1}", "unknown field \"fracton\""),
            (
                b"{\"fraction\": 0.1, \"expect_generation\": -1}",
                "a generation",
            ),
            (b"{\"fraction\": 0.1, \"x\": 1}", "unknown field \"x\""),
            (b"{\"fraction\": \"0.1\"}", "must be a number"),
            (b"{\"fraction\": null}", "must be a number"),
        ] {
            let err = parse_fraction(body).unwrap_err();
            assert!(err.contains(says), "{body:?}: {err}");
        }
    }
}
