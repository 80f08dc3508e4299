use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use serde_json::Value;

use super::auth::{Token, Verdict};
use super::document::{plan_from_json, strict_json};
use super::json::{error_json, fleet_status_json, models_json, status_json};
use crate::control::{self, Change, ControlError, VersionLabel};
use crate::error::ConfigError;
use crate::{Color, Fleet, RolloutHandle};

/// The largest request body read, on every route; a larger one is answered
/// with 413 and changes nothing.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// How long a control route waits for its request body; a body that does
/// not arrive in time is answered with 408 and changes nothing.
pub const BODY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

use tower::BoxError;

/// A tower service with JSON status and control routes for one
/// [`RolloutHandle`] or a [`Fleet`], behind a bearer token. Made by
/// [`Admin::builder`]; see the [module docs](super) for the routes.
///
/// Cheap to clone (one `Arc`). Its `Debug` output never shows the token.
#[derive(Clone)]
pub struct Admin {
    inner: Arc<Inner>,
}

struct Inner {
    token: Token,
    target: Target,
}

enum Target {
    Handle(RolloutHandle),
    Fleet(Fleet),
}

impl Admin {
    /// A builder: set the [`token`](AdminBuilder::token) and one of
    /// [`handle`](AdminBuilder::handle) or [`fleet`](AdminBuilder::fleet).
    pub fn builder() -> AdminBuilder {
        AdminBuilder::default()
    }
}

impl fmt::Debug for Admin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Admin");
        match &self.inner.target {
            Target::Handle(h) => d.field("handle", h),
            Target::Fleet(fleet) => d.field("fleet", fleet),
        };
        d.field("token", &self.inner.token).finish()
    }
}

/// Builds an [`Admin`]. Made by [`Admin::builder`].
#[derive(Default)]
pub struct AdminBuilder {
    token: Option<String>,
    handle: Option<RolloutHandle>,
    fleet: Option<Fleet>,
}

impl AdminBuilder {
    /// The bearer token every request must present
    /// (`Authorization: Bearer <token>`). Required and non-empty; visible
    /// ASCII only. Use a long random secret (32 bytes or more): the service
    /// compares it in constant time but does not limit attempts.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Serves the routes for one handle: `/status`, `/promote`, `/rollback`,
    /// `/split`, `/mirror`.
    pub fn handle(mut self, handle: RolloutHandle) -> Self {
        self.handle = Some(handle);
        self
    }

    /// Serves the routes for a fleet: `/models`, `/status`, and the handle's
    /// routes under `/models/{name}/`. Models inserted into the fleet later
    /// are served too.
    pub fn fleet(mut self, fleet: Fleet) -> Self {
        self.fleet = Some(fleet);
        self
    }

    /// Builds the service.
    ///
    /// # Errors
    /// [`ConfigError::MissingToken`] without a token or with an empty one,
    /// [`ConfigError::InvalidToken`] for a token with other than visible
    /// ASCII characters, [`ConfigError::AdminTarget`] unless exactly one of a
    /// handle or a fleet was given.
    pub fn build(self) -> Result<Admin, ConfigError> {
        let token = Token::new(self.token)?;
        let target = match (self.handle, self.fleet) {
            (Some(h), None) => Target::Handle(h),
            (None, Some(f)) => Target::Fleet(f),
            (None, None) => return Err(ConfigError::AdminTarget { given: "none" }),
            (Some(_), Some(_)) => return Err(ConfigError::AdminTarget { given: "both" }),
        };
        Ok(Admin {
            inner: Arc::new(Inner { token, target }),
        })
    }
}

impl fmt::Debug for AdminBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminBuilder")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("handle", &self.handle)
            .field("fleet", &self.fleet)
            .finish()
    }
}

impl<B> tower_service::Service<Request<B>> for Admin
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = ResponseFuture;

    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> ResponseFuture {
        let inner = self.inner.clone();
        ResponseFuture {
            inner: Box::pin(async move { Ok(inner.respond(req).await) }),
        }
    }
}

type AdminResult = Result<Response<Full<Bytes>>, Infallible>;

/// Response future of [`Admin`].
#[must_use = "futures do nothing unless polled"]
pub struct ResponseFuture {
    inner: Pin<Box<dyn Future<Output = AdminResult> + Send>>,
}

impl Future for ResponseFuture {
    type Output = AdminResult;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

// === routes ===

/// What a route does to a handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Status,
    Promote,
    Rollback,
    Split,
    Mirror,
    PlanPause,
    PlanResume,
    PlanAbort,
    PlanPromote,
    /// `POST /plan`: starts a rollout plan from its JSON document.
    PlanStart,
}

impl Action {
    fn parse(segment: &str) -> Option<Action> {
        Some(match segment {
            "status" => Action::Status,
            "promote" => Action::Promote,
            "rollback" => Action::Rollback,
            "split" => Action::Split,
            "mirror" => Action::Mirror,
            "plan-pause" => Action::PlanPause,
            "plan-resume" => Action::PlanResume,
            "plan-abort" => Action::PlanAbort,
            "plan-promote" => Action::PlanPromote,
            "plan" => Action::PlanStart,
            _ => return None,
        })
    }

    fn method(self) -> Method {
        match self {
            Action::Status => Method::GET,
            _ => Method::POST,
        }
    }
}

enum Route<'a> {
    Handle(RolloutHandle, Action),
    /// `GET /models`
    Models(&'a Fleet),
    /// `GET /status` of a fleet.
    FleetStatus(&'a Fleet),
    UnknownModel(&'a str),
}

impl Route<'_> {
    /// The method the route answers (besides HEAD and OPTIONS).
    fn method(&self) -> Method {
        match self {
            Route::Handle(_, action) => action.method(),
            _ => Method::GET,
        }
    }
}

/// The route for `path`, `None` for an unknown path.
fn route<'a>(target: &'a Target, path: &'a str) -> Option<Route<'a>> {
    let rest = path.strip_prefix('/')?;
    let mut segments = rest.split('/');
    let first = segments.next()?;
    let second = segments.next();
    let third = segments.next();
    if segments.next().is_some() {
        return None;
    }
    match target {
        Target::Handle(h) => match (second, third) {
            (None, None) => Action::parse(first).map(|a| Route::Handle(h.clone(), a)),
            _ => None,
        },
        Target::Fleet(fleet) => match (first, second, third) {
            ("models", None, None) => Some(Route::Models(fleet)),
            ("status", None, None) => Some(Route::FleetStatus(fleet)),
            ("models", Some(name), Some(action)) => {
                let action = Action::parse(action)?;
                Some(match fleet.get(name) {
                    Some(h) => Route::Handle(h, action),
                    None => Route::UnknownModel(name),
                })
            }
            _ => None,
        },
    }
}

impl Inner {
    /// Authenticates, routes, and hands the request to its handler.
    async fn respond<B>(&self, req: Request<B>) -> Response<Full<Bytes>>
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        match self.token.check(req.headers()) {
            Verdict::Allowed => {}
            Verdict::Missing => return unauthorized("missing bearer token", "Bearer"),
            Verdict::Invalid => {
                return unauthorized("invalid bearer token", r#"Bearer error="invalid_token""#)
            }
        }
        let (parts, body) = req.into_parts();
        let Some(route) = route(&self.target, parts.uri.path()) else {
            return error(StatusCode::NOT_FOUND, "not found");
        };
        if let Route::UnknownModel(name) = route {
            return error(StatusCode::NOT_FOUND, &format!("unknown model {name:?}"));
        }
        let method = route.method();
        // HEAD is GET without the body; OPTIONS says what the route takes.
        match parts.method {
            ref m if m == method => {}
            Method::HEAD if method == Method::GET => {
                return head(self.handle(route, &parts.headers, body).await);
            }
            Method::OPTIONS => return options(&method),
            _ => return method_not_allowed(&method),
        }
        self.handle(route, &parts.headers, body).await
    }

    /// The route's handler.
    async fn handle<B>(
        &self,
        route: Route<'_>,
        headers: &http::HeaderMap,
        body: B,
    ) -> Response<Full<Bytes>>
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        let (handle, action) = match route {
            Route::Models(fleet) => return json(StatusCode::OK, &models_json(fleet)),
            Route::FleetStatus(fleet) => return json(StatusCode::OK, &fleet_status_json(fleet)),
            Route::UnknownModel(_) => return error(StatusCode::NOT_FOUND, "not found"),
            Route::Handle(handle, action) => (handle, action),
        };
        if action == Action::Status {
            return json(StatusCode::OK, &status_json(&handle));
        }
        if action == Action::PlanStart {
            return start_plan(&handle, headers, body).await;
        }
        let args = match read_args(action, headers, body).await {
            Ok(args) => args,
            Err(res) => return res,
        };
        let changed = match action {
            Action::Promote | Action::Rollback | Action::Split | Action::Mirror => {
                steer(&handle, action, args).map(|c| c.is_applied())
            }
            _ => match plan_call(&handle, action) {
                None => Ok(true),
                Some(refused) => return refused,
            },
        };
        match changed {
            Ok(changed) => {
                let mut status = status_json(&handle);
                if let Some(doc) = status.as_object_mut() {
                    doc.insert("changed".into(), Value::Bool(changed));
                }
                json(StatusCode::OK, &status)
            }
            Err(e) => control_error(&e),
        }
    }
}

/// `POST /plan`: reads the plan document and starts the plan; 400 naming
/// the field that is wrong, 409 when a plan already runs (or the router
/// cannot run this one).
async fn start_plan<B>(
    handle: &RolloutHandle,
    headers: &http::HeaderMap,
    body: B,
) -> Response<Full<Bytes>>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let bytes = match read_within_deadline(headers, body).await {
        Ok(b) => b,
        Err(res) => return res,
    };
    let plan = match plan_from_json(&bytes) {
        Ok(plan) => plan,
        Err(e) => {
            let mut doc = error_json(&e.to_string());
            if let Some(obj) = doc.as_object_mut() {
                obj.insert("field".into(), Value::String(e.field));
            }
            return json(StatusCode::BAD_REQUEST, &doc);
        }
    };
    match plan.start(handle) {
        Ok(_) => {
            let mut status = status_json(handle);
            if let Some(doc) = status.as_object_mut() {
                doc.insert("changed".into(), Value::Bool(true));
            }
            json(StatusCode::OK, &status)
        }
        Err(e) => error(StatusCode::CONFLICT, &e.to_string()),
    }
}

/// Pauses, resumes, aborts or promotes the running plan: the 409 answer
/// when there is none or it cannot, `None` when done.
fn plan_call(handle: &RolloutHandle, action: Action) -> Option<Response<Full<Bytes>>> {
    let Some(run) = handle.plan() else {
        return Some(error(
            StatusCode::CONFLICT,
            "no rollout plan has run on this router",
        ));
    };
    let done = match action {
        Action::PlanPause => run.pause(),
        Action::PlanResume => run.resume(),
        Action::PlanAbort => run.abort("aborted through the admin endpoint"),
        _ => run.skip_to_promote(),
    };
    if done {
        return None;
    }
    let state = format!("{:?}", run.status().state).to_lowercase();
    Some(error(
        StatusCode::CONFLICT,
        &format!("the rollout plan is {state}: nothing to do"),
    ))
}

/// Reads and parses a control route's body, within [`BODY_DEADLINE`].
async fn read_args<B>(
    action: Action,
    headers: &http::HeaderMap,
    body: B,
) -> Result<Args, Response<Full<Bytes>>>
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
async fn read_within_deadline<B>(
    headers: &http::HeaderMap,
    body: B,
) -> Result<Bytes, Response<Full<Bytes>>>
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

/// Runs a control route's call on `handle`, in its conditional form when the
/// body asked for one.
fn steer(handle: &RolloutHandle, action: Action, args: Args) -> Result<Change, ControlError> {
    let mut call = handle.call();
    if let Some(g) = args.expect {
        call = call.expect_generation(g);
    }
    if args.force {
        call = call.force();
    }
    match action {
        Action::Promote => match args.to {
            Some(to) => call.promote_to(to),
            None => call.promote(),
        },
        Action::Rollback => call.rollback(),
        Action::Split => call.set_split(args.fraction.unwrap_or(f64::NAN)),
        _ => call.mirror_standby(args.fraction.unwrap_or(f64::NAN)),
    }
}

/// A control call's refusal, as a JSON error: 400 for a bad value, 409 when
/// the state does not allow it (with `reason`, and for a conflict the
/// generations).
fn control_error(e: &ControlError) -> Response<Full<Bytes>> {
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

/// The JSON body of a control route: `{"to": "green"}` or `{"version":
/// "iris-v3"}` and `{"force": true}` for a promote, `{"fraction": 0.1}` for
/// a split or mirror, and `{"expect_generation": 7}` for any of them. An
/// empty body is `{}`.
#[derive(Debug, Default)]
struct Args {
    to: Option<control::Target>,
    fraction: Option<f64>,
    expect: Option<u64>,
    force: bool,
}

impl Args {
    /// Parses `bytes` for `action`; any field the action does not take is an
    /// error, so a typo never goes unnoticed.
    fn parse(action: Action, bytes: &[u8]) -> Result<Args, String> {
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
async fn read_body<B>(headers: &http::HeaderMap, body: B) -> Result<Bytes, Response<Full<Bytes>>>
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

// === responses ===

fn json(status: StatusCode, value: &Value) -> Response<Full<Bytes>> {
    // Serializing a `Value` cannot fail: its map keys are strings.
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = status;
    let headers = res.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // Status changes with every request; control answers must not be cached.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json(status, &error_json(message))
}

fn unauthorized(message: &str, challenge: &'static str) -> Response<Full<Bytes>> {
    let mut res = error(StatusCode::UNAUTHORIZED, message);
    res.headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    res
}

/// What a route answers to, for `Allow`.
fn allow(method: &Method) -> HeaderValue {
    if method == Method::GET {
        HeaderValue::from_static("GET, HEAD, OPTIONS")
    } else {
        HeaderValue::from_static("POST, OPTIONS")
    }
}

fn method_not_allowed(allowed: &Method) -> Response<Full<Bytes>> {
    let mut res = error(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("method not allowed: use {allowed}"),
    );
    res.headers_mut().insert(ALLOW, allow(allowed));
    res
}

/// `OPTIONS`: no body, the methods in `Allow`.
fn options(method: &Method) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::new()));
    *res.status_mut() = StatusCode::NO_CONTENT;
    res.headers_mut().insert(ALLOW, allow(method));
    res
}

/// A GET's answer without its body, its length kept in `Content-Length`.
fn head(res: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    let (mut parts, body) = res.into_parts();
    let len = body.size_hint().exact().unwrap_or(0);
    parts.headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
    Response::from_parts(parts, Full::new(Bytes::new()))
}

#[cfg(test)]
mod tests {
    use futures_util::stream;
    use http_body::Frame;
    use http_body_util::StreamBody;
    use proptest::prelude::*;
    use tower::ServiceExt;

    use super::*;

    const TOKEN: &str = "unit-test-token";

    /// An admin for one handle, one for a fleet holding it as `m`, the handle.
    fn admin() -> (Admin, Admin, RolloutHandle) {
        let svc = tower::service_fn(|_: Request<crate::mirror::MirrorBody<String>>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        });
        let (_, h) = crate::BlueGreenRouter::new(svc, svc);
        let fleet = Fleet::new();
        fleet.insert("m", h.clone()).unwrap();
        let one = Admin::builder()
            .token(TOKEN)
            .handle(h.clone())
            .build()
            .unwrap();
        let many = Admin::builder().token(TOKEN).fleet(fleet).build().unwrap();
        (one, many, h)
    }

    /// Sends `body` as chunks of a body of unknown length (no content-length).
    fn streamed(
        chunks: Vec<Result<Bytes, std::io::Error>>,
    ) -> Request<impl Body<Data = Bytes, Error = std::io::Error> + Send + 'static> {
        let body = StreamBody::new(stream::iter(chunks.into_iter().map(|c| c.map(Frame::data))));
        Request::post("/split")
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(body)
            .unwrap()
    }

    fn req(method: Method, path: &str, body: &str) -> Request<String> {
        Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(body.to_owned())
            .unwrap()
    }

    fn body_of(res: Response<Full<Bytes>>) -> Bytes {
        futures_executor::block_on(res.into_body().collect())
            .unwrap()
            .to_bytes()
    }

    #[test]
    fn head_options_and_duplicate_keys() {
        let (admin, many, h) = admin();
        let call = |a: &Admin, r| futures_executor::block_on(a.clone().oneshot(r)).unwrap();

        let get = call(&admin, req(Method::GET, "/status", ""));
        let get_len = body_of(get).len();
        let head = call(&admin, req(Method::HEAD, "/status", ""));
        assert_eq!(head.status(), StatusCode::OK);
        assert_eq!(head.headers()[CONTENT_LENGTH], get_len.to_string().as_str());
        assert!(body_of(head).is_empty());
        let head = call(&many, req(Method::HEAD, "/models", ""));
        assert_eq!(head.status(), StatusCode::OK);

        let opt = call(&admin, req(Method::OPTIONS, "/promote", ""));
        assert_eq!(opt.status(), StatusCode::NO_CONTENT);
        assert_eq!(opt.headers()[ALLOW], "POST, OPTIONS");
        let opt = call(&many, req(Method::OPTIONS, "/models/m/status", ""));
        assert_eq!(opt.headers()[ALLOW], "GET, HEAD, OPTIONS");
        let wrong = call(&admin, req(Method::HEAD, "/promote", ""));
        assert_eq!(wrong.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(wrong.headers()[ALLOW], "POST, OPTIONS");

        let dup = call(
            &admin,
            req(Method::POST, "/promote", r#"{"to": "blue", "to": "green"}"#),
        );
        assert_eq!(dup.status(), StatusCode::BAD_REQUEST);
        let msg = String::from_utf8(body_of(dup).to_vec()).unwrap();
        assert!(msg.contains("duplicate field"), "{msg}");
        assert_eq!(h.active(), Color::Blue, "nothing changed");
        assert_eq!(h.generation(), 0);
    }

    #[test]
    fn a_large_body_on_any_control_route_is_413_and_changes_nothing() {
        let (admin, _, h) = admin();
        let huge = " ".repeat(10 * 1024 * 1024);
        for path in ["/promote", "/rollback", "/split", "/plan-abort"] {
            let res =
                futures_executor::block_on(admin.clone().oneshot(req(Method::POST, path, &huge)))
                    .unwrap();
            assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE, "{path}");
        }
        assert_eq!((h.active(), h.generation()), (Color::Blue, 0));
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_body_that_never_arrives_is_408() {
        let (admin, _, h) = admin();
        let never = StreamBody::new(stream::pending::<Result<Frame<Bytes>, std::io::Error>>());
        let r = Request::post("/promote")
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(never)
            .unwrap();
        let started = tokio::time::Instant::now();
        let res = admin.oneshot(r).await.unwrap();
        assert_eq!(res.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(started.elapsed(), BODY_DEADLINE);
        assert_eq!((h.active(), h.generation()), (Color::Blue, 0));
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_plan_is_started_from_its_document() {
        let (admin, many, h) = admin();
        let post = |a: &Admin, path: &str, body: &str| {
            let a = a.clone();
            let r = req(Method::POST, path, body);
            async move {
                let res = a.oneshot(r).await.unwrap();
                let status = res.status();
                let bytes = res.into_body().collect().await.unwrap().to_bytes();
                (status, serde_json::from_slice::<Value>(&bytes).unwrap())
            }
        };
        let bad = [
            (r#"{"steps": [{"split": 0.1}]}"#, "steps[0].bake_seconds"),
            (
                r#"{"steps": [{"split": 0.1, "bake_seconds": 5, "bake": 3}]}"#,
                "steps[0].bake",
            ),
            (
                r#"{"steps": [{"split": 0.1, "bake_seconds": 5}], "gates": [{"type": "speed", "min_sample": 1}]}"#,
                "gates[0].type",
            ),
            (
                r#"{"steps": [{"split": 0.1, "bake_seconds": 5}], "gates": [{"type": "error_rate", "max": 0.01}]}"#,
                "gates[0].min_sample",
            ),
            (r#"{"mirror": {"fraction": 1.0}, "steps": []}"#, "mirror"),
            (
                r#"{"steps": [{"split": 0.1, "bake_seconds": 5}], "steps": []}"#,
                "",
            ),
            (r#"{"steps": [{"split": 1.5, "bake_seconds": 5}]}"#, "steps"),
        ];
        for (doc, field) in bad {
            let (status, body) = post(&admin, "/plan", doc).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{doc}: {body}");
            assert_eq!(body["field"], field, "{doc}: {body}");
        }
        assert!(
            h.plan_status().is_none(),
            "no bad document started anything"
        );

        let good = r#"{
            "steps": [{"split": 0.1, "bake_seconds": 30}, {"split": 0.5, "bake_seconds": 30}],
            "gates": [{"type": "error_rate", "max": 0.01, "min_sample": 10}],
            "interval_ms": 500
        }"#;
        let (status, body) = post(&admin, "/plan", good).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["changed"], true);
        let plan = h.plan_status().expect("the plan runs");
        assert!(!plan.state.is_finished());
        assert_eq!(body["plan_running"], true);
        let (status, body) = post(&many, "/models/m/plan", good).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        h.plan().unwrap().abort("test over");
    }

    #[test]
    fn streamed_bodies_are_capped_and_their_errors_are_400() {
        let (admin, _, h) = admin();
        let call = |req| futures_executor::block_on(admin.clone().oneshot(req)).unwrap();

        let chunk = Bytes::from(vec![b' '; 16 * 1024]);
        let mut chunks: Vec<_> = (0..5).map(|_| Ok(chunk.clone())).collect();
        chunks.push(Ok(Bytes::from_static(br#"{"fraction": 0.5}"#)));
        assert_eq!(
            call(streamed(chunks)).status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );

        let failing = vec![
            Ok(Bytes::from_static(b"{")),
            Err(std::io::Error::other("reset")),
        ];
        assert_eq!(call(streamed(failing)).status(), StatusCode::BAD_REQUEST);

        // Just under the cap (whitespace is valid JSON padding): accepted.
        let mut chunks: Vec<_> = (0..3).map(|_| Ok(chunk.clone())).collect();
        chunks.push(Ok(Bytes::from_static(br#"{"fraction": 0.5}"#)));
        assert_eq!(call(streamed(chunks)).status(), StatusCode::OK);
        assert_eq!(h.status().split, 0.5);
    }

    proptest! {
        /// Whatever the method, path, token and body: an answer with a known
        /// status and a JSON body (no body for HEAD and OPTIONS), never a
        /// panic.
        #[test]
        fn any_request_gets_a_json_answer(
            method in prop::sample::select(vec![Method::GET, Method::POST, Method::PUT, Method::DELETE, Method::HEAD, Method::OPTIONS]),
            segments in prop::collection::vec(prop::sample::select(vec![
                "status", "promote", "rollback", "split", "mirror", "models", "m", "x", "", "%2e", "..",
            ]), 0..4),
            authorized in any::<bool>(),
            body in prop::collection::vec(any::<u8>(), 0..64),
            fraction in prop::option::of(any::<f64>()),
        ) {
            let (one, many, _) = admin();
            let path = format!("/{}", segments.join("/"));
            let body = match fraction {
                Some(f) => Bytes::from(format!(r#"{{"fraction": {f}}}"#)),
                None => Bytes::from(body),
            };
            for admin in [one, many] {
                let mut req = Request::builder().method(method.clone()).uri(&path);
                if authorized {
                    req = req.header("authorization", format!("Bearer {TOKEN}"));
                }
                let req = req.body(Full::new(body.clone())).unwrap();
                let res = futures_executor::block_on(admin.oneshot(req)).unwrap();
                let status = res.status().as_u16();
                prop_assert!([200, 204, 400, 401, 404, 405, 409, 413].contains(&status), "{status}");
                prop_assert_eq!(status == 401, !authorized);
                let bodiless = (method == Method::HEAD && status == 200) || status == 204;
                let bytes = futures_executor::block_on(res.into_body().collect()).unwrap().to_bytes();
                if bodiless {
                    prop_assert!(bytes.is_empty());
                } else {
                    prop_assert!(serde_json::from_slice::<Value>(&bytes).is_ok());
                }
            }
        }
    }

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

    #[test]
    fn routes_for_a_handle_and_a_fleet() {
        let svc = tower::service_fn(|_: Request<crate::mirror::MirrorBody<String>>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        });
        let (_, h) = crate::BlueGreenRouter::new(svc, svc);
        let one = Target::Handle(h.clone());
        let action = |r: Option<Route<'_>>| match r {
            Some(Route::Handle(_, a)) => Some(a),
            _ => None,
        };
        assert_eq!(action(route(&one, "/status")), Some(Action::Status));
        assert_eq!(action(route(&one, "/split")), Some(Action::Split));
        for unknown in [
            "",
            "/",
            "/status/",
            "/Status",
            "//status",
            "/models",
            "/x/status",
        ] {
            assert!(route(&one, unknown).is_none(), "{unknown:?}");
        }

        let fleet = Fleet::new();
        fleet.insert("m1", h).unwrap();
        let many = Target::Fleet(fleet);
        assert!(matches!(route(&many, "/models"), Some(Route::Models(_))));
        assert!(matches!(
            route(&many, "/status"),
            Some(Route::FleetStatus(_))
        ));
        assert_eq!(
            action(route(&many, "/models/m1/promote")),
            Some(Action::Promote)
        );
        assert!(matches!(
            route(&many, "/models/m2/promote"),
            Some(Route::UnknownModel("m2"))
        ));
        for unknown in [
            "/promote",
            "/models/m1",
            "/models/m1/",
            "/models/m1/x",
            "/models/m1/status/x",
        ] {
            assert!(route(&many, unknown).is_none(), "{unknown:?}");
        }
    }

    #[test]
    fn building_needs_a_token_and_one_target() {
        let svc = tower::service_fn(|_: Request<crate::mirror::MirrorBody<String>>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        });
        let (_, h) = crate::BlueGreenRouter::new(svc, svc);
        let err = |b: AdminBuilder| b.build().unwrap_err();
        assert_eq!(
            err(Admin::builder().handle(h.clone())),
            ConfigError::MissingToken
        );
        assert_eq!(
            err(Admin::builder().token("").handle(h.clone())),
            ConfigError::MissingToken
        );
        assert_eq!(
            err(Admin::builder().token("a b").handle(h.clone())),
            ConfigError::InvalidToken
        );
        assert_eq!(
            err(Admin::builder().token("t")),
            ConfigError::AdminTarget { given: "none" }
        );
        assert_eq!(
            err(Admin::builder()
                .token("t")
                .handle(h.clone())
                .fleet(Fleet::new())),
            ConfigError::AdminTarget { given: "both" }
        );
        let admin = Admin::builder()
            .token("very-secret")
            .handle(h)
            .build()
            .unwrap();
        let shown = format!("{admin:?} {:?}", Admin::builder().token("very-secret"));
        assert!(!shown.contains("very-secret"), "{shown}");
    }
}
