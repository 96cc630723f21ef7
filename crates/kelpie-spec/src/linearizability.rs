//! `KelpieLinearizability`: clients invoke a register (Put/Get) on one actor
//! served by two nodes, through the production ownership core (the
//! [`KelpieSingleActivation`] model's actions: claims, session timeouts,
//! zombies, lease expiry, crashes) and fenced commits to the production
//! store. Every client operation is recorded in a Stateright
//! [`LinearizabilityTester`] over [`Register`], part of the state;
//! `always "Linearizable"` checks every reachable history (G6).
//!
//! The runtime's request path, as `runtime.rs` runs it: a node serves a
//! request only with an activation (fence installed, state loaded from the
//! store) while its core says it serves the actor; a read replies from the
//! activation's state after checking it still serves (no commit); a write
//! commits with the fencing precondition and replies once applied. A
//! rejected commit has no effect and ends the activation; the client
//! retries, on whichever node serves then. A zombie (its session lost while
//! a commit was in flight) still lands that one commit.
//!
//! Bounds (`Default`): the `KelpieSingleActivation` defaults but no
//! duplicated claims (`DuplicateClaim`, `Reorder`: `KelpieSingleActivation`
//! checks them; here they would more than double the check's time), and
//! two clients with the scripts `[Put(1), Get]` and `[Put(2), Get]`.

use bytes::Bytes;
use stateright::semantics::register::{Register, RegisterOp, RegisterRet};
use stateright::semantics::{ConsistencyTester, LinearizabilityTester};
use stateright::{Model, Property};

use crate::common::actor;
use crate::single_activation::{KelpieSingleActivation, SaAction, SaState};

/// A client operation on the actor's register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientOp {
    /// Write the value.
    Put(u8),
    /// Read the value.
    Get,
}

impl ClientOp {
    fn register(self) -> RegisterOp<u8> {
        match self {
            ClientOp::Put(value) => RegisterOp::Write(value),
            ClientOp::Get => RegisterOp::Read,
        }
    }
}

/// The register history, checked for linearizability.
#[derive(Clone, Debug, PartialEq, Hash)]
pub struct History(pub LinearizabilityTester<usize, Register<u8>>);

// `Register<u8>` and its ops compare `u8`s: `PartialEq` is an equivalence.
impl Eq for History {}

/// One client: its progress through its script and its operation in flight.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientState {
    /// Operations of its script completed.
    pub done: usize,
    /// The operation in flight (retried until a node completes it).
    pub pending: Option<ClientOp>,
}

/// A state of the model.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LinState {
    /// Ownership, storage and the nodes' activations.
    pub ownership: SaState,
    /// Per node: the actor's state its activation loaded (`None`: no
    /// activation; `Some(None)`: the register was never written).
    pub loaded: Vec<Option<Option<u8>>>,
    /// The clients.
    pub clients: Vec<ClientState>,
    /// Every invocation and reply so far.
    pub history: History,
    /// Ghost: bit `n` set once node `n` completed a client operation.
    pub served_by: u8,
}

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

/// The linearizability model.
#[derive(Clone, Debug)]
pub struct KelpieLinearizability {
    /// The ownership model underneath.
    pub ownership: KelpieSingleActivation,
    /// Each client's script.
    pub scripts: Vec<Vec<ClientOp>>,
}

impl Default for KelpieLinearizability {
    fn default() -> Self {
        Self {
            ownership: KelpieSingleActivation {
                max_duplicates: 0,
                ..KelpieSingleActivation::default()
            },
            scripts: vec![
                vec![ClientOp::Put(1), ClientOp::Get],
                vec![ClientOp::Put(2), ClientOp::Get],
            ],
        }
    }
}

fn decode(value: &Option<Bytes>) -> Option<u8> {
    value.as_ref().and_then(|bytes| bytes.first().copied())
}

impl KelpieLinearizability {
    /// Whether node `n` may serve `op` now: a read needs an activation
    /// and the core serving it with that token; a write needs an
    /// activation (a zombie's commit in flight still arrives).
    fn can_serve(state: &LinState, n: usize, op: ClientOp) -> bool {
        let node = &state.ownership.nodes[n];
        let Some(token) = node.activation else {
            return false;
        };
        if node.down || state.loaded[n].is_none() {
            return false;
        }
        let serving = KelpieSingleActivation::serving(&state.ownership, n)
            && node.core.owned().iter().any(|(a, t)| *a == actor() && *t == token);
        match op {
            ClientOp::Get => serving,
            ClientOp::Put(_) => serving || node.zombie,
        }
    }

    /// Keeps each node's loaded state in step with its activation: a new
    /// activation loads the actor's state from the store (`load_state`).
    fn sync_loaded(last: &SaState, state: &mut LinState) {
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
}

impl Model for KelpieLinearizability {
    type State = LinState;
    type Action = LinAction;

    fn init_states(&self) -> Vec<LinState> {
        self.ownership
            .init_states()
            .into_iter()
            .map(|ownership| LinState {
                loaded: vec![None; ownership.nodes.len()],
                ownership,
                clients: vec![ClientState { done: 0, pending: None }; self.scripts.len()],
                history: History(LinearizabilityTester::new(Register(0))),
                served_by: 0,
            })
            .collect()
    }

    fn actions(&self, state: &LinState, actions: &mut Vec<LinAction>) {
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

    fn next_state(&self, last: &LinState, action: LinAction) -> Option<LinState> {
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
                state.history.0.on_invoke(c, op.register()).ok()?;
            }
            LinAction::Serve(c, n) => {
                let op = state.clients[c].pending?;
                match op {
                    ClientOp::Get => {
                        // The register starts at 0 (`Register(0)`): an
                        // actor never written reads as its default state.
                        let value = state.loaded[n]?.unwrap_or(0);
                        state.history.0.on_return(c, RegisterRet::ReadOk(value)).ok()?;
                        state.clients[c].pending = None;
                        state.clients[c].done += 1;
                        state.served_by |= 1 << n;
                    }
                    ClientOp::Put(value) => {
                        let before = state.ownership.clone();
                        let applied =
                            KelpieSingleActivation::fenced_write(&mut state.ownership, n, Bytes::from(vec![value]))?;
                        Self::sync_loaded(&before, &mut state);
                        if applied {
                            if state.loaded[n].is_some() {
                                state.loaded[n] = Some(Some(value));
                            }
                            state.history.0.on_return(c, RegisterRet::WriteOk).ok()?;
                            state.clients[c].pending = None;
                            state.clients[c].done += 1;
                            state.served_by |= 1 << n;
                        }
                    }
                }
            }
        }
        Some(state)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("Linearizable", |_: &Self, state: &LinState| {
                state.history.0.serialized_history().is_some()
            }),
            Property::sometimes("AllOperationsComplete", |model: &Self, state: &LinState| {
                state
                    .clients
                    .iter()
                    .zip(&model.scripts)
                    .all(|(client, script)| client.done == script.len())
            }),
            Property::sometimes("ServedByBothNodes", |_: &Self, state: &LinState| {
                state.served_by == 0b11
            }),
        ]
    }
}
