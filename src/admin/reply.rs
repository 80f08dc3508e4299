//! The admin's answers: [`AdminBody`] and the responses every route shares
//! (JSON documents, errors, `Allow`, HEAD).

use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, Method, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use serde_json::Value;
use tokio::sync::mpsc;

use super::json::error_json;
use super::routes::NoRoute;
use crate::control::ControlError;

/// The body of the [`Admin`](super::Admin)'s answers: a whole document, or
/// the server-sent events of `GET /events`, which end when the client stops
/// reading, goes away, or the admin is dropped.
pub struct AdminBody {
    kind: Kind,
}

enum Kind {
    /// The whole body; `None` once sent.
    Full(Option<Bytes>),
    /// Encoded events from the stream's task (a bounded channel).
    Events(mpsc::Receiver<Bytes>),
}

impl AdminBody {
    pub(crate) fn full(bytes: impl Into<Bytes>) -> AdminBody {
        let bytes = bytes.into();
        AdminBody {
            kind: Kind::Full((!bytes.is_empty()).then_some(bytes)),
        }
    }

    pub(crate) fn empty() -> AdminBody {
        AdminBody {
            kind: Kind::Full(None),
        }
    }

    pub(crate) fn events(rx: mpsc::Receiver<Bytes>) -> AdminBody {
        AdminBody {
            kind: Kind::Events(rx),
        }
    }
}

impl Body for AdminBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut self.get_mut().kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Events(rx) => rx
                .poll_recv(cx)
                .map(|event| event.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.kind, Kind::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Events(_) => SizeHint::default(),
        }
    }
}

impl fmt::Debug for AdminBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Full(b) => f
                .debug_struct("AdminBody")
                .field("len", &b.as_ref().map_or(0, Bytes::len))
                .finish(),
            Kind::Events(_) => f.debug_struct("AdminBody").field("events", &true).finish(),
        }
    }
}

/// A response of the admin.
pub(crate) type Reply = Response<AdminBody>;

pub(crate) fn json(status: StatusCode, value: &Value) -> Reply {
    // Serializing a `Value` cannot fail: its map keys are strings.
    json_bytes(status, serde_json::to_vec(value).unwrap_or_default())
}

/// A JSON answer from its encoded body.
pub(crate) fn json_bytes(status: StatusCode, body: Vec<u8>) -> Reply {
    let mut res = Response::new(AdminBody::full(body));
    *res.status_mut() = status;
    let headers = res.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // Status changes with every request; control answers must not be cached.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

pub(crate) fn error(status: StatusCode, message: &str) -> Reply {
    json(status, &error_json(message))
}

pub(crate) fn unauthorized(message: &str, challenge: &'static str) -> Reply {
    let mut res = error(StatusCode::UNAUTHORIZED, message);
    res.headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    res
}

/// The answer to a request without a route.
pub(crate) fn no_route(why: NoRoute) -> Reply {
    match why {
        NoRoute::NotFound => error(StatusCode::NOT_FOUND, "not found"),
        NoRoute::UnknownModel(name) => {
            error(StatusCode::NOT_FOUND, &format!("unknown model {name:?}"))
        }
        NoRoute::WrongMethod(allowed) => method_not_allowed(&allowed),
        NoRoute::Options(allowed) => options(&allowed),
    }
}

/// What a route answers to, for `Allow`.
fn allow(method: &Method) -> HeaderValue {
    if method == Method::GET {
        HeaderValue::from_static("GET, HEAD, OPTIONS")
    } else {
        HeaderValue::from_static("POST, OPTIONS")
    }
}

pub(crate) fn method_not_allowed(allowed: &Method) -> Reply {
    let mut res = error(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("method not allowed: use {allowed}"),
    );
    res.headers_mut().insert(ALLOW, allow(allowed));
    res
}

/// `OPTIONS`: no body, the methods in `Allow`.
pub(crate) fn options(method: &Method) -> Reply {
    let mut res = Response::new(AdminBody::empty());
    *res.status_mut() = StatusCode::NO_CONTENT;
    res.headers_mut().insert(ALLOW, allow(method));
    res
}

/// A GET's answer without its body, its length kept in `Content-Length`
/// when it has one (an event stream has none).
pub(crate) fn head(res: Reply) -> Reply {
    let (mut parts, body) = res.into_parts();
    if let Some(len) = body.size_hint().exact() {
        parts.headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
    }
    Response::from_parts(parts, AdminBody::empty())
}

/// A control call's refusal, as a JSON error: 400 for a bad value, 409 when
/// the state does not allow it (with `reason`, and for a conflict the
/// generations).
pub(crate) fn control_error(e: &ControlError) -> Reply {
    let (status, reason) = match e {
        ControlError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid"),
        ControlError::Conflict { .. } => (StatusCode::CONFLICT, "conflict"),
        ControlError::NotReady { .. } => (StatusCode::CONFLICT, "not_ready"),
        ControlError::UnknownVersion { .. } => (StatusCode::CONFLICT, "unknown_version"),
        ControlError::NoMirror => (StatusCode::CONFLICT, "no_mirror"),
    };
    let mut doc = error_json(&e.to_string());
    if let Some(obj) = doc.as_object_mut() {
        obj.insert("reason".into(), Value::from(reason));
        if let ControlError::Conflict { expected, actual } = e {
            obj.insert("expected_generation".into(), Value::from(*expected));
            obj.insert("generation".into(), Value::from(*actual));
        }
    }
    json(status, &doc)
}
