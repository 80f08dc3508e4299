use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use super::counters::Lane;
use super::meter::Measurements;
use super::state::{Control, Transition, TransitionKind};
use crate::error::{check_fraction, ConfigError};
use crate::mirror::MirrorStats;
use crate::shadow::ShadowReport;
use crate::{Color, Percentiles};

/// Steers a [`BlueGreenRouter`](crate::BlueGreenRouter) from application code.
///
/// Cheap to clone (one `Arc`), usable from any thread at any time. Every call
/// takes effect for the next request admitted; requests already admitted finish
/// on the color that admitted them. See the [module docs](crate::control).
#[derive(Clone)]
pub struct RolloutHandle {
    pub(crate) control: Arc<Control>,
}

impl RolloutHandle {
    pub(crate) fn new(control: Arc<Control>) -> Self {
        RolloutHandle { control }
    }

    /// The color that serves requests by default.
    pub fn active(&self) -> Color {
        self.control.word().active()
    }

    /// The color on standby.
    pub fn standby(&self) -> Color {
        self.active().other()
    }

    /// The current generation: rises by one with every control call.
    pub fn generation(&self) -> u64 {
        self.control.state().generation
    }

    /// Makes the standby the active color and sets the split back to zero.
    ///
    /// The color that was active stays available (warm) as the standby; use
    /// [`drained`](Self::drained) to know when it has finished its in-flight
    /// requests, and [`rollback`](Self::rollback) to undo this call.
    pub fn promote(&self) -> Transition {
        self.control.transition(TransitionKind::Promote, |st| {
            st.previous = Some(st.active);
            st.active = st.active.other();
            st.split = 0.0;
        })
    }

    /// Goes back to the stable color in one step.
    ///
    /// Undoes the last [`promote`](Self::promote) that has not been rolled back
    /// yet: the color that was active before it is active again. In every case
    /// the split is set back to zero, so with no promote to undo this aborts a
    /// canary. The mirrored fraction is left as it is (mirroring never affects
    /// users).
    pub fn rollback(&self) -> Transition {
        self.control.transition(TransitionKind::Rollback, |st| {
            if let Some(previous) = st.previous.take() {
                st.active = previous;
            }
            st.split = 0.0;
        })
    }

    /// Sends a fraction of requests (`0.0..=1.0`) to the standby: a canary.
    ///
    /// Without a sticky key each request is drawn at random; with one (see
    /// [`Builder::sticky_header`](crate::router::Builder::sticky_header)) a user
    /// hashes into a fixed bucket, so raising the split only ever moves users
    /// from the active color to the standby. The resolution is 2⁻²⁰.
    ///
    /// # Errors
    /// [`ConfigError::InvalidFraction`] when `fraction` is NaN or outside
    /// `0..=1`; nothing changes then.
    pub fn set_split(&self, fraction: f64) -> Result<Transition, ConfigError> {
        let fraction = check_fraction("split", fraction)?;
        Ok(self
            .control
            .transition(TransitionKind::Split, |st| st.split = fraction))
    }

    /// Copies a fraction (`0.0..=1.0`) of the requests served by the active
    /// color to the standby, through the [mirror](crate::mirror) engine: users
    /// only ever see the active color's answers, and the copies are bounded,
    /// timed out and counted (see [`mirror_stats`](Self::mirror_stats)). After
    /// a [`promote`](Self::promote) the old color is the standby and receives
    /// the copies.
    ///
    /// # Errors
    /// [`ConfigError::InvalidFraction`] when `fraction` is NaN or outside
    /// `0..=1`; [`ConfigError::MissingSpawner`] when the router has no
    /// executor for shadow work. Nothing changes then.
    pub fn mirror_standby(&self, fraction: f64) -> Result<Transition, ConfigError> {
        let fraction = check_fraction("mirror", fraction)?;
        if self.control.mirror.is_none() {
            return Err(ConfigError::MissingSpawner);
        }
        Ok(self
            .control
            .transition(TransitionKind::Mirror, |st| st.mirror = fraction))
    }

    /// The counters of the copies sent by [`mirror_standby`](Self::mirror_standby).
    pub fn mirror_stats(&self) -> MirrorStats {
        self.control
            .mirror
            .as_ref()
            .map(|e| e.stats())
            .unwrap_or_default()
    }

    /// The results of comparing mirrored copies with the active color's
    /// answers, when the router was built with
    /// [`Builder::compare`](crate::router::Builder::compare); an empty report
    /// otherwise.
    pub fn shadow_report(&self) -> ShadowReport {
        self.control
            .judge
            .as_ref()
            .map(|j| j.report.snapshot())
            .unwrap_or_default()
    }

    /// A future that resolves when `color` has no request in flight.
    ///
    /// A request is in flight from the moment the router admits it until its
    /// response body has ended or been dropped, so a streamed response keeps
    /// its color busy until its last frame. Mirrored copies running on `color`
    /// count too: set [`mirror_standby`](Self::mirror_standby) to 0 before
    /// unloading a standby that receives copies. Typical use: after
    /// [`promote`](Self::promote), await `drained(old)` before unloading the
    /// old model. The future does not stop new requests from reaching `color`;
    /// it resolves at the first moment nothing is in flight after it is first
    /// polled, even if new requests arrived before it was polled again.
    ///
    /// The router reads the state again in `call`, so a request polled ready
    /// for the old color before a [`promote`](Self::promote) and called after
    /// it goes to the new active color. What remains is the instant between
    /// that read and the admission count in `call`: a request there can still
    /// reach the old color after `drained` resolved. To be safe against it,
    /// wait briefly (a millisecond) after the promote before awaiting
    /// `drained`.
    pub fn drained(&self, color: Color) -> Drained {
        static IDS: AtomicU64 = AtomicU64::new(0);
        Drained {
            control: self.control.clone(),
            color,
            id: IDS.fetch_add(1, Ordering::Relaxed),
            registered: None,
        }
    }

    /// Requests admitted to `color` and not yet finished (mirrored copies
    /// running on `color` not included; see [`ColorStatus::mirrored_in_flight`]).
    pub fn in_flight(&self, color: Color) -> u64 {
        self.control.block.in_flight(Lane::Admitted(color))
    }

    /// Per-color outcomes (finished, failed, latency) recorded so far while
    /// measuring was on. Measuring is on while a
    /// [`RolloutPlan`](crate::plan::RolloutPlan) runs, or always when the
    /// router was built with
    /// [`Builder::measure`](crate::router::Builder::measure); take two
    /// snapshots and [`since`](Measurements::since) for a window.
    pub fn measurements(&self) -> Measurements {
        self.control.meter.snapshot()
    }

    /// Whether outcomes are measured right now (see
    /// [`measurements`](Self::measurements)).
    pub fn is_measuring(&self) -> bool {
        self.control.word().measure()
    }

    /// Puts the stable color back in one transition: `stable` active, split
    /// and mirror at zero. What a rollout plan does when it aborts.
    #[cfg(feature = "tokio")]
    pub(crate) fn abort_to(&self, stable: Color) -> Transition {
        self.control.transition(TransitionKind::Abort, |st| {
            if st.active != stable {
                st.previous = None;
                st.active = stable;
            }
            st.split = 0.0;
            st.mirror = 0.0;
        })
    }

    /// A plain snapshot of the state and counters.
    pub fn status(&self) -> RolloutStatus {
        let (active, split, mirror, generation, history) = {
            let st = self.control.state();
            (
                st.active,
                st.split,
                st.mirror,
                st.generation,
                st.history.iter().copied().collect(),
            )
        };
        let block = self.control.block;
        let measured = self.control.meter.snapshot();
        let color = |c| {
            let m = measured.color(c);
            ColorStatus {
                in_flight: block.in_flight(Lane::Admitted(c)),
                mirrored_in_flight: block.in_flight(Lane::Mirrored(c)),
                served: block.served(c),
                finished: m.finished,
                failures: m.failures,
                latency: m.latency.percentiles(),
            }
        };
        RolloutStatus {
            active,
            split,
            mirror,
            generation,
            blue: color(Color::Blue),
            green: color(Color::Green),
            unknown_override: self.control.unknown_override.load(Ordering::Relaxed),
            canary_fallback: self.control.canary_fallback.load(Ordering::Relaxed),
            history,
            measuring: self.is_measuring(),
            #[cfg(feature = "tokio")]
            plan: self.plan_status(),
        }
    }

    /// The rollout plan running (or last run) on this router, to watch or
    /// steer it (pause, resume, abort, skip to promote).
    #[cfg(feature = "tokio")]
    pub fn plan(&self) -> Option<crate::plan::PlanRun> {
        let slot = self.control.plan.lock().unwrap_or_else(|e| e.into_inner());
        slot.clone().map(crate::plan::PlanRun::from_shared)
    }

    /// The status of the rollout plan running (or last run) on this router.
    #[cfg(feature = "tokio")]
    pub fn plan_status(&self) -> Option<crate::plan::PlanStatus> {
        let slot = self.control.plan.lock().unwrap_or_else(|e| e.into_inner());
        slot.as_ref().map(|shared| shared.status())
    }
}

impl fmt::Debug for RolloutHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = self.control.word();
        f.debug_struct("RolloutHandle")
            .field("active", &word.active())
            .finish_non_exhaustive()
    }
}

/// A snapshot returned by [`RolloutHandle::status`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RolloutStatus {
    /// The color serving requests by default.
    pub active: Color,
    /// The fraction of requests sent to the standby.
    pub split: f64,
    /// The fraction of active traffic mirrored to the standby.
    pub mirror: f64,
    /// Rises by one with every control call.
    pub generation: u64,
    /// Counters of blue.
    pub blue: ColorStatus,
    /// Counters of green.
    pub green: ColorStatus,
    /// Override headers whose value named no color (ignored, counted here).
    pub unknown_override: u64,
    /// Requests the random canary split drew for the standby that went to the
    /// active color because the standby was not ready (or its `poll_ready`
    /// failed) at that moment.
    pub canary_fallback: u64,
    /// The last transitions, oldest first (at most 64).
    pub history: Vec<Transition>,
    /// Whether outcomes are measured right now (see
    /// [`RolloutHandle::measurements`]).
    pub measuring: bool,
    /// The rollout plan running (or last run) on this router, if any.
    #[cfg(feature = "tokio")]
    pub plan: Option<crate::plan::PlanStatus>,
}

impl RolloutStatus {
    /// The counters of one color.
    pub fn color(&self, color: Color) -> &ColorStatus {
        match color {
            Color::Blue => &self.blue,
            Color::Green => &self.green,
        }
    }

    /// The color on standby.
    pub fn standby(&self) -> Color {
        self.active.other()
    }
}

/// Per-color counters in a [`RolloutStatus`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ColorStatus {
    /// Requests admitted and not yet finished (response body not ended or dropped).
    pub in_flight: u64,
    /// Mirrored copies running on this color (it is the standby and
    /// [`RolloutHandle::mirror_standby`] is on).
    pub mirrored_in_flight: u64,
    /// Requests admitted to this color since the router was built (mirrored
    /// copies not included).
    pub served: u64,
    /// Requests classified while measuring was on (see
    /// [`RolloutHandle::measurements`]).
    pub finished: u64,
    /// Of those, failures (5xx, service errors, failing gRPC statuses, or as
    /// the router's failure classifier says).
    pub failures: u64,
    /// Time to the response head of the measured requests.
    pub latency: Percentiles,
}

/// Future returned by [`RolloutHandle::drained`].
#[must_use = "futures do nothing unless polled"]
pub struct Drained {
    control: Arc<Control>,
    color: Color,
    id: u64,
    /// Drain events seen when first registered; `None` when not registered.
    registered: Option<u64>,
}

impl Future for Drained {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let block = this.control.block;
        if block.register(this.color, this.id, cx.waker(), &mut this.registered) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for Drained {
    fn drop(&mut self) {
        self.control
            .block
            .deregister(self.color, self.id, &mut self.registered);
    }
}

impl fmt::Debug for Drained {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Drained")
            .field("color", &self.color)
            .finish_non_exhaustive()
    }
}
