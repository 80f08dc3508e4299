use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::core::Control;
use super::counters::Lane;
use super::drain::Drained;
use super::meter::{Measurement, Measurements};
use super::state::{fraction, Change, ControlError, Op, Target, Transition};
use super::version::{Readiness, VersionLabel};
use crate::{Color, Percentiles};

/// Steers a [`BlueGreenRouter`](crate::BlueGreenRouter) from application code.
///
/// Cheap to clone (one `Arc`), usable from any thread at any time. Every call
/// takes effect for the next request admitted; requests already admitted finish
/// on the version that admitted them. Every call returns what it did
/// ([`Change`]): a call whose target is already reached changes nothing, so
/// repeating it is safe. See the [module docs](crate::control).
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

    /// The version `color` holds.
    pub fn version(&self, color: Color) -> VersionLabel {
        self.control.state().version(color).label.clone()
    }

    /// The version the active color holds.
    pub fn active_version(&self) -> VersionLabel {
        let st = self.control.state();
        st.version(st.active).label.clone()
    }

    /// The current generation: rises by one with every call that changes the
    /// state (a deploy included).
    pub fn generation(&self) -> u64 {
        self.control.state().generation
    }

    /// The conditional form of every control call: each one fails with
    /// [`ControlError::Conflict`] unless the state is still at `generation`
    /// (unless its target is already reached: then it changes nothing).
    /// Like an etcd compare-and-set, for callers that act on what they read:
    ///
    /// ```
    /// use tower_rollout::{control::ControlError, BlueGreenRouter, Color};
    /// # let svc = tower::service_fn(|_req: http::Request<()>| async {
    /// #     Ok::<_, std::convert::Infallible>(http::Response::new(()))
    /// # });
    /// let (_router, handle) = BlueGreenRouter::new(svc.clone(), svc);
    /// let seen = handle.generation();
    /// handle.set_split(0.1)?; // someone else moved the state meanwhile
    /// let err = handle.expect_generation(seen).promote().unwrap_err();
    /// assert!(matches!(err, ControlError::Conflict { expected: 0, actual: 1 }));
    /// assert_eq!(handle.active(), Color::Blue, "nothing changed");
    /// # Ok::<(), ControlError>(())
    /// ```
    pub fn expect_generation(&self, generation: u64) -> ControlCall<'_> {
        ControlCall {
            handle: self,
            expect: Some(generation),
            force: false,
        }
    }

    /// Promotes even when the standby was seen not ready (see
    /// [`promote`](Self::promote)).
    pub fn force(&self) -> ControlCall<'_> {
        ControlCall {
            handle: self,
            expect: None,
            force: true,
        }
    }

    pub(crate) fn call(&self) -> ControlCall<'_> {
        ControlCall {
            handle: self,
            expect: None,
            force: false,
        }
    }

    /// Makes the standby the active color and sets the split back to zero.
    ///
    /// The color that was active stays available (warm) as the standby; use
    /// [`drained`](Self::drained) to know when it has finished its in-flight
    /// requests, and [`rollback`](Self::rollback) to undo this call.
    ///
    /// Each call flips the colors; to make a repeated call safe, name the
    /// target with [`promote_to`](Self::promote_to).
    ///
    /// # Errors
    /// [`ControlError::NotReady`] when the standby's version was seen not
    /// ready: its `poll_ready` was pending or failed when the router (or this
    /// call, polling a clone of it once) last looked. Use
    /// [`force`](Self::force) to promote anyway.
    pub fn promote(&self) -> Result<Change, ControlError> {
        self.call().promote()
    }

    /// Makes `to` (a [`Color`], or the color holding a [`VersionLabel`])
    /// active, unless it already is: then nothing changes.
    ///
    /// # Errors
    /// As [`promote`](Self::promote); [`ControlError::UnknownVersion`] when no
    /// color holds the version.
    pub fn promote_to(&self, to: impl Into<Target>) -> Result<Change, ControlError> {
        self.call().promote_to(to)
    }

    /// [`promote_to`](Self::promote_to) the color holding version `label`.
    ///
    /// # Errors
    /// [`ControlError::UnknownVersion`] when no color holds it (or the label
    /// is not valid), and as [`promote`](Self::promote).
    pub fn promote_to_version(&self, label: &str) -> Result<Change, ControlError> {
        self.call().promote_to_version(label)
    }

    /// Goes back to the stable color in one step.
    ///
    /// Undoes the last [`promote`](Self::promote) that has not been rolled back
    /// yet, when the color that was active before it still holds the version
    /// it held then (a deploy into it since makes the promote impossible to
    /// undo): that color and version are active again, as the transition's
    /// `active` and `version` say. In every case the split is set back to
    /// zero, so with no promote to undo this aborts a canary; with nothing to
    /// undo at all it changes nothing. The mirrored fraction is left as it is.
    pub fn rollback(&self) -> Result<Change, ControlError> {
        self.call().rollback()
    }

    /// Sends a fraction of requests (`0.0..=1.0`) to the standby: a canary.
    ///
    /// Without a sticky key each request is drawn at random; with one (see
    /// [`Builder::sticky_header`](crate::router::Builder::sticky_header)) a user
    /// hashes into a fixed bucket, so raising the split only ever moves users
    /// from the active color to the standby. The resolution is 2⁻²⁰; `-0.0`
    /// is stored as `0.0`.
    ///
    /// # Errors
    /// [`ControlError::Invalid`] when `fraction` is NaN or outside `0..=1`;
    /// nothing changes then.
    pub fn set_split(&self, fraction: f64) -> Result<Change, ControlError> {
        self.call().set_split(fraction)
    }

    /// Copies a fraction (`0.0..=1.0`) of the requests served by the active
    /// color to the standby, through the [mirror](crate::mirror) engine: users
    /// only ever see the active color's answers, and the copies are bounded,
    /// timed out and counted. After a [`promote`](Self::promote) the old
    /// color is the standby and receives the copies.
    ///
    /// # Errors
    /// [`ControlError::Invalid`] when `fraction` is NaN or outside `0..=1`;
    /// [`ControlError::NoMirror`] when the router was built without
    /// [`Builder::mirror`](crate::router::Builder::mirror) or
    /// [`Builder::compare`](crate::router::Builder::compare). Nothing changes
    /// then.
    pub fn mirror_standby(&self, fraction: f64) -> Result<Change, ControlError> {
        self.call().mirror_standby(fraction)
    }

    /// A future that resolves when `color` has no request in flight.
    ///
    /// A request is in flight from the moment the router's `poll_ready`
    /// admits it until its response body has ended or been dropped, so a
    /// streamed response keeps its color busy until its last frame, and a
    /// request admitted just before a [`promote`](Self::promote) is waited
    /// for by a `drained` made just after it, with no sleep. Mirrored copies
    /// running on `color` count too: set
    /// [`mirror_standby`](Self::mirror_standby) to 0 before unloading a
    /// standby that receives copies. Versions replaced in `color` by a deploy
    /// and still running count as well (the versions the color holds when
    /// the future is first polled). The future does not stop new requests
    /// from reaching `color`; it resolves at the first moment nothing is in
    /// flight after it is first polled.
    pub fn drained(&self, color: Color) -> Drained {
        Drained::new(self.control.clone(), color)
    }

    /// Requests admitted to `color`'s current version and not yet finished
    /// (mirrored copies not included; see [`ColorStatus::mirrored_in_flight`]).
    pub fn in_flight(&self, color: Color) -> u64 {
        self.control.block(color).in_flight(Lane::Admitted)
    }

    /// Per-color outcomes (finished, failed, latency) of each color's current
    /// version, recorded so far while measuring was on. Measuring is on while
    /// a [`RolloutPlan`](crate::plan::RolloutPlan) runs, or always when the
    /// router was built with
    /// [`Builder::measure`](crate::router::Builder::measure); take two
    /// snapshots and [`since`](Measurements::since) for a window.
    pub fn measurements(&self) -> Measurements {
        let st = self.control.state();
        Measurements {
            blue: st.version(Color::Blue).block.meter.snapshot(),
            green: st.version(Color::Green).block.meter.snapshot(),
        }
    }

    /// Whether outcomes are measured right now (see
    /// [`measurements`](Self::measurements)).
    pub fn is_measuring(&self) -> bool {
        self.control.word().measure()
    }

    /// Applies a state decided elsewhere (a shared store) in one transition:
    /// `active`, `split` and `mirror` together, whatever the local
    /// generation, the standby's readiness seen here notwithstanding.
    ///
    /// # Errors
    /// [`ControlError::Invalid`] for a fraction outside `0..=1`,
    /// [`ControlError::NoMirror`] for a mirror fraction on a router that
    /// cannot mirror. Nothing changes then.
    #[cfg_attr(not(feature = "store"), allow(dead_code))]
    pub(crate) fn assign(
        &self,
        active: Color,
        split: f64,
        mirror: f64,
    ) -> Result<Change, ControlError> {
        let split = fraction("split", split)?;
        let mirror = fraction("mirror", mirror)?;
        self.control.apply(
            Op::Assign {
                active,
                split,
                mirror,
            },
            None,
        )
    }

    /// Puts the stable color back in one transition: `stable` active, split
    /// and mirror at zero. What a rollout plan does when it aborts.
    pub(crate) fn abort_to(&self, stable: Color) -> Change {
        self.control
            .apply(Op::Abort { stable }, None)
            .unwrap_or(Change::Unchanged {
                generation: self.generation(),
            })
    }

    /// A plain snapshot of the state and counters.
    pub fn status(&self) -> RolloutStatus {
        let st = self.control.state();
        let color = |c: Color| {
            let live = st.version(c);
            let block = live.block;
            let m: Measurement = block.meter.snapshot();
            ColorStatus {
                version: live.label.clone(),
                readiness: live.readiness,
                in_flight: block.in_flight(Lane::Admitted),
                mirrored_in_flight: block.in_flight(Lane::Mirrored),
                served: block.served(),
                finished: m.finished,
                failures: m.failures,
                latency: m.latency.percentiles(),
            }
        };
        let retiring = st
            .retiring
            .iter()
            .filter(|r| !r.gone())
            .map(|r| RetiringStatus {
                version: r.label.clone(),
                color: r.color,
                in_flight: r.block.in_flight(Lane::Admitted),
                mirrored_in_flight: r.block.in_flight(Lane::Mirrored),
                holders: r.block.in_flight(Lane::Held),
            })
            .collect();
        RolloutStatus {
            active: st.active,
            split: st.split,
            mirror: st.mirror,
            generation: st.generation,
            blue: color(Color::Blue),
            green: color(Color::Green),
            retiring,
            unknown_override: self.control.unknown_override.load(Ordering::Relaxed),
            fallbacks: self.control.fallbacks.load(Ordering::Relaxed),
            history: st.history.iter().cloned().collect(),
            measuring: st.measure_always || st.measure_refs > 0,
            plan_running: st.plan.is_some(),
        }
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

/// A control call with conditions: made by
/// [`RolloutHandle::expect_generation`] and [`RolloutHandle::force`], which
/// can be chained (`handle.expect_generation(7).force().promote()`).
#[derive(Debug, Clone, Copy)]
#[must_use = "a control call does nothing until one of its methods is called"]
pub struct ControlCall<'a> {
    handle: &'a RolloutHandle,
    expect: Option<u64>,
    force: bool,
}

impl ControlCall<'_> {
    /// Also requires the state to be at `generation`.
    pub fn expect_generation(mut self, generation: u64) -> Self {
        self.expect = Some(generation);
        self
    }

    /// Also promotes a standby seen not ready.
    pub fn force(mut self) -> Self {
        self.force = true;
        self
    }

    fn apply(self, op: Op) -> Result<Change, ControlError> {
        self.handle.control.apply(op, self.expect)
    }

    /// See [`RolloutHandle::promote`].
    pub fn promote(self) -> Result<Change, ControlError> {
        let force = self.force;
        self.apply(Op::Promote { to: None, force })
    }

    /// See [`RolloutHandle::promote_to`].
    pub fn promote_to(self, to: impl Into<Target>) -> Result<Change, ControlError> {
        let force = self.force;
        self.apply(Op::Promote {
            to: Some(to.into()),
            force,
        })
    }

    /// See [`RolloutHandle::promote_to_version`].
    pub fn promote_to_version(self, label: &str) -> Result<Change, ControlError> {
        let label = VersionLabel::new(label).map_err(|_| ControlError::UnknownVersion {
            version: label.to_owned(),
        })?;
        self.promote_to(label)
    }

    /// See [`RolloutHandle::rollback`].
    pub fn rollback(self) -> Result<Change, ControlError> {
        self.apply(Op::Rollback)
    }

    /// See [`RolloutHandle::set_split`].
    pub fn set_split(self, split: f64) -> Result<Change, ControlError> {
        let split = fraction("split", split)?;
        self.apply(Op::Split(split))
    }

    /// See [`RolloutHandle::mirror_standby`].
    pub fn mirror_standby(self, mirror: f64) -> Result<Change, ControlError> {
        let mirror = fraction("mirror", mirror)?;
        self.apply(Op::Mirror(mirror))
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
    /// Rises by one with every control call that changed the state.
    pub generation: u64,
    /// Blue's version and counters.
    pub blue: ColorStatus,
    /// Green's version and counters.
    pub green: ColorStatus,
    /// Versions replaced by a deploy that still have requests, copies or
    /// router clones using them.
    pub retiring: Vec<RetiringStatus>,
    /// Override headers whose value named no color (ignored, counted here).
    pub unknown_override: u64,
    /// Requests whose color (a random canary draw, a sticky key, an override
    /// header) was not ready, served by the other color instead.
    pub fallbacks: u64,
    /// The last transitions, oldest first (at most 64).
    pub history: Vec<Transition>,
    /// Whether outcomes are measured right now (see
    /// [`RolloutHandle::measurements`]).
    pub measuring: bool,
    /// Whether a rollout plan drives the router (deploys wait for it).
    pub plan_running: bool,
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

    /// The version the active color holds.
    pub fn active_version(&self) -> &VersionLabel {
        &self.color(self.active).version
    }
}

/// Per-color version and counters in a [`RolloutStatus`]. The counters are the
/// current version's: they start at zero when a version is deployed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ColorStatus {
    /// The version the color holds.
    pub version: VersionLabel,
    /// Whether that version was last seen ready.
    pub readiness: Readiness,
    /// Requests admitted and not yet finished (response body not ended or dropped).
    pub in_flight: u64,
    /// Mirrored copies running on this color (it is the standby and
    /// [`RolloutHandle::mirror_standby`] is on).
    pub mirrored_in_flight: u64,
    /// Requests admitted to this version (mirrored copies not included).
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

/// A replaced version that is still in use, in a [`RolloutStatus`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetiringStatus {
    /// The version.
    pub version: VersionLabel,
    /// The color it was in.
    pub color: Color,
    /// Its requests still in flight.
    pub in_flight: u64,
    /// Its mirrored copies still running.
    pub mirrored_in_flight: u64,
    /// Router clones still holding its service (until their next request),
    /// plus copies of the slots being read.
    pub holders: u64,
}
