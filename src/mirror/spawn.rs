use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// A boxed task or timer future handed to a [`Spawn`] implementation.
pub type BoxTask = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Runs shadow work off the request path.
///
/// The mirror hands each shadow request to [`spawn`](Spawn::spawn) and bounds
/// it with [`sleep`](Spawn::sleep). With the `tokio` feature (on by default)
/// [`TokioSpawner`] is used; implement this trait to use another executor.
pub trait Spawn: Send + Sync + 'static {
    /// Starts `task` in the background.
    ///
    /// # Errors
    /// [`SpawnError`] when no executor is available; the copy is then skipped
    /// and counted, never a panic.
    fn spawn(&self, task: BoxTask) -> Result<(), SpawnError>;

    /// A future that completes after `duration`: the shadow deadline.
    fn sleep(&self, duration: Duration) -> BoxTask;
}

/// The executor refused a task, or there is none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpawnError;

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no executor to run the shadow request")
    }
}

impl std::error::Error for SpawnError {}

/// Spawns on the tokio runtime of the calling thread; with none, the copy is
/// skipped and counted.
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioSpawner;

#[cfg(feature = "tokio")]
impl Spawn for TokioSpawner {
    fn spawn(&self, task: BoxTask) -> Result<(), SpawnError> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| SpawnError)?;
        handle.spawn(task);
        Ok(())
    }

    fn sleep(&self, duration: Duration) -> BoxTask {
        // A runtime built without timers makes `tokio::time::sleep` panic. The
        // deadline then expires at once: every copy times out and is counted,
        // which keeps shadow work bounded instead of unbounded.
        match std::panic::catch_unwind(|| tokio::time::sleep(duration)) {
            Ok(sleep) => Box::pin(sleep),
            Err(_) => Box::pin(std::future::ready(())),
        }
    }
}

/// Runs shadow work on a thread of its own at the lowest CPU priority there
/// is (Linux `SCHED_IDLE`; elsewhere the lowest priority the platform allows),
/// so a shadow only ever uses CPU time the primary leaves unused.
///
/// A healthy shadow doing real model work costs CPU: on a busy machine, with
/// the default [`TokioSpawner`] it competes with the primary for the same
/// cores. With this spawner it does not; when the machine is saturated the
/// shadows fall behind, and the mirror's bounds drop the copies they cannot
/// take (counted as `dropped_saturated` or timeouts), which is the trade:
/// fewer copies under full load, never a slower primary.
///
/// The thread and its runtime stop when the last clone is dropped.
///
/// ```
/// use tower_rollout::mirror::{IdleSpawner, MirrorLayer};
/// # let shadow = tower::service_fn(|_req: http::Request<tower_rollout::mirror::MirrorBody<String>>| async {
/// #     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
/// # });
/// let spawner = IdleSpawner::new().expect("a thread for shadow work");
/// let (layer, stats) = MirrorLayer::builder(shadow).spawner(spawner).build().unwrap();
/// # drop((layer, stats));
/// ```
#[cfg(feature = "idle")]
#[cfg_attr(docsrs, doc(cfg(feature = "idle")))]
#[derive(Clone, Debug)]
pub struct IdleSpawner {
    inner: std::sync::Arc<IdleInner>,
}

#[cfg(feature = "idle")]
#[derive(Debug)]
struct IdleInner {
    handle: tokio::runtime::Handle,
    stop: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    /// Whether the thread's priority could be lowered.
    lowered: bool,
}

#[cfg(feature = "idle")]
impl IdleSpawner {
    /// Starts the shadow thread and its runtime.
    ///
    /// # Errors
    /// When the thread or the runtime cannot be created.
    pub fn new() -> std::io::Result<IdleSpawner> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("rollout-shadow".into())
            .spawn(move || {
                let lowered = lower_priority();
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                let _ = tx.send(Ok((rt.handle().clone(), stop, lowered)));
                // Runs spawned shadows until the last spawner is dropped.
                let _ = rt.block_on(stopped);
            })?;
        let (handle, stop, lowered) = rx
            .recv()
            .map_err(|_| std::io::Error::other("shadow thread exited"))??;
        Ok(IdleSpawner {
            inner: std::sync::Arc::new(IdleInner {
                handle,
                stop: std::sync::Mutex::new(Some(stop)),
                lowered,
            }),
        })
    }

    /// Whether the thread runs at the lowered priority (lowering can be
    /// refused by the platform; the thread then runs at normal priority).
    pub fn is_idle_priority(&self) -> bool {
        self.inner.lowered
    }
}

#[cfg(feature = "idle")]
fn lower_priority() -> bool {
    use thread_priority::*;
    #[cfg(target_os = "linux")]
    {
        set_thread_priority_and_policy(
            thread_native_id(),
            ThreadPriority::Min,
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
        )
        .is_ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        set_current_thread_priority(ThreadPriority::Min).is_ok()
    }
}

#[cfg(feature = "idle")]
impl Drop for IdleInner {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = stop.send(());
        }
    }
}

#[cfg(feature = "idle")]
impl Spawn for IdleSpawner {
    fn spawn(&self, task: BoxTask) -> Result<(), SpawnError> {
        self.inner.handle.spawn(task);
        Ok(())
    }

    fn sleep(&self, duration: Duration) -> BoxTask {
        // Called inside the task, on the shadow thread's runtime.
        TokioSpawner.sleep(duration)
    }
}
