//! Futures that wait for a color to drain and for a retired version to go.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use super::core::Control;
use super::counters::Block;
use super::version::{Retiring, VersionLabel};
use crate::Color;

fn next_id() -> u64 {
    static IDS: AtomicU64 = AtomicU64::new(0);
    IDS.fetch_add(1, Ordering::Relaxed)
}

/// One block a [`Drained`] waits on.
struct Watch {
    block: &'static Block,
    epoch: u64,
    /// Wake-ups seen at the first registration; `None` when not registered.
    registered: Option<u64>,
    done: bool,
}

/// Future returned by [`RolloutHandle::drained`](super::RolloutHandle::drained):
/// waits for the versions the color holds when it is first polled (the
/// current one, and replaced ones still running).
#[must_use = "futures do nothing unless polled"]
pub struct Drained {
    control: Arc<Control>,
    color: Color,
    id: u64,
    /// The versions of the color when first polled: the current one and the
    /// retired ones still running.
    watches: Option<Vec<Watch>>,
}

impl Drained {
    pub(crate) fn new(control: Arc<Control>, color: Color) -> Drained {
        Drained {
            control,
            color,
            id: next_id(),
            watches: None,
        }
    }
}

impl Future for Drained {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let watches = this.watches.get_or_insert_with(|| {
            let st = this.control.state();
            let current = st.version(this.color);
            let mut watches = vec![Watch {
                block: current.block,
                epoch: current.epoch,
                registered: None,
                done: false,
            }];
            for r in st.retiring.iter().filter(|r| r.color == this.color) {
                watches.push(Watch {
                    block: r.block,
                    epoch: r.epoch,
                    registered: None,
                    done: false,
                });
            }
            watches
        });
        // The replaced versions first (no new request reaches them: once
        // idle they stay idle), then the current one, from its first idle
        // moment after they drained: so it resolves when nothing of the
        // color runs at all.
        let (current, replaced) = watches.split_at_mut(1);
        let mut all = true;
        for w in replaced.iter_mut().filter(|w| !w.done) {
            w.done = w
                .block
                .watch_drain(w.epoch, this.id, cx.waker(), &mut w.registered);
            all &= w.done;
        }
        if !all {
            return Poll::Pending;
        }
        let w = &mut current[0];
        w.done = w.done
            || w.block
                .watch_drain(w.epoch, this.id, cx.waker(), &mut w.registered);
        if w.done {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for Drained {
    fn drop(&mut self) {
        for w in self.watches.iter_mut().flatten() {
            w.block.unwatch_drain(w.epoch, self.id, &mut w.registered);
        }
    }
}

impl fmt::Debug for Drained {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Drained")
            .field("color", &self.color)
            .finish_non_exhaustive()
    }
}

/// Resolves when a replaced version is gone: nothing holds its service any
/// more (its slot, router clones, mirrored copies), no request or copy runs
/// on it, and the service value itself has been dropped.
///
/// Returned by [`Deployed::retired`](super::Deployed::retired). Router clones
/// let go of the old version on their next request, or when they are dropped
/// (an HTTP connection that stays idle keeps its clone until it closes or
/// sends a request).
#[must_use = "futures do nothing unless polled"]
pub struct Retired {
    retiring: Retiring,
    id: u64,
    registered: bool,
}

impl Retired {
    pub(crate) fn new(retiring: Retiring) -> Retired {
        Retired {
            retiring,
            id: next_id(),
            registered: false,
        }
    }

    /// The version being retired.
    pub fn version(&self) -> &VersionLabel {
        &self.retiring.label
    }

    /// The color it was in.
    pub fn color(&self) -> Color {
        self.retiring.color
    }

    /// Whether it is gone already.
    pub fn is_gone(&self) -> bool {
        self.retiring.gone()
    }
}

impl Future for Retired {
    type Output = VersionLabel;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<VersionLabel> {
        let this = self.get_mut();
        let r = &this.retiring;
        if r.block.watch_retire(r.epoch, this.id, cx.waker()) {
            this.registered = false;
            Poll::Ready(r.label.clone())
        } else {
            this.registered = true;
            Poll::Pending
        }
    }
}

impl Drop for Retired {
    fn drop(&mut self) {
        if self.registered {
            self.retiring.block.unwatch_retire(self.id);
        }
    }
}

impl fmt::Debug for Retired {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retired")
            .field("version", &self.retiring.label)
            .field("color", &self.retiring.color)
            .field("gone", &self.is_gone())
            .finish()
    }
}
