//! [`Fleet`]: many models in one process, each rolled out on its own.
//!
//! A server that hosts several models gives each model its own
//! [`BlueGreenRouter`](crate::BlueGreenRouter) and keeps the handles in a
//! `Fleet`, keyed by model name. Promoting, rolling back or canarying one
//! model never touches another. The fleet is only a registry of handles: it
//! is not on the request path, which stays each router's own.
//!
//! Names are used as URL path segments (the admin service of feature `admin`
//! serves `/models/{name}/status`), so they are checked when inserted: not
//! empty, only ASCII letters, digits, `-`, `.`, `_` and `~`, and neither `.`
//! nor `..`. Such a name needs no percent-encoding and means the same in a
//! URL as in code.
//!
//! # Example
//!
//! ```
//! use axum::{routing::post, Router};
//! use tower::ServiceExt;
//! use tower_rollout::{BlueGreenRouter, Color, ConfigError, Fleet};
//! # use http::Request;
//! # use http_body_util::BodyExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let version = |answer: &'static str| Router::new().route("/predict", post(move || async move { answer }));
//! let (sentiment, sentiment_handle) = BlueGreenRouter::new(version("sentiment-v1"), version("sentiment-v2"));
//! let (vision, vision_handle) = BlueGreenRouter::new(version("vision-v1"), version("vision-v2"));
//! let app = Router::new()
//!     .nest_service("/sentiment", sentiment)
//!     .nest_service("/vision", vision);
//!
//! let fleet = Fleet::new();
//! fleet.insert("sentiment", sentiment_handle)?;
//! fleet.insert("vision", vision_handle)?;
//! # let ask = |app: Router, path: &'static str| async move {
//! #     let req = Request::post(path).body(axum::body::Body::empty()).unwrap();
//! #     let res = app.oneshot(req).await.unwrap();
//! #     res.into_body().collect().await.unwrap().to_bytes()
//! # };
//!
//! // Promote one model; the other is untouched.
//! fleet.get("vision").unwrap().promote();
//! assert_eq!(ask(app.clone(), "/vision/predict").await, "vision-v2");
//! assert_eq!(ask(app.clone(), "/sentiment/predict").await, "sentiment-v1");
//!
//! let status = fleet.status();
//! assert_eq!(status["vision"].active, Color::Green);
//! assert_eq!(status["sentiment"].active, Color::Blue);
//! assert_eq!(fleet.names(), ["sentiment", "vision"]);
//!
//! // Names are checked: one model per name, each usable in a URL.
//! let (_, other) = BlueGreenRouter::new(version("a"), version("b"));
//! assert!(matches!(fleet.insert("vision", other.clone()), Err(ConfigError::DuplicateModelName { .. })));
//! assert!(matches!(fleet.insert("a/b", other), Err(ConfigError::InvalidModelName { .. })));
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::control::RolloutStatus;
use crate::error::ConfigError;
use crate::RolloutHandle;

/// Rollout handles of many models, keyed by model name. See the
/// [module docs](crate::fleet).
///
/// Cheap to clone (one `Arc`); clones share one set of models, so a model
/// inserted after an admin service (feature `admin`) was built from the fleet
/// is served by it too. Names are kept sorted.
#[derive(Clone, Default)]
pub struct Fleet {
    models: Arc<RwLock<BTreeMap<String, RolloutHandle>>>,
}

impl Fleet {
    /// An empty fleet.
    pub fn new() -> Self {
        Fleet::default()
    }

    /// Adds a model under `name`.
    ///
    /// # Errors
    /// [`ConfigError::InvalidModelName`] when `name` is empty or not usable
    /// as one URL path segment (see the [module docs](crate::fleet));
    /// [`ConfigError::DuplicateModelName`] when the fleet already has a model
    /// of that name. Nothing changes then.
    pub fn insert(
        &self,
        name: impl Into<String>,
        handle: RolloutHandle,
    ) -> Result<(), ConfigError> {
        let name = name.into();
        check_model_name(&name)?;
        let mut models = self.write();
        if models.contains_key(&name) {
            return Err(ConfigError::DuplicateModelName { name });
        }
        models.insert(name, handle);
        Ok(())
    }

    /// Removes the model `name` and returns its handle, if it was there.
    ///
    /// The model's router keeps working; it is only no longer listed.
    pub fn remove(&self, name: &str) -> Option<RolloutHandle> {
        self.write().remove(name)
    }

    /// The handle of the model `name`.
    pub fn get(&self, name: &str) -> Option<RolloutHandle> {
        self.read().get(name).cloned()
    }

    /// Whether the fleet has a model `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.read().contains_key(name)
    }

    /// The model names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    /// How many models the fleet has.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether the fleet has no model.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// The models and their handles, sorted by name: a snapshot taken now,
    /// unaffected by later inserts and removals.
    pub fn iter(&self) -> Iter {
        let models: Vec<_> = self
            .read()
            .iter()
            .map(|(name, handle)| (name.clone(), handle.clone()))
            .collect();
        Iter {
            inner: models.into_iter(),
        }
    }

    /// The [status](RolloutHandle::status) of every model, by name.
    pub fn status(&self) -> BTreeMap<String, RolloutStatus> {
        self.iter()
            .map(|(name, handle)| (name, handle.status()))
            .collect()
    }

    fn read(&self) -> RwLockReadGuard<'_, BTreeMap<String, RolloutHandle>> {
        // The map is never left half-changed, so a poisoned lock is still usable.
        self.models.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, BTreeMap<String, RolloutHandle>> {
        self.models.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl fmt::Debug for Fleet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.read().iter()).finish()
    }
}

impl IntoIterator for &Fleet {
    type Item = (String, RolloutHandle);
    type IntoIter = Iter;

    fn into_iter(self) -> Iter {
        self.iter()
    }
}

/// Iterator over a snapshot of a [`Fleet`]: `(name, handle)` pairs sorted by
/// name. Made by [`Fleet::iter`].
#[derive(Debug)]
pub struct Iter {
    inner: std::vec::IntoIter<(String, RolloutHandle)>,
}

impl Iterator for Iter {
    type Item = (String, RolloutHandle);

    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl DoubleEndedIterator for Iter {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.inner.next_back()
    }
}

impl ExactSizeIterator for Iter {}

/// Checks that `name` can be one URL path segment as it is.
pub(crate) fn check_model_name(name: &str) -> Result<(), ConfigError> {
    let unreserved = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
    if name.is_empty() || name == "." || name == ".." || !name.bytes().all(unreserved) {
        return Err(ConfigError::InvalidModelName {
            name: name.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http::{Request, Response};
    use tower::{service_fn, ServiceExt};

    use super::*;
    use crate::{BlueGreenRouter, Color};

    type Req = Request<String>;

    /// A router whose blue answers `"{name}-blue"` and green `"{name}-green"`.
    fn model(
        name: &'static str,
    ) -> (
        impl tower::Service<
                Request<String>,
                Response = Response<crate::router::RolloutBody<String>>,
                Error = Infallible,
            > + Clone,
        RolloutHandle,
    ) {
        let color = |color: &'static str| {
            service_fn(move |_: Req| async move {
                Ok::<_, Infallible>(Response::new(format!("{name}-{color}")))
            })
        };
        BlueGreenRouter::new(color("blue"), color("green"))
    }

    async fn ask<S>(svc: S) -> String
    where
        S: tower::Service<
            Request<String>,
            Response = Response<crate::router::RolloutBody<String>>,
            Error = Infallible,
        >,
    {
        let res = svc.oneshot(Request::new(String::new())).await.unwrap();
        res.into_body().get_ref().clone()
    }

    #[tokio::test]
    async fn promoting_one_model_leaves_the_other_unchanged() {
        let (a, a_handle) = model("a");
        let (b, b_handle) = model("b");
        let fleet = Fleet::new();
        fleet.insert("a", a_handle).unwrap();
        fleet.insert("b", b_handle).unwrap();

        let before = fleet.status();
        fleet.get("a").unwrap().promote().unwrap();
        assert_eq!(ask(a.clone()).await, "a-green");
        assert_eq!(ask(b.clone()).await, "b-blue");

        let after = fleet.status();
        assert_eq!(after["a"].active, Color::Green);
        assert_eq!(after["a"].generation, 1);
        assert_eq!(after["b"].active, Color::Blue);
        assert_eq!(after["b"].generation, before["b"].generation);
        assert_eq!((after["a"].green.served, after["b"].blue.served), (1, 1));

        fleet.get("b").unwrap().set_split(1.0).unwrap();
        fleet.get("a").unwrap().rollback().unwrap();
        assert_eq!(ask(a).await, "a-blue");
        assert_eq!(ask(b).await, "b-green", "b's canary takes every request");
        assert_eq!(fleet.get("a").unwrap().status().split, 0.0);
    }

    #[test]
    fn names_are_checked_and_unique() {
        let (_, h) = model("m");
        let fleet = Fleet::new();
        for bad in [
            "", ".", "..", "a/b", "a b", "a%20b", "é", "a?b", "a#b", "a\n", "%2e",
        ] {
            assert_eq!(
                fleet.insert(bad, h.clone()),
                Err(ConfigError::InvalidModelName { name: bad.into() }),
                "{bad:?}"
            );
        }
        for good in ["m", "M-1.2_x~", "...", "resnet50"] {
            fleet.insert(good, h.clone()).unwrap();
        }
        assert_eq!(
            fleet.insert("m", h.clone()),
            Err(ConfigError::DuplicateModelName { name: "m".into() })
        );
        assert_eq!(fleet.names(), ["...", "M-1.2_x~", "m", "resnet50"]);
        assert!(fleet.insert("x", h).is_ok());
        assert_eq!(fleet.len(), 5);
    }

    #[test]
    fn clones_share_models_and_iteration_is_a_sorted_snapshot() {
        let fleet = Fleet::new();
        assert!(fleet.is_empty());
        let shared = fleet.clone();
        let (_, h1) = model("one");
        let (_, h2) = model("two");
        fleet.insert("zeta", h1).unwrap();
        shared.insert("alpha", h2.clone()).unwrap();
        assert!(fleet.contains("alpha") && shared.contains("zeta"));

        let snapshot = fleet.iter();
        assert_eq!(snapshot.len(), 2);
        fleet.remove("zeta").expect("was there");
        assert!(fleet.remove("zeta").is_none());
        let names: Vec<String> = snapshot.map(|(name, _)| name).collect();
        assert_eq!(names, ["alpha", "zeta"], "taken before the remove");

        h2.promote().unwrap();
        let seen: Vec<(String, Color)> = (&shared)
            .into_iter()
            .map(|(n, h)| (n, h.active()))
            .collect();
        assert_eq!(seen, [("alpha".to_string(), Color::Green)]);
        assert_eq!(
            format!("{shared:?}"),
            r#"{"alpha": RolloutHandle { active: Green, .. }}"#
        );
    }
}
