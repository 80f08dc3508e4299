//! The admin API over HTTP: one blocking request per call, the answer read
//! as JSON, and every failure turned into a [`Failure`] that names it.

use std::time::Duration;

use serde_json::Value;
use ureq::http::{Response, StatusCode};

use crate::args::Connection;
use crate::failure::{Failure, Kind};

/// The largest answer read: a fleet's status with its comparisons fits many
/// times over.
const MAX_ANSWER_BYTES: u64 = 16 * 1024 * 1024;

/// A client of one admin endpoint, addressing one model or the whole admin.
#[derive(Debug)]
pub(crate) struct AdminClient {
    agent: ureq::Agent,
    /// The base URL without a trailing `/`.
    base: String,
    authorization: String,
    timeout: Duration,
    /// `/models/{name}` when `--model` was given, else empty.
    model_prefix: String,
}

impl AdminClient {
    /// Checks the URL and token (usage failures when missing or unusable).
    pub(crate) fn new(conn: &Connection, model: Option<&str>) -> Result<AdminClient, Failure> {
        let url = conn
            .url
            .as_deref()
            .filter(|u| !u.is_empty())
            .ok_or_else(|| {
                Failure::usage(
                    "no admin URL: pass --url http://HOST:PORT/admin or set ROLLOUT_ADMIN_URL",
                )
            })?;
        let base = check_url(url)?;
        let token = conn
            .token
            .as_deref()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Failure::usage("no admin token: pass --token or set ROLLOUT_ADMIN_TOKEN")
            })?;
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Failure::usage(
                "the admin token must be visible ASCII characters (no spaces)",
            ));
        }
        let agent = ureq::Agent::config_builder()
            // Error statuses are answers: their JSON says what went wrong.
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(conn.timeout))
            .user_agent(concat!("rollout/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Ok(AdminClient {
            agent,
            base,
            authorization: format!("Bearer {token}"),
            timeout: conn.timeout,
            model_prefix: model.map(|m| format!("/models/{m}")).unwrap_or_default(),
        })
    }

    /// The base URL, as given (without a trailing `/`).
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// `GET {base}{model}/{route}`.
    pub(crate) fn get(&self, route: &str) -> Result<Value, Failure> {
        let url = self.url(route);
        let answer = self
            .agent
            .get(&url)
            .header("authorization", &self.authorization)
            .header("accept", "application/json")
            .call();
        self.read(&url, answer, self.not_found_hint())
    }

    /// `POST {base}{model}/{route}` with a JSON body.
    pub(crate) fn post(&self, route: &str, body: &[u8]) -> Result<Value, Failure> {
        let url = self.url(route);
        let answer = self
            .agent
            .post(&url)
            .header("authorization", &self.authorization)
            .header("accept", "application/json")
            .content_type("application/json")
            .send(body);
        self.read(&url, answer, self.not_found_hint())
    }

    /// `GET {base}/{route}`, ignoring `--model` (the fleet's own routes).
    pub(crate) fn get_admin(&self, route: &str) -> Result<Value, Failure> {
        let url = format!("{}/{route}", self.base);
        let answer = self
            .agent
            .get(&url)
            .header("authorization", &self.authorization)
            .header("accept", "application/json")
            .call();
        let hint = "this admin serves one model, not a fleet: it has no /models";
        self.read(&url, answer, hint)
    }

    /// What a bare 404 ("not found") of a model's route most likely means.
    fn not_found_hint(&self) -> &'static str {
        if self.model_prefix.is_empty() {
            "a fleet admin needs --model NAME for this (see `rollout models`)"
        } else {
            "a one-model admin takes no --model"
        }
    }

    fn url(&self, route: &str) -> String {
        format!("{}{}/{route}", self.base, self.model_prefix)
    }

    /// The answer's JSON, or the failure it (or its absence) means.
    fn read(
        &self,
        url: &str,
        answer: Result<Response<ureq::Body>, ureq::Error>,
        not_found_hint: &str,
    ) -> Result<Value, Failure> {
        let mut res = answer.map_err(|e| self.transport_failure(url, e))?;
        let status = res.status();
        let text = res
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_to_string()
            .map_err(|e| self.transport_failure(url, e))?;
        let json = serde_json::from_str::<Value>(&text).ok();
        if status.is_success() {
            return json.ok_or_else(|| {
                Failure::new(
                    Kind::Other,
                    format!(
                        "{url} answered {status} but not with the admin's JSON \
                         (is --url the admin's base, e.g. http://HOST:PORT/admin?)"
                    ),
                )
            });
        }
        Err(status_failure(url, status, json.as_ref(), not_found_hint))
    }

    fn transport_failure(&self, url: &str, e: ureq::Error) -> Failure {
        let (kind, what) = match e {
            ureq::Error::Timeout(_) => (
                Kind::Unreachable,
                format!(
                    "no answer within {} s (--timeout)",
                    self.timeout.as_secs_f64()
                ),
            ),
            ureq::Error::Io(e) => (Kind::Unreachable, format!("cannot connect: {e}")),
            ureq::Error::HostNotFound => (Kind::Unreachable, "host not found".into()),
            ureq::Error::ConnectionFailed => (Kind::Unreachable, "connection failed".into()),
            ureq::Error::BadUri(why) => (Kind::Usage, format!("bad --url: {why}")),
            ureq::Error::Http(e) => (Kind::Usage, format!("cannot make the request: {e}")),
            ureq::Error::BodyExceedsLimit(n) => (
                Kind::Other,
                format!("the answer is larger than {n} bytes: not the admin's"),
            ),
            other => (Kind::Other, other.to_string()),
        };
        Failure::new(kind, format!("{url}: {what}"))
    }
}

/// An error status as a failure: the server's `error` message (and the plan
/// document's `field`) passed through, with a hint where one helps.
fn status_failure(
    url: &str,
    status: StatusCode,
    json: Option<&Value>,
    not_found_hint: &str,
) -> Failure {
    let kind = Kind::of_status(status.as_u16());
    let Some(message) = json.and_then(|j| j.get("error")).and_then(Value::as_str) else {
        let hint = if status == StatusCode::NOT_FOUND {
            " (is --url the admin's base, e.g. http://HOST:PORT/admin?)"
        } else {
            ""
        };
        return Failure::new(
            kind,
            format!("{url} answered {status}, not the admin's JSON{hint}"),
        );
    };
    let mut text = format!("{status}: {message}");
    if let Some(field) = json.and_then(|j| j.get("field")).and_then(Value::as_str) {
        if !field.is_empty() && !message.contains(field) {
            text.push_str(&format!(" (field {field})"));
        }
    }
    match kind {
        Kind::Unauthorized => text.push_str(" (check --token or ROLLOUT_ADMIN_TOKEN)"),
        Kind::NotFound if message == "not found" => {
            text.push_str(&format!(" ({url}: {not_found_hint})"))
        }
        _ => {}
    }
    Failure::new(kind, text)
}

/// `http://host[:port][/path]` without a trailing `/`; https and other
/// schemes are usage errors (this build speaks plain http).
fn check_url(url: &str) -> Result<String, Failure> {
    if url.starts_with("https://") {
        return Err(Failure::usage(format!(
            "{url}: https is not supported (plain http only); reach a TLS admin \
             through a tunnel such as `ssh -L` or `kubectl port-forward`"
        )));
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(Failure::usage(format!(
            "{url:?} is not an http URL such as http://127.0.0.1:3000/admin"
        )));
    };
    if rest.is_empty() || rest.starts_with('/') || url.contains(['?', '#']) {
        return Err(Failure::usage(format!(
            "{url:?} is not an admin base URL such as http://127.0.0.1:3000/admin"
        )));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn urls_are_checked() {
        assert_eq!(
            check_url("http://127.0.0.1:3000/admin/").unwrap(),
            "http://127.0.0.1:3000/admin"
        );
        for bad in [
            "https://host/admin",
            "127.0.0.1:3000",
            "http://",
            "http:///admin",
            "http://h/admin?x=1",
            "ftp://h",
        ] {
            assert_eq!(check_url(bad).unwrap_err().kind, Kind::Usage, "{bad}");
        }
    }

    #[test]
    fn error_answers_pass_the_server_message_through() {
        let conflict = json!({"error": "conflict: expected generation 0, the state is at 1"});
        let f = status_failure("u", StatusCode::CONFLICT, Some(&conflict), "");
        assert_eq!(f.kind, Kind::Conflict);
        assert_eq!(
            f.message,
            "409 Conflict: conflict: expected generation 0, the state is at 1"
        );

        let plan = json!({"error": "bad document", "field": "steps[0].split"});
        let f = status_failure("u", StatusCode::BAD_REQUEST, Some(&plan), "");
        assert_eq!(f.kind, Kind::Usage);
        assert!(
            f.message.ends_with("(field steps[0].split)"),
            "{}",
            f.message
        );

        let not_found = json!({"error": "not found"});
        let f = status_failure("u", StatusCode::NOT_FOUND, Some(&not_found), "the hint");
        assert_eq!(f.message, "404 Not Found: not found (u: the hint)");

        let f = status_failure("u", StatusCode::BAD_GATEWAY, None, "");
        assert_eq!(f.kind, Kind::Server);
        assert!(f.message.contains("502 Bad Gateway"), "{}", f.message);
    }
}
