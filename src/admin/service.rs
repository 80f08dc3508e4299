//! [`Admin`], its builder and its tower `Service`: authentication, routing
//! and the handler, in that order, for each request.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Request;
use http_body::Body;
use tower::BoxError;

use super::assets;
use super::auth::Token;
use super::handlers;
use super::reply::{head, no_route, AdminBody, Reply};
use super::routes::{self, Target};
use super::shared::Shared;
use crate::error::ConfigError;
use crate::{Fleet, RolloutHandle};

/// A tower service with the dashboard, JSON status and control routes for
/// one [`RolloutHandle`] or a [`Fleet`], behind a bearer token. Made by
/// [`Admin::builder`]; see the [module docs](super) for the routes.
///
/// Cheap to clone (one `Arc`). Its `Debug` output never shows the token.
#[derive(Clone)]
pub struct Admin {
    inner: Arc<Inner>,
}

struct Inner {
    token: Token,
    shared: Arc<Shared>,
}

impl Admin {
    /// A builder: set the [`token`](AdminBuilder::token) and one of
    /// [`handle`](AdminBuilder::handle) or [`fleet`](AdminBuilder::fleet).
    pub fn builder() -> AdminBuilder {
        AdminBuilder::default()
    }

    /// Ends every open event stream (`GET /events`) within a quarter of a
    /// second and answers new ones with 503. A dashboard keeps its stream
    /// open for as long as it is shown, so a graceful shutdown
    /// (`axum::serve(..).with_graceful_shutdown(..)`) would wait for it:
    /// call this when the shutdown starts. The other routes keep working.
    pub fn close_streams(&self) {
        self.inner.shared.close_streams();
    }
}

impl fmt::Debug for Admin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Admin");
        match &self.inner.shared.target {
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
    exemplars: usize,
    #[cfg(feature = "store")]
    replica: Option<crate::store::Replica>,
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
    /// `/split`, `/mirror`, the plan routes, `/events`, `/history`.
    pub fn handle(mut self, handle: RolloutHandle) -> Self {
        self.handle = Some(handle);
        self
    }

    /// Serves the routes for a fleet: `/models`, `/status`, `/events`,
    /// `/history`, and the handle's routes under `/models/{name}/`. Models
    /// inserted into the fleet later are served too.
    pub fn fleet(mut self, fleet: Fleet) -> Self {
        self.fleet = Some(fleet);
        self
    }

    /// Serves the routes for one replica of a model, as
    /// [`handle`](Self::handle) does for its router, with the control
    /// routes written to the store (409 for a conflict, 503 while the store
    /// is unreachable), the replica's sync under `"replica"` in `/status`
    /// (and the stored generation as `"generation"`, the one conditional
    /// calls expect), and `GET /ready` for a readiness probe. `POST /plan`
    /// starts a fleet-wide plan ([`Replica::start_plan`](crate::store::Replica::start_plan)),
    /// the plan routes steer it, and `/status` shows it under
    /// `"replica"."plan"`.
    #[cfg(feature = "store")]
    #[cfg_attr(docsrs, doc(cfg(feature = "store")))]
    pub fn replica(mut self, replica: crate::store::Replica) -> Self {
        self.replica = Some(replica);
        self
    }

    /// Shows the diffs of the comparison's last `n` mismatch exemplars
    /// (at most 50) in the status document and the dashboard: when, the
    /// request's method and path, both statuses, and each differing field
    /// with both values. Default 0: none, because those values are model
    /// answers to users' requests; turn it on only where everyone holding the
    /// token may see them. Request bodies and queries are never shown.
    pub fn exemplar_diffs(mut self, n: usize) -> Self {
        self.exemplars = n;
        self
    }

    /// Builds the service. Inside a tokio runtime, this starts the task
    /// that samples the counters once a second for the dashboard's history;
    /// outside one, the first request starts it.
    ///
    /// # Errors
    /// [`ConfigError::MissingToken`] without a token or with an empty one,
    /// [`ConfigError::InvalidToken`] for a token with other than visible
    /// ASCII characters, [`ConfigError::AdminTarget`] unless exactly one of a
    /// handle or a fleet was given.
    pub fn build(self) -> Result<Admin, ConfigError> {
        let token = Token::new(self.token)?;
        #[cfg(feature = "store")]
        let (handle, replica) = match (self.handle, self.replica) {
            (Some(_), Some(_)) => return Err(ConfigError::AdminTarget { given: "both" }),
            (None, Some(r)) => (Some(r.handle().clone()), Some(r)),
            (h, None) => (h, None),
        };
        #[cfg(not(feature = "store"))]
        let handle = self.handle;
        let target = match (handle, self.fleet) {
            (Some(h), None) => Target::Handle(h),
            (None, Some(f)) => Target::Fleet(f),
            (None, None) => return Err(ConfigError::AdminTarget { given: "none" }),
            (Some(_), Some(_)) => return Err(ConfigError::AdminTarget { given: "both" }),
        };
        let shared = Shared::new(target, self.exemplars);
        #[cfg(feature = "store")]
        if let Some(r) = replica {
            let _ = shared.replica.set(r);
        }
        shared.start_sampler();
        Ok(Admin {
            inner: Arc::new(Inner { token, shared }),
        })
    }
}

impl fmt::Debug for AdminBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminBuilder")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("handle", &self.handle)
            .field("fleet", &self.fleet)
            .field("exemplar_diffs", &self.exemplars)
            .finish()
    }
}

impl<B> tower_service::Service<Request<B>> for Admin
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Reply;
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

impl Inner {
    /// The page without the token (it holds no data); anything else only
    /// with it, then routed and handled.
    async fn respond<B>(&self, req: Request<B>) -> Reply
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        self.shared.start_sampler();
        let (parts, body) = req.into_parts();
        if assets::is_page(parts.uri.path()) {
            return assets::page(&parts.method);
        }
        #[cfg(feature = "store")]
        if parts.uri.path() == "/ready" {
            return super::synced::ready(self.shared.replica(), &parts.method);
        }
        if let Some(refused) = self.token.refusal(&parts.headers) {
            return refused;
        }
        let routed = match routes::route(&self.shared.target, &parts.method, parts.uri.path()) {
            Ok(routed) => routed,
            Err(why) => return no_route(why),
        };
        let res = handlers::handle(&self.shared, routed.route, &parts.headers, body).await;
        if routed.head {
            head(res)
        } else {
            res
        }
    }
}

type AdminResult = Result<http::Response<AdminBody>, Infallible>;

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

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use futures_util::stream;
    use http::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE};
    use http::{Method, Response, StatusCode};
    use http_body::Frame;
    use http_body_util::{BodyExt, Full, StreamBody};
    use proptest::prelude::*;
    use serde_json::Value;
    use tower::ServiceExt;

    use super::*;
    use crate::admin::BODY_DEADLINE;
    use crate::Color;

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

    fn body_of(res: Reply) -> Bytes {
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
        /// panic. The dashboard's page (`/`) is the one answer without the
        /// token, and it is HTML.
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
                let page = path == "/";
                prop_assert_eq!(status == 401, !authorized && !page);
                let html = page && status == 200;
                prop_assert_eq!(
                    res.headers().get(CONTENT_TYPE).map(|v| v.as_bytes().starts_with(b"text/html")),
                    (status != 204).then_some(html)
                );
                let bodiless = (method == Method::HEAD && status == 200) || status == 204;
                let bytes = futures_executor::block_on(res.into_body().collect()).unwrap().to_bytes();
                if bodiless {
                    prop_assert!(bytes.is_empty());
                } else if html {
                    prop_assert!(bytes.starts_with(b"<!doctype html>"));
                } else {
                    prop_assert!(serde_json::from_slice::<Value>(&bytes).is_ok());
                }
            }
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
