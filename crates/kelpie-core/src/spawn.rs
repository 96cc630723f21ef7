//! The task-spawning seam.
//!
//! Production spawns on tokio ([`TokioSpawner`]); the simulator spawns onto
//! its single-threaded seeded executor, tagged with the node that owns the
//! task so a crash drops every task of that node.

use std::sync::Arc;

use futures::future::BoxFuture;

/// How a spawned task ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskExit {
    /// The future ran to completion.
    Completed,
    /// The future panicked; the message is the panic payload if it was text.
    Panicked {
        /// The panic message, or `"<non-string panic>"`.
        message: String,
    },
    /// The task was aborted (or its node crashed) before completing.
    Aborted,
}

/// Control over one spawned task.
pub trait TaskControl: Send + Sync {
    /// Requests that the task stop at its next await point. Idempotent.
    fn abort(&self);

    /// Waits for the task to end and says how it ended.
    ///
    /// Cancellation: dropping the returned future does not affect the task.
    fn join(self: Box<Self>) -> BoxFuture<'static, TaskExit>;
}

/// A handle to a spawned task. Dropping it detaches the task (it keeps
/// running); call [`TaskHandle::abort`] to stop it.
pub struct TaskHandle {
    control: Box<dyn TaskControl>,
}

impl std::fmt::Debug for TaskHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TaskHandle")
    }
}

impl TaskHandle {
    /// Wraps a seam-specific task control.
    pub fn new(control: Box<dyn TaskControl>) -> Self {
        Self { control }
    }

    /// Requests that the task stop at its next await point.
    pub fn abort(&self) {
        self.control.abort();
    }

    /// Waits for the task to end.
    pub async fn join(self) -> TaskExit {
        self.control.join().await
    }
}

/// Spawns tasks. `name` appears in traces and logs.
pub trait Spawner: Send + Sync + 'static {
    /// Starts `future` as an independent task.
    fn spawn(&self, name: &'static str, future: BoxFuture<'static, ()>) -> TaskHandle;

    /// Runs blocking work (file I/O, fsync) where it cannot stall async
    /// tasks: tokio's blocking pool in production; inline, as one step of
    /// its own task, in simulation.
    fn spawn_blocking(&self, name: &'static str, work: Box<dyn FnOnce() + Send>) -> TaskHandle;
}

/// A shared spawner handle.
pub type SharedSpawner = Arc<dyn Spawner>;

/// Spawns onto the ambient tokio runtime (production).
#[derive(Clone, Debug)]
pub struct TokioSpawner {
    handle: tokio::runtime::Handle,
}

impl TokioSpawner {
    /// A spawner for the tokio runtime this is called from.
    ///
    /// Returns `None` outside a tokio runtime.
    pub fn current() -> Option<Self> {
        tokio::runtime::Handle::try_current().ok().map(|handle| Self { handle })
    }
}

struct TokioTask {
    handle: tokio::task::JoinHandle<()>,
}

impl TaskControl for TokioTask {
    fn abort(&self) {
        self.handle.abort();
    }

    fn join(self: Box<Self>) -> BoxFuture<'static, TaskExit> {
        Box::pin(async move {
            match self.handle.await {
                Ok(()) => TaskExit::Completed,
                Err(error) if error.is_cancelled() => TaskExit::Aborted,
                Err(error) => TaskExit::Panicked {
                    message: panic_message(error.into_panic().as_ref()),
                },
            }
        })
    }
}

impl Spawner for TokioSpawner {
    fn spawn(&self, _name: &'static str, future: BoxFuture<'static, ()>) -> TaskHandle {
        TaskHandle::new(Box::new(TokioTask {
            handle: self.handle.spawn(future),
        }))
    }

    fn spawn_blocking(&self, _name: &'static str, work: Box<dyn FnOnce() + Send>) -> TaskHandle {
        TaskHandle::new(Box::new(TokioTask {
            handle: self.handle.spawn_blocking(work),
        }))
    }
}

/// The text of a panic payload, for reporting.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&'static str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "<non-string panic>".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tokio_spawner_reports_each_exit() {
        let spawner = TokioSpawner::current().expect("inside a runtime");
        let done = spawner.spawn("done", Box::pin(async {}));
        assert_eq!(done.join().await, TaskExit::Completed);
        let boom = spawner.spawn("boom", Box::pin(async { panic!("handler exploded") }));
        assert_eq!(
            boom.join().await,
            TaskExit::Panicked {
                message: "handler exploded".to_string()
            }
        );
        let stuck = spawner.spawn("stuck", Box::pin(futures::future::pending()));
        stuck.abort();
        assert_eq!(stuck.join().await, TaskExit::Aborted);
        let (tx, rx) = std::sync::mpsc::channel();
        let blocking = spawner.spawn_blocking("fsync", Box::new(move || tx.send(42).expect("receiver alive")));
        assert_eq!(blocking.join().await, TaskExit::Completed);
        assert_eq!(rx.recv(), Ok(42));
    }

    #[test]
    fn no_runtime_no_spawner() {
        assert_eq!(TokioSpawner::current().map(|_| "spawner"), None);
    }
}
