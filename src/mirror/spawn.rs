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
