//! Pieces shared by the models: the production [`Store`] rebuilt from the
//! few storage facts a model state keeps, a spawner that runs nothing (the
//! memory engine commits inline), model time, and the fenced commit path.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use kelpie_core::clock::{Clock, MonotonicInstant, WallTime};
use kelpie_core::coordination::CoordinationState;
use kelpie_core::spawn::{Spawner, TaskControl, TaskExit, TaskHandle};
use kelpie_core::ActorId;
use kelpie_runtime::ownership::{Answer, Command, FencingToken, Input};
use kelpie_storage::{CommitInfo, MemoryEngine, StorageError, Store};

/// The key under which the models' actor keeps its state.
pub const STATE_KEY: &[u8] = b"state";

/// One model time unit, in nanoseconds (1 ms).
pub const UNIT_NANOS: u64 = 1_000_000;

/// `units` model time units as a [`Duration`].
pub fn units(units: u64) -> Duration {
    Duration::from_nanos(units * UNIT_NANOS)
}

/// The instant `units` model time units after a clock's origin.
pub fn instant(units: u64) -> MonotonicInstant {
    MonotonicInstant::from_nanos(units * UNIT_NANOS)
}

/// The one actor every model is about.
pub fn actor() -> ActorId {
    ActorId::new("kv", "a").expect("a valid actor id")
}

/// Drives a future that must complete on its first poll (everything over
/// [`MemoryEngine`] does). Pending would be a bug in the model's
/// assumptions, so it panics.
pub fn complete<F: Future>(future: F) -> F::Output {
    future
        .now_or_never()
        .expect("over MemoryEngine this completes on the first poll")
}

struct NoTask;

impl TaskControl for NoTask {
    fn abort(&self) {}

    fn join(self: Box<Self>) -> BoxFuture<'static, TaskExit> {
        Box::pin(async { TaskExit::Aborted })
    }
}

/// A spawner that drops every task: the store's committer task is never
/// needed, since [`MemoryEngine`] commits apply inline in
/// [`kelpie_storage::Transaction::commit`].
#[derive(Clone, Copy, Debug, Default)]
pub struct NoSpawner;

impl Spawner for NoSpawner {
    fn spawn(&self, _name: &'static str, _future: BoxFuture<'static, ()>) -> TaskHandle {
        TaskHandle::new(Box::new(NoTask))
    }

    fn spawn_blocking(&self, _name: &'static str, work: Box<dyn FnOnce() + Send>) -> TaskHandle {
        work();
        TaskHandle::new(Box::new(NoTask))
    }
}

/// Runs the store's tasks only when a model says so: spawned tasks (the
/// store's committer) are kept and polled by [`StepSpawner::run_tasks`];
/// blocking work (the committer's engine writes) waits in a queue until
/// [`StepSpawner::run_blocking`] runs the next item. A model can so take a
/// step between two engine writes of one commit (the committer path, which
/// the memory engine uses only under `bug-storage-nonatomic-apply`).
#[derive(Default)]
pub struct StepSpawner {
    tasks: std::sync::Mutex<Vec<BoxFuture<'static, ()>>>,
    blocking: std::sync::Mutex<std::collections::VecDeque<Box<dyn FnOnce() + Send>>>,
}

fn noop_context<R>(poll: impl FnOnce(&mut std::task::Context<'_>) -> R) -> R {
    let waker = futures::task::noop_waker();
    let mut context = std::task::Context::from_waker(&waker);
    poll(&mut context)
}

impl StepSpawner {
    /// Polls every kept task a few rounds (enough for each to reach its
    /// next wait: the models' tasks never need more than one round).
    pub fn run_tasks(&self) {
        for _ in 0..4 {
            let mut tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
            tasks.retain_mut(|task| noop_context(|context| task.as_mut().poll(context)).is_pending());
            let mut kept = self.tasks.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            tasks.append(&mut kept);
            *kept = tasks;
        }
    }

    /// Runs the next queued blocking work item, if any; whether one ran.
    pub fn run_blocking(&self) -> bool {
        let next = self
            .blocking
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop_front();
        match next {
            Some(work) => {
                work();
                true
            }
            None => false,
        }
    }

    /// Blocking work items waiting.
    pub fn blocking_queued(&self) -> usize {
        self.blocking
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }

    /// Polls `future` once (after running the tasks it may wait on).
    pub fn poll_once<T>(&self, future: &mut futures::future::LocalBoxFuture<'_, T>) -> Option<T> {
        self.run_tasks();
        let polled = noop_context(|context| future.as_mut().poll(context));
        self.run_tasks();
        match polled {
            std::task::Poll::Ready(value) => Some(value),
            std::task::Poll::Pending => None,
        }
    }

    /// Drives `future` to completion, running tasks and every blocking work
    /// item it waits on. Panics if it stalls (a bug in the model).
    pub fn drive<T>(&self, future: impl Future<Output = T>) -> T {
        let mut future: futures::future::LocalBoxFuture<'_, T> = Box::pin(future);
        loop {
            if let Some(value) = self.poll_once(&mut future) {
                return value;
            }
            if !self.run_blocking() {
                // A task may still have to forward a result.
                if let Some(value) = self.poll_once(&mut future) {
                    return value;
                }
                panic!("a model future stalled with no work left to run");
            }
        }
    }
}

impl Spawner for StepSpawner {
    fn spawn(&self, _name: &'static str, future: BoxFuture<'static, ()>) -> TaskHandle {
        self.tasks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(future);
        TaskHandle::new(Box::new(NoTask))
    }

    fn spawn_blocking(&self, _name: &'static str, work: Box<dyn FnOnce() + Send>) -> TaskHandle {
        self.blocking
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push_back(work);
        TaskHandle::new(Box::new(NoTask))
    }
}

/// A clock that stands still (the models that need a clock do not depend
/// on time); `sleep` never completes.
#[derive(Clone, Copy, Debug, Default)]
pub struct StillClock;

impl Clock for StillClock {
    fn now_monotonic(&self) -> MonotonicInstant {
        MonotonicInstant::from_nanos(0)
    }

    fn now_wall(&self) -> WallTime {
        WallTime::from_unix_ms(0)
    }

    fn sleep(&self, _duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(futures::future::pending())
    }
}

/// A fresh production store over [`MemoryEngine`].
pub fn new_store() -> Store {
    Store::new(Arc::new(MemoryEngine::new()), Arc::new(NoSpawner))
}

/// Decodes a stored fencing token as `driver::install_fence` does.
pub fn decode_token(bytes: &[u8]) -> u64 {
    let mut array = [0u8; 8];
    let len = bytes.len().min(8);
    array[8 - len..].copy_from_slice(&bytes[..len]);
    u64::from_be_bytes(array)
}

/// What a model state keeps of the actor's storage: its installed fencing
/// token and its state value, both read from the production store after
/// every step. The store is rebuilt from them before the next step; nothing
/// else in the store influences the operations the models run on it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StorageFacts {
    /// The installed fencing token (`None`: never installed).
    pub fence: Option<u64>,
    /// The actor's state value.
    pub value: Option<Bytes>,
}

impl StorageFacts {
    /// A production store holding exactly these facts.
    pub fn rebuild(&self) -> Store {
        let store = new_store();
        if self.fence.is_none() && self.value.is_none() {
            return store;
        }
        let actor = actor();
        let mut txn = store.begin().expect("begin on a fresh store");
        if let Some(fence) = self.fence {
            txn.set_fence_token(&actor, FencingToken(fence).to_bytes())
                .expect("fence token fits");
        }
        if let Some(value) = &self.value {
            txn.put(&actor, STATE_KEY, value.clone()).expect("value fits");
        }
        complete(txn.commit()).expect("seeding a fresh store commits");
        store
    }

    /// The facts as the production store holds them.
    pub fn read(store: &Store) -> Self {
        let actor = actor();
        let mut txn = store.begin().expect("begin");
        let fence = txn
            .fence_token(&actor)
            .expect("read the fence")
            .map(|bytes| decode_token(&bytes));
        let value = txn.get(&actor, STATE_KEY).expect("read the state");
        Self { fence, value }
    }

    /// The installed fence, 0 if none.
    pub fn fence_or_zero(&self) -> u64 {
        self.fence.unwrap_or(0)
    }
}

/// The runtime's commit of the actor's new state (`runtime.rs`): a put
/// committed with the fencing precondition `require_fence(token)`, unless
/// the `bug-runtime-unfenced-commit` switch is on.
pub fn fenced_write(store: &Store, token: FencingToken, value: Bytes) -> Result<CommitInfo, StorageError> {
    let actor = actor();
    let mut txn = store.begin()?;
    txn.put(&actor, STATE_KEY, value)?;
    if !cfg!(feature = "bug-runtime-unfenced-commit") {
        txn.require_fence(&actor, token.to_bytes());
    }
    complete(txn.commit())
}

/// Runs `command` against the coordination state machine at the store's
/// time `now` and returns the core's input that answers it, through the
/// same [`Command::answered`] the ownership driver uses.
pub fn run_command(coord: &mut CoordinationState, command: Command, now: MonotonicInstant) -> Input {
    let answer = match &command {
        Command::GrantSession { ttl, .. } => coord.lease_grant(*ttl, now).map(Answer::Granted),
        Command::KeepAlive { lease, .. } => coord.lease_keep_alive(*lease, now).map(|_| Answer::KeptAlive),
        Command::Txn { txn, .. } => coord.txn(txn, now).map(Answer::Txn),
    };
    command.answered(answer)
}

// Under `bug-storage-nonatomic-apply` commits need the committer task,
// which `NoSpawner` never runs.
#[cfg(all(test, not(feature = "bug-storage-nonatomic-apply")))]
mod tests {
    use super::*;

    #[test]
    fn facts_round_trip_through_the_production_store() {
        let facts = StorageFacts {
            fence: Some(7),
            value: Some(Bytes::from_static(b"x")),
        };
        assert_eq!(StorageFacts::read(&facts.rebuild()), facts);
        assert_eq!(
            StorageFacts::read(&StorageFacts::default().rebuild()),
            StorageFacts::default()
        );
    }
}
