//! The ownership driver: runs the sans-IO [`Ownership`] core against a
//! node's [`NodeEnv`] — ticks it on the node's clock, executes its commands
//! against the coordination store (each as its own task, so a slow request
//! never delays ticks and self-fencing), and feeds the answers back.
//!
//! [`OwnershipDriver::claim`] waits for the outcome of a claim;
//! [`OwnershipDriver::serving_token`] answers "may I serve this actor now?"
//! on the node's clock; [`OwnershipDriver::fenced`] subscribes to fencing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::channel::{mpsc, oneshot};
use kelpie_core::clock::MonotonicInstant;
use kelpie_core::{ActorId, NodeEnv, NodeId};
use kelpie_storage::{StorageError, Store};

use crate::ownership::{Answer, Command, Event, FencingToken, Input, Ownership, OwnershipConfig};

/// Why a claim did not make this node the owner.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    /// Another node owns the actor: send the request there.
    #[error("actor is owned by node {owner}")]
    OwnedElsewhere {
        /// The owner.
        owner: NodeId,
    },
    /// The claim failed or timed out; retrying may succeed.
    #[error("claim failed or timed out; retry")]
    Unavailable,
    /// The store already holds a newer fencing token: this claim is stale.
    #[error("fencing token {token:?} is older than the store's {stored:?}")]
    Stale {
        /// Our token.
        token: FencingToken,
        /// The store's.
        stored: FencingToken,
    },
    /// Installing the fencing token in storage failed.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
}

struct Shared {
    core: Ownership,
    waiters: BTreeMap<ActorId, Vec<oneshot::Sender<Result<FencingToken, ClaimError>>>>,
    fenced: Vec<mpsc::UnboundedSender<(ActorId, FencingToken)>>,
}

/// Drives one node's ownership protocol.
pub struct OwnershipDriver {
    env: NodeEnv,
    shared: Mutex<Shared>,
    tick: Duration,
    /// Bumped (under the lock) after every step of the core but a tick: a
    /// [`ServingGrant`] is only trusted while this has not moved. A tick
    /// never ends a grant before the grant's own end (it expires a session
    /// only once its end has passed, and every grant on it ends there), so
    /// the periodic ticks do not send every active actor back to the lock.
    generation: AtomicU64,
}

/// A node's permission to serve one actor, as of one step of the core:
/// valid while no further step happened and the node's clock is before
/// `until`. Lets an actor check "may I still serve?" without the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServingGrant {
    /// The actor's fencing token.
    pub token: FencingToken,
    until: MonotonicInstant,
    generation: u64,
}

impl std::fmt::Debug for OwnershipDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnershipDriver")
            .field("node", &self.env.node_id)
            .finish_non_exhaustive()
    }
}

impl OwnershipDriver {
    /// Starts the driver: a ticker task on `env`'s spawner.
    pub fn start(env: NodeEnv, config: OwnershipConfig) -> Arc<OwnershipDriver> {
        let tick = (config.lease_ttl() / 20).max(Duration::from_millis(1));
        let driver = Arc::new(OwnershipDriver {
            shared: Mutex::new(Shared {
                core: Ownership::new(env.node_id.clone(), config),
                waiters: BTreeMap::new(),
                fenced: Vec::new(),
            }),
            env,
            tick,
            generation: AtomicU64::new(0),
        });
        let ticker = driver.clone();
        let _task = driver.env.spawner.spawn(
            "ownership-ticker",
            Box::pin(async move {
                loop {
                    ticker.step(Input::Tick);
                    ticker.env.clock.sleep(ticker.tick).await;
                }
            }),
        );
        driver
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // The core is only mutated by `step`, which cannot leave it half-updated.
        self.shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The node this driver belongs to.
    pub fn node(&self) -> &NodeId {
        &self.env.node_id
    }

    /// Feeds `input` to the core now, then executes its commands and
    /// delivers its events. Never holds the lock across an await.
    fn step(self: &Arc<Self>, input: Input) {
        let now = self.env.clock.now_monotonic();
        let mut follow_ups = Vec::new();
        // See `generation` (and the core's test of this).
        let may_revoke = !matches!(input, Input::Tick);
        let (commands, deliveries, fenced) = {
            let mut shared = self.lock();
            let output = shared.core.step(input, now);
            if may_revoke {
                self.generation.fetch_add(1, Ordering::AcqRel);
            }
            let mut deliveries = Vec::new();
            let mut fenced = Vec::new();
            for event in output.events {
                match event {
                    Event::Serving { actor, token } => match shared.waiters.remove(&actor) {
                        Some(waiters) if !waiters.is_empty() => deliveries.push((waiters, Ok(token))),
                        // Nobody waits any more (the claimer gave up): do not
                        // hold an actor nothing serves.
                        _ => follow_ups.push(Input::Release { actor }),
                    },
                    Event::OwnedElsewhere { actor, owner } => deliveries.push((
                        shared.waiters.remove(&actor).unwrap_or_default(),
                        Err(ClaimError::OwnedElsewhere { owner }),
                    )),
                    Event::ClaimFailed { actor } => deliveries.push((
                        shared.waiters.remove(&actor).unwrap_or_default(),
                        Err(ClaimError::Unavailable),
                    )),
                    Event::Fenced { actor, token } => {
                        tracing::info!(node = %self.env.node_id, %actor, ?token, "self-fenced");
                        deliveries.push((
                            shared.waiters.remove(&actor).unwrap_or_default(),
                            Err(ClaimError::Unavailable),
                        ));
                        fenced.push((actor, token));
                    }
                    // Claims that arrived while the actor was being released
                    // are made now.
                    Event::Released { actor } => {
                        if shared.waiters.get(&actor).is_some_and(|waiters| !waiters.is_empty()) {
                            follow_ups.push(Input::Claim { actor });
                        }
                    }
                }
            }
            shared.fenced.retain(|sender| !sender.is_closed());
            let listeners = shared.fenced.clone();
            (output.commands, deliveries, (fenced, listeners))
        };
        for (waiters, result) in deliveries {
            for waiter in waiters {
                let _ = waiter.send(result.clone());
            }
        }
        let (fenced, listeners) = fenced;
        for event in fenced {
            for listener in &listeners {
                let _ = listener.unbounded_send(event.clone());
            }
        }
        for command in commands {
            self.execute(command);
        }
        for input in follow_ups {
            self.step(input);
        }
    }

    fn execute(self: &Arc<Self>, command: Command) {
        let driver = self.clone();
        let _task = self.env.spawner.spawn(
            "ownership-command",
            Box::pin(async move {
                let coordination = driver.env.coordination.clone();
                let answer = match &command {
                    Command::GrantSession { ttl, .. } => coordination.lease_grant(*ttl).await.map(Answer::Granted),
                    Command::KeepAlive { lease, .. } => {
                        coordination.lease_keep_alive(*lease).await.map(|_| Answer::KeptAlive)
                    }
                    Command::Txn { txn, .. } => coordination.txn(txn.clone()).await.map(Answer::Txn),
                };
                let input = command.answered(answer);
                driver.step(input);
            }),
        );
    }

    /// Claims `actor`: resolves with its fencing token once this node owns
    /// it, or with why not.
    ///
    /// Cancellation: dropping the future abandons the wait; the claim itself
    /// may still complete (the node then owns the actor until it releases it
    /// or its session ends).
    pub async fn claim(self: &Arc<Self>, actor: &ActorId) -> Result<FencingToken, ClaimError> {
        let (sender, receiver) = oneshot::channel();
        self.lock().waiters.entry(actor.clone()).or_default().push(sender);
        self.step(Input::Claim { actor: actor.clone() });
        // Bounded: a claim the core cannot act on yet (say, the actor is
        // owned but its session is being renewed) is answered within a TTL.
        let wait = self.tick * 20;
        match kelpie_core::clock::timeout(self.env.clock.as_ref(), wait, receiver).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) | Err(_) => Err(ClaimError::Unavailable),
        }
    }

    /// The token to serve `actor` with now, if this node may serve it.
    pub fn serving_token(&self, actor: &ActorId) -> Option<FencingToken> {
        let now = self.env.clock.now_monotonic();
        self.lock().core.serving_token(actor, now)
    }

    /// The grant to serve `actor` at `now` (a reading of this node's
    /// clock), if this node may.
    pub fn serving_grant(&self, actor: &ActorId, now: MonotonicInstant) -> Option<ServingGrant> {
        let shared = self.lock();
        let generation = self.generation.load(Ordering::Acquire);
        shared
            .core
            .serving_until(actor, now)
            .map(|(token, until)| ServingGrant {
                token,
                until,
                generation,
            })
    }

    /// Whether `grant` still holds at `now` (a reading of this node's
    /// clock): no step of the core since it was given and `now` is before
    /// its end. `false` means "ask again"
    /// ([`OwnershipDriver::serving_grant`]), not necessarily "lost".
    pub fn still_serving(&self, grant: &ServingGrant, now: MonotonicInstant) -> bool {
        self.generation.load(Ordering::Acquire) == grant.generation && now < grant.until
    }

    /// Every actor this node believes it may serve now, with its token.
    pub fn serving(&self) -> Vec<(ActorId, FencingToken)> {
        let now = self.env.clock.now_monotonic();
        let shared = self.lock();
        shared
            .core
            .owned()
            .into_iter()
            .filter(|(actor, _)| shared.core.serving_token(actor, now).is_some())
            .collect()
    }

    /// Actors the core believes it owns, with token and session lease
    /// (whether or not still servable): for invariants.
    pub fn owned_with_lease(&self) -> Vec<(ActorId, FencingToken, kelpie_core::coordination::LeaseId)> {
        self.lock().core.owned_with_lease()
    }

    /// Gives `actor` up (after deactivating it).
    pub fn release(self: &Arc<Self>, actor: &ActorId) {
        self.step(Input::Release { actor: actor.clone() });
    }

    /// A stream of actors this node had to stop serving.
    pub fn fenced(&self) -> mpsc::UnboundedReceiver<(ActorId, FencingToken)> {
        let (sender, receiver) = mpsc::unbounded();
        self.lock().fenced.push(sender);
        receiver
    }
}

/// Installs `token` as `actor`'s fencing token in `store`, unless the store
/// already holds a newer one (then this owner is stale). From this commit on,
/// commits fenced with an older token are rejected by the store.
pub async fn install_fence(store: &Store, actor: &ActorId, token: FencingToken) -> Result<(), ClaimError> {
    let mut txn = store.begin()?;
    let stored = txn.fence_token(actor)?.map(|bytes| {
        let mut array = [0u8; 8];
        let len = bytes.len().min(8);
        array[8 - len..].copy_from_slice(&bytes[..len]);
        FencingToken(u64::from_be_bytes(array))
    });
    match stored {
        Some(stored) if stored > token => Err(ClaimError::Stale { token, stored }),
        Some(stored) if stored == token => Ok(()),
        _ => {
            txn.set_fence_token(actor, token.to_bytes())?;
            txn.commit().await?;
            Ok(())
        }
    }
}
