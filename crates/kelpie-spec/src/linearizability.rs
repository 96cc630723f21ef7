//! `KelpieLinearizability`: clients invoke one actor served by two nodes,
//! through the production ownership core (the [`KelpieSingleActivation`]
//! model's actions: claims, session timeouts, zombies, lease expiry,
//! crashes) and fenced commits to the production store. The actor holds
//! one of two data types ([`ActorData`]), whose handlers here mirror the
//! simulator's register and counter actors (runtime scenario):
//! - a **register** ([`Register`]: `Put(v)` replies `WriteOk`, `Get`
//!   replies `ReadOk(value)`);
//! - a **counter** ([`Counter`]: `Add(n)` is a read-modify-write of the
//!   activation's state and replies `AddOk(new value)`, as the runtime's
//!   counter replies the value it committed; `Get` replies `GetOk(value)`).
//!
//! Every client operation is recorded in a Stateright
//! [`LinearizabilityTester`] over the data type's sequential specification,
//! part of the state; `always "Linearizable"` checks every reachable
//! history (G6).
//!
//! The runtime's request path, as `runtime.rs` runs it: a node serves a
//! request only with an activation (fence installed, state loaded from the
//! store) while its core says it serves the actor. The handler runs on the
//! activation's state ([`ActorData::handle`]). An operation that leaves the
//! state as it is (a read) commits nothing and replies from the
//! activation's state after checking the node still serves. One that
//! changes it (a `Put`, an `Add`) commits the new state with the fencing
//! precondition (the production commit path, [`crate::common::fenced_write`])
//! and replies once applied. A rejected commit has no effect and ends the
//! activation; the client retries, on whichever node serves then. A zombie
//! (its session lost while a commit was in flight) still lands that one
//! commit — for the counter, a sum computed from the state it loaded.
//!
//! Bounds (`Default`): the `KelpieSingleActivation` defaults but no
//! duplicated claims (`DuplicateClaim`, `Reorder`: `KelpieSingleActivation`
//! checks them; here they would more than double the check's time), and
//! two clients with the scripts `[Put(1), Get]` and `[Put(2), Get]`
//! ([`RegisterLinearizability`]) or `[Add(1), Get]` and `[Add(2), Get]`
//! ([`CounterLinearizability`]).

use std::fmt::Debug;
use std::hash::Hash;

use bytes::Bytes;
pub use stateright::semantics::register::Register;
use stateright::semantics::register::{RegisterOp, RegisterRet};
use stateright::semantics::{ConsistencyTester, LinearizabilityTester, SequentialSpec};
use stateright::{Model, Property};

use crate::common::actor;
use crate::single_activation::{KelpieSingleActivation, SaAction, SaState};

/// What the actor's handler does with an operation on the activation's
/// state (`runtime.rs`: the state it leaves, the reply).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Handled<Ret> {
    /// The state after the operation; if it differs from the state before,
    /// the runtime commits it (fenced) before replying.
    pub state: u8,
    /// The reply.
    pub reply: Ret,
}

/// A data type of the actor: its client operations, its sequential
/// specification (the type itself, the reference object a history is
/// checked against) and its handler. The actor's state is a `u8`; an actor
/// never written holds the default state, 0.
pub trait ActorData:
    SequentialSpec<
        Op: Clone + Debug + Hash + PartialEq + Send + Sync,
        Ret: Clone + Debug + Hash + PartialEq + Send + Sync,
    > + Clone
    + Debug
    + Hash
    + PartialEq
    + Send
    + Sync
    + 'static
{
    /// A client operation (a step of a client's script).
    type ClientOp: Copy + Debug + Eq + Hash + Send + Sync + 'static;

    /// The reference object before any operation (the default state, 0).
    fn initial() -> Self;

    /// `op` as an operation of the specification.
    fn spec_op(op: Self::ClientOp) -> Self::Op;

    /// The actor's handler: `op` run on the activation's `state`.
    fn handle(op: Self::ClientOp, state: u8) -> Handled<Self::Ret>;

    /// The clients' scripts of the default bounds.
    fn default_scripts() -> Vec<Vec<Self::ClientOp>>;
}

/// A client operation on the register actor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientOp {
    /// Write the value.
    Put(u8),
    /// Read the value.
    Get,
}

impl ActorData for Register<u8> {
    type ClientOp = ClientOp;

    fn initial() -> Self {
        Register(0)
    }

    fn spec_op(op: ClientOp) -> RegisterOp<u8> {
        match op {
            ClientOp::Put(value) => RegisterOp::Write(value),
            ClientOp::Get => RegisterOp::Read,
        }
    }

    fn handle(op: ClientOp, state: u8) -> Handled<RegisterRet<u8>> {
        match op {
            ClientOp::Put(value) => Handled {
                state: value,
                reply: RegisterRet::WriteOk,
            },
            ClientOp::Get => Handled {
                state,
                reply: RegisterRet::ReadOk(state),
            },
        }
    }

    fn default_scripts() -> Vec<Vec<ClientOp>> {
        vec![
            vec![ClientOp::Put(1), ClientOp::Get],
            vec![ClientOp::Put(2), ClientOp::Get],
        ]
    }
}

/// The counter actor's sequential specification: its value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Counter(pub u8);

/// An operation on the counter actor (both the clients' and the
/// specification's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CounterOp {
    /// Add `n` to the value (a read-modify-write of the actor's state).
    Add(u8),
    /// Read the value.
    Get,
}

/// A reply of the counter actor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CounterRet {
    /// The value after the addition (the runtime's counter replies the
    /// value it committed, as the simulator's `Counter` spec returns).
    AddOk(u8),
    /// The value read.
    GetOk(u8),
}

impl SequentialSpec for Counter {
    type Op = CounterOp;
    type Ret = CounterRet;

    fn invoke(&mut self, op: &CounterOp) -> CounterRet {
        match *op {
            CounterOp::Add(n) => {
                self.0 = self.0.wrapping_add(n);
                CounterRet::AddOk(self.0)
            }
            CounterOp::Get => CounterRet::GetOk(self.0),
        }
    }
}

impl ActorData for Counter {
    type ClientOp = CounterOp;

    fn initial() -> Self {
        Counter(0)
    }

    fn spec_op(op: CounterOp) -> CounterOp {
        op
    }

    fn handle(op: CounterOp, state: u8) -> Handled<CounterRet> {
        // The handler itself: read the activation's state, add, reply.
        match op {
            CounterOp::Add(n) => {
                let state = state.wrapping_add(n);
                Handled {
                    state,
                    reply: CounterRet::AddOk(state),
                }
            }
            CounterOp::Get => Handled {
                state,
                reply: CounterRet::GetOk(state),
            },
        }
    }

    fn default_scripts() -> Vec<Vec<CounterOp>> {
        vec![
            vec![CounterOp::Add(1), CounterOp::Get],
            vec![CounterOp::Add(2), CounterOp::Get],
        ]
    }
}

/// A client history of the actor, checked for linearizability.
#[derive(Clone, Debug, PartialEq, Hash)]
pub struct History<S: ActorData>(pub LinearizabilityTester<usize, S>);

// The specifications and their ops and replies compare `u8`s: `PartialEq`
// is an equivalence.
impl<S: ActorData> Eq for History<S> {}

/// One client: its progress through its script and its operation in flight.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientState<Op> {
    /// Operations of its script completed.
    pub done: usize,
    /// The operation in flight (retried until a node completes it).
    pub pending: Option<Op>,
}

/// A state of the model.
#[derive(Clone, Debug, PartialEq, Hash)]
pub struct LinState<S: ActorData> {
    /// Ownership, storage and the nodes' activations.
    pub ownership: SaState,
    /// Per node: the actor's state its activation loaded (`None`: no
    /// activation; `Some(None)`: the actor was never written).
    pub loaded: Vec<Option<Option<u8>>>,
    /// The clients.
    pub clients: Vec<ClientState<S::ClientOp>>,
    /// Every invocation and reply so far.
    pub history: History<S>,
    /// Ghost: bit `n` set once node `n` completed a client operation.
    pub served_by: u8,
}

// Its parts' `PartialEq` are equivalences (see `History`).
impl<S: ActorData> Eq for LinState<S> {}

/// An action of the model.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LinAction {
    /// An ownership action (except `FencedWrite`: writes come from clients).
    Ownership(SaAction),
    /// Client `c` invokes the next operation of its script.
    Invoke(usize),
    /// Node `n` handles client `c`'s operation.
    Serve(usize, usize),
}

/// The linearizability model of an actor of data type `S`.
#[derive(Clone, Debug)]
pub struct KelpieLinearizability<S: ActorData = Register<u8>> {
    /// The ownership model underneath.
    pub ownership: KelpieSingleActivation,
    /// Each client's script.
    pub scripts: Vec<Vec<S::ClientOp>>,
}

/// The model of the register actor.
pub type RegisterLinearizability = KelpieLinearizability<Register<u8>>;

/// The model of the counter actor.
pub type CounterLinearizability = KelpieLinearizability<Counter>;

impl<S: ActorData> Default for KelpieLinearizability<S> {
    fn default() -> Self {
        Self {
            ownership: KelpieSingleActivation {
                max_duplicates: 0,
                ..KelpieSingleActivation::default()
            },
            scripts: S::default_scripts(),
        }
    }
}

fn decode(value: &Option<Bytes>) -> Option<u8> {
    value.as_ref().and_then(|bytes| bytes.first().copied())
}

impl<S: ActorData> KelpieLinearizability<S> {
    /// Whether node `n` may serve `op` now: every operation needs an
    /// activation; a read (the handler leaves the state as it is) needs
    /// the core serving the actor with that token; a write needs the core
    /// serving it or a zombie's commit in flight, which still arrives.
    fn can_serve(state: &LinState<S>, n: usize, op: S::ClientOp) -> bool {
        let node = &state.ownership.nodes[n];
        let Some(token) = node.activation else {
            return false;
        };
        if node.down {
            return false;
        }
        let Some(loaded) = state.loaded[n] else {
            return false;
        };
        let loaded = loaded.unwrap_or(0);
        let serving = KelpieSingleActivation::serving(&state.ownership, n)
            && node.core.owned().iter().any(|(a, t)| *a == actor() && *t == token);
        let writes = S::handle(op, loaded).state != loaded;
        serving || (writes && node.zombie)
    }

    /// Keeps each node's loaded state in step with its activation: a new
    /// activation loads the actor's state from the store (`load_state`).
    fn sync_loaded(last: &SaState, state: &mut LinState<S>) {
        for n in 0..state.ownership.nodes.len() {
            let before = last.nodes[n].activation;
            let after = state.ownership.nodes[n].activation;
            if after.is_none() {
                state.loaded[n] = None;
            } else if after != before {
                state.loaded[n] = Some(decode(&state.ownership.storage.value));
            }
        }
    }

    /// Client `c`'s operation returned `reply`, served by node `n`.
    fn complete(state: &mut LinState<S>, c: usize, n: usize, reply: S::Ret) -> Option<()> {
        // An invalid history (no op in flight) is a model bug.
        state.history.0.on_return(c, reply).ok()?;
        state.clients[c].pending = None;
        state.clients[c].done += 1;
        state.served_by |= 1 << n;
        Some(())
    }
}

impl<S: ActorData> Model for KelpieLinearizability<S> {
    type State = LinState<S>;
    type Action = LinAction;

    fn init_states(&self) -> Vec<LinState<S>> {
        self.ownership
            .init_states()
            .into_iter()
            .map(|ownership| LinState {
                loaded: vec![None; ownership.nodes.len()],
                ownership,
                clients: vec![ClientState { done: 0, pending: None }; self.scripts.len()],
                history: History(LinearizabilityTester::new(S::initial())),
                served_by: 0,
            })
            .collect()
    }

    fn actions(&self, state: &LinState<S>, actions: &mut Vec<LinAction>) {
        let mut inner = Vec::new();
        self.ownership.actions(&state.ownership, &mut inner);
        actions.extend(
            inner
                .into_iter()
                .filter(|action| !matches!(action, SaAction::FencedWrite(_)))
                .map(LinAction::Ownership),
        );
        for (c, client) in state.clients.iter().enumerate() {
            match client.pending {
                None if client.done < self.scripts[c].len() => actions.push(LinAction::Invoke(c)),
                None => {}
                Some(op) => {
                    for n in 0..state.ownership.nodes.len() {
                        if Self::can_serve(state, n, op) {
                            actions.push(LinAction::Serve(c, n));
                        }
                    }
                }
            }
        }
    }

    fn next_state(&self, last: &LinState<S>, action: LinAction) -> Option<LinState<S>> {
        let mut state = last.clone();
        match action {
            LinAction::Ownership(action) => {
                state.ownership = self.ownership.next_state(&last.ownership, action)?;
                Self::sync_loaded(&last.ownership, &mut state);
            }
            LinAction::Invoke(c) => {
                let op = self.scripts[c][state.clients[c].done];
                state.clients[c].pending = Some(op);
                // An invalid history (a second op in flight) is a model bug.
                state.history.0.on_invoke(c, S::spec_op(op)).ok()?;
            }
            LinAction::Serve(c, n) => {
                let op = state.clients[c].pending?;
                // An actor never written holds its default state, 0.
                let loaded = state.loaded[n]?.unwrap_or(0);
                let handled = S::handle(op, loaded);
                if handled.state == loaded {
                    // A read: nothing to commit; `can_serve` checked the
                    // node still serves the actor.
                    Self::complete(&mut state, c, n, handled.reply)?;
                } else {
                    let before = state.ownership.clone();
                    let applied = KelpieSingleActivation::fenced_write(
                        &mut state.ownership,
                        n,
                        Bytes::from(vec![handled.state]),
                    )?;
                    Self::sync_loaded(&before, &mut state);
                    if applied {
                        if state.loaded[n].is_some() {
                            state.loaded[n] = Some(Some(handled.state));
                        }
                        Self::complete(&mut state, c, n, handled.reply)?;
                    }
                }
            }
        }
        Some(state)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("Linearizable", |_: &Self, state: &LinState<S>| {
                state.history.0.serialized_history().is_some()
            }),
            Property::sometimes("AllOperationsComplete", |model: &Self, state: &LinState<S>| {
                state
                    .clients
                    .iter()
                    .zip(&model.scripts)
                    .all(|(client, script)| client.done == script.len())
            }),
            Property::sometimes("ServedByBothNodes", |_: &Self, state: &LinState<S>| {
                state.served_by == 0b11
            }),
        ]
    }
}
