//! [`Deployer`]: loads new versions into the standby color while the router
//! serves.

use std::fmt;
use std::future::{poll_fn, Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tower::BoxError;
use tower_service::Service;

use super::core::{Control, Terms};
use super::counters::Block;
use super::drain::Retired;
use super::slots::Slots;
use super::state::Transition;
use super::version::{next_version_id, VersionLabel};
use crate::error::ConfigError;
use crate::Color;

/// How long a deploy waits for the new version to become ready (and warm up)
/// unless told otherwise.
pub const DEFAULT_DEPLOY_TIMEOUT: Duration = Duration::from_secs(30);

type WarmUp<S> =
    Box<dyn FnOnce(S) -> Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>> + Send>;

/// Loads new versions of type `S` into a router's standby color at run time.
///
/// Made by [`BlueGreenRouter::deployer`](crate::BlueGreenRouter::deployer) for a
/// router built over two services of the same type; `R` is the request type
/// the services are driven to readiness with (the inner services' request
/// type, for example `Request<axum::body::Body>`). Cheap to clone.
///
/// A deploy ([`deploy`](Self::deploy)) takes the new service and its version
/// label, drives it to readiness (and runs an optional warm-up) within a
/// timeout, and only then installs it in the standby's slot, in one step:
/// router clones pick it up on their next request. It fails with a typed
/// [`DeployError`], changing nothing, when the new version is not ready in
/// time, when the standby takes canary traffic, when a rollout plan runs, or
/// when the state moved under a conditional deploy. The replaced version is
/// dropped once nothing uses it any more; [`Deployed::retired`] resolves then.
///
/// See the [control module docs](super) for a complete example.
pub struct Deployer<S, R> {
    control: Arc<Control>,
    /// `None` for a layer's router, which has no slots.
    slots: Option<Arc<Slots<S, S>>>,
    _request: PhantomData<fn(R)>,
}

impl<S, R> Deployer<S, R> {
    pub(crate) fn new(control: Arc<Control>, slots: Option<Arc<Slots<S, S>>>) -> Self {
        Deployer {
            control,
            slots,
            _request: PhantomData,
        }
    }
}

impl<S: Send + Sync + 'static, R> Deployer<S, R> {
    /// Installs `svc` (already ready) into `color` at once: a deploy without
    /// the readiness wait, for the core's model-checking tests.
    #[cfg(all(test, feature = "loom"))]
    pub(crate) fn install_ready(
        &self,
        color: Color,
        version: &str,
        svc: S,
    ) -> Result<Deployed, DeployError> {
        let slots = self.slots.as_ref().ok_or(DeployError::NotDeployable)?;
        let version = VersionLabel::new(version).map_err(DeployError::InvalidVersion)?;
        install(&self.control, slots, color, version, svc, Terms::default())
    }
}

impl<S, R> Clone for Deployer<S, R> {
    fn clone(&self) -> Self {
        Deployer {
            control: self.control.clone(),
            slots: self.slots.clone(),
            _request: PhantomData,
        }
    }
}

impl<S, R> fmt::Debug for Deployer<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deployer").finish_non_exhaustive()
    }
}

impl<S, R> Deployer<S, R>
where
    S: Service<R> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    R: 'static,
{
    /// Deploys `svc` as version `version` into the standby color; await the
    /// returned [`Deploy`] (after setting its options, if any).
    pub fn deploy(&self, version: impl Into<String>, svc: S) -> Deploy<S, R> {
        Deploy {
            deployer: self.clone(),
            version: VersionLabel::new(version),
            svc,
            warm_up: None,
            timeout: DEFAULT_DEPLOY_TIMEOUT,
            into: None,
            expect: None,
            unserved_active: false,
        }
    }
}

/// A deploy in preparation; await it. Made by [`Deployer::deploy`].
#[must_use = "a deploy does nothing until it is awaited"]
pub struct Deploy<S, R> {
    deployer: Deployer<S, R>,
    version: Result<VersionLabel, ConfigError>,
    svc: S,
    warm_up: Option<WarmUp<S>>,
    timeout: Duration,
    into: Option<Color>,
    expect: Option<u64>,
    /// May go into the active color: see [`into_unserved_active`](Self::into_unserved_active).
    unserved_active: bool,
}

impl<S, R> Deploy<S, R>
where
    S: Service<R> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    R: 'static,
{
    /// Runs `warm_up` on a clone of the new service once it is ready (for
    /// example one prediction, to load weights and fill caches); an error
    /// fails the deploy. Counted in the [`timeout`](Self::timeout).
    pub fn warm_up<F, Fut, E>(mut self, warm_up: F) -> Self
    where
        F: FnOnce(S) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError>,
    {
        self.warm_up = Some(Box::new(move |svc| {
            let fut = warm_up(svc);
            Box::pin(async move { fut.await.map_err(Into::into) })
        }));
        self
    }

    /// How long readiness and warm-up may take. Default
    /// [`DEFAULT_DEPLOY_TIMEOUT`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// States the color the deploy must go into: a deploy into the active
    /// color is a [`DeployError::ActiveColor`].
    pub fn into_color(mut self, color: Color) -> Self {
        self.into = Some(color);
        self
    }

    /// Deploys only if the state is still at `generation` when the new
    /// version is installed; otherwise [`DeployError::Conflict`].
    pub fn expect_generation(mut self, generation: u64) -> Self {
        self.expect = Some(generation);
        self
    }

    /// Lets the deploy go into the active color (no
    /// [`DeployError::ActiveColor`], and no canary check for it): only for a
    /// store replica's loader while the replica is not yet ready, so while
    /// its readiness probe keeps users away from it. Replacing the active
    /// version then drops nothing in flight: requests admitted on the old
    /// version finish on it (it retires as any replaced version does), and
    /// the next ones get the new one. A replica that serves never asks this.
    #[cfg(feature = "store")]
    pub(crate) fn into_unserved_active(mut self) -> Self {
        self.unserved_active = true;
        self
    }

    async fn run(self) -> Result<Deployed, DeployError> {
        let Deploy {
            deployer,
            version,
            mut svc,
            warm_up,
            timeout,
            into,
            expect,
            unserved_active,
        } = self;
        let version = version.map_err(DeployError::InvalidVersion)?;
        let Some(slots) = deployer.slots.clone() else {
            return Err(DeployError::NotDeployable);
        };
        if timeout.is_zero() {
            return Err(DeployError::InvalidTimeout);
        }
        let control = &deployer.control;
        let terms = Terms {
            expect,
            unserved_active,
        };
        let color = control.check_deploy(into, &version, terms)?;
        let ready = async {
            poll_fn(|cx| svc.poll_ready(cx))
                .await
                .map_err(|e| DeployError::NotReady(e.into()))?;
            if let Some(warm_up) = warm_up {
                warm_up(svc.clone()).await.map_err(DeployError::WarmUp)?;
            }
            Ok::<(), DeployError>(())
        };
        match tokio::time::timeout(timeout, ready).await {
            Ok(res) => res?,
            Err(_) => return Err(DeployError::Timeout { after: timeout }),
        }
        install(control, &slots, color, version, svc, terms)
    }
}

/// Installs `svc`, ready, as `version` in `color`'s slot: the preconditions
/// are checked again under the state lock, the slots swapped, then the new
/// word published. The last step of a deploy, without the readiness wait.
pub(crate) fn install<S: Send + Sync + 'static>(
    control: &Control,
    slots: &Slots<S, S>,
    color: Color,
    version: VersionLabel,
    svc: S,
    terms: Terms,
) -> Result<Deployed, DeployError> {
    let block = Block::acquire();
    let id = next_version_id();
    let committed =
        control.commit_deploy(color, version.clone(), block, id, terms, |epoch, tags| {
            Some(slots.swap(color, epoch, svc, id, block, tags))
        });
    match committed {
        Ok(d) => Ok(Deployed {
            version,
            color,
            transition: d.transition,
            retired: d.retired,
        }),
        Err(e) => {
            // Never installed: nothing holds the block.
            block.retire(None);
            Err(e)
        }
    }
}

impl<S, R> IntoFuture for Deploy<S, R>
where
    S: Service<R> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    R: 'static,
{
    type Output = Result<Deployed, DeployError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

impl<S, R> fmt::Debug for Deploy<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deploy")
            .field("version", &self.version)
            .field("timeout", &self.timeout)
            .field("into", &self.into)
            .field("expect", &self.expect)
            .finish_non_exhaustive()
    }
}

/// A deploy that took effect: the new version is in the standby color.
#[derive(Debug)]
#[non_exhaustive]
pub struct Deployed {
    /// The version deployed.
    pub version: VersionLabel,
    /// The color it went into (the standby).
    pub color: Color,
    /// The transition the deploy recorded (`replaced` names the version that
    /// left).
    pub transition: Transition,
    retired: Retired,
}

impl Deployed {
    /// The version that was replaced.
    pub fn replaced(&self) -> &VersionLabel {
        self.retired.version()
    }

    /// Resolves (with the replaced version's label) when the replaced version
    /// is gone: its service value dropped, no request, copy or router clone
    /// using it. See [`Retired`].
    pub fn retired(self) -> Retired {
        self.retired
    }
}

/// Why a deploy changed nothing.
#[derive(Debug)]
#[non_exhaustive]
pub enum DeployError {
    /// The version label is not valid (see [`VersionLabel::new`]).
    InvalidVersion(ConfigError),
    /// A zero timeout.
    InvalidTimeout,
    /// The router was made by a [`BlueGreenLayer`](crate::router::BlueGreenLayer):
    /// its blue is the service each route wraps, so it has no slots to deploy
    /// into. Build a router over two services instead.
    NotDeployable,
    /// The deploy would replace the live version.
    ActiveColor {
        /// The color asked for, which is active.
        color: Color,
        /// Its version.
        version: VersionLabel,
    },
    /// The standby takes canary traffic; set the split to zero first.
    CanaryRunning {
        /// The split.
        split: f64,
    },
    /// A rollout plan runs on this router.
    PlanRunning,
    /// The active color already holds a version with this label.
    DuplicateVersion {
        /// The label.
        version: VersionLabel,
    },
    /// The state moved from the generation the deploy expected.
    Conflict {
        /// The generation expected.
        expected: u64,
        /// The current one.
        actual: u64,
    },
    /// The new service's `poll_ready` failed.
    NotReady(BoxError),
    /// The warm-up failed.
    WarmUp(BoxError),
    /// Readiness and warm-up took longer than the timeout.
    Timeout {
        /// The timeout.
        after: Duration,
    },
}

impl fmt::Display for DeployError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeployError::InvalidVersion(e) => e.fmt(f),
            DeployError::InvalidTimeout => f.write_str("the deploy timeout must be above zero"),
            DeployError::NotDeployable => f.write_str(
                "a layer's router has no version slots: build a router over two services to deploy",
            ),
            DeployError::ActiveColor { color, version } => write!(
                f,
                "{color} is active (serving {version}): deploy into the standby"
            ),
            DeployError::CanaryRunning { split } => write!(
                f,
                "the standby takes {split} of the traffic as a canary: set the split to 0 first"
            ),
            DeployError::PlanRunning => f.write_str("a rollout plan runs on this router"),
            DeployError::DuplicateVersion { version } => {
                write!(f, "the active color already holds version {version}")
            }
            DeployError::Conflict { expected, actual } => write!(
                f,
                "conflict: expected generation {expected}, the state is at {actual}"
            ),
            DeployError::NotReady(e) => write!(f, "the new version failed to become ready: {e}"),
            DeployError::WarmUp(e) => write!(f, "the warm-up of the new version failed: {e}"),
            DeployError::Timeout { after } => {
                write!(f, "the new version was not ready within {after:?}")
            }
        }
    }
}

impl std::error::Error for DeployError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DeployError::InvalidVersion(e) => Some(e),
            DeployError::NotReady(e) | DeployError::WarmUp(e) => Some(&**e),
            _ => None,
        }
    }
}
