//! `KelpieActorLifecycle` (specs/tla/KelpieActorLifecycle.tla) on the
//! production lifecycle core, [`kelpie_runtime::lifecycle::Lifecycle`]:
//! one actor on one node, activated on demand, one message at a time,
//! drained and deactivated, while another node may own it and commit.
//!
//! Every lifecycle decision is the core's: whether a caller's message is
//! accepted ([`Lifecycle::deliver`], which answers with
//! [`kelpie_runtime::lifecycle::Registration::admit`], the function the
//! runtime's registry calls: not while draining), whether the task
//! handles the next accepted message or answers it with an error
//! ([`Lifecycle::take`], given whether the node still serves the actor),
//! whether a drain is graceful, when the activation is over. The model is
//! the environment the runtime is for the core: the mailbox, the durable
//! state, the in-memory state an activation loads, the claim, and the other
//! node. An action named for a disposition (`Handle`, `Fenced`, `Bounce`)
//! is enabled where the core, asked on a copy, answers with it; the step
//! then asks the core itself.
//!
//! Actions (the TLA+ spec's): `Deliver(m)` (a caller's message; accepted,
//! spawning an activation if inactive, unless the core answers Busy),
//! `Activate` (claim, load the durable state, serve), `ActivationFailed`
//! (owned elsewhere: the activation drains, not gracefully — the spec does
//! that drain in the same step), `Handle` (the next message's effect
//! commits and it is answered), `LoseOwnership` (the node stops serving:
//! lease lost, self-fenced), `Fenced` (an active actor finds the node no
//! longer serving: it answers with an error and drains), `StartDrain`
//! (idle timeout or shutdown: graceful iff serving), `Bounce` (a drain that
//! no longer serves answers a message with an error — or, under the bug
//! switch, drops it), `Deactivate` (the closed mailbox is empty: released)
//! and `RemoteHandle(r)` (another node owns the actor and commits `r`).
//!
//! Properties: `always` `GracefulDeactivation` (with no activation, every
//! accepted message was answered), `NoResurrection` (the core never has a
//! message handled while the node does not serve the actor — a core that
//! does is caught —, and a serving activation holds exactly the durable
//! state, which this environment keeps by construction: the spec's
//! `NoResurrection` is that second part), `AnsweredWereAccepted`
//! (structural here, as in the spec: answers come from the mailbox);
//! `sometimes`
//! `DrainHandles` (a graceful drain handled a message), `DrainBounces` (a
//! drain answered one with an error), `BusyWhileDraining` (a caller met a
//! closed mailbox) and `ReactivatedAfterRemote` (an activation loaded a
//! state another node wrote). The spec's liveness property
//! (`AcceptedEventuallyAnswered`) is TLC's.
//!
//! Bounds (`Default`): 3 messages, 1 remote message (the spec's cfg).

use std::collections::BTreeSet;

use kelpie_runtime::lifecycle::{Admission, Disposition, Lifecycle, Phase};
use stateright::{Model, Property};

/// An action of the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LAction {
    /// A caller delivers message `m`.
    Deliver(u8),
    /// The claim succeeds; the durable state is loaded.
    Activate,
    /// The claim fails (owned elsewhere).
    ActivationFailed,
    /// The next message is handled.
    Handle,
    /// The node stops serving the actor.
    LoseOwnership,
    /// An active actor's next message finds the node not serving.
    Fenced,
    /// Idle timeout or shutdown.
    StartDrain,
    /// A drain answers (or drops) the next message.
    Bounce,
    /// The drain is over.
    Deactivate,
    /// Another node commits remote message `r`.
    RemoteHandle(u8),
}

/// A state: the core and its environment (the spec's variables).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LState {
    /// The production core.
    pub life: Lifecycle,
    /// Accepted messages not yet taken, in order.
    pub mailbox: Vec<u8>,
    /// The node holds the actor's ownership and serves it.
    pub serving: bool,
    /// Messages accepted.
    pub accepted: BTreeSet<u8>,
    /// Messages answered (handled or refused).
    pub answered: BTreeSet<u8>,
    /// The activation's in-memory state: what it loaded plus what it handled.
    pub mem: Vec<u8>,
    /// The durable state: every committed message, in order (remote ones are
    /// numbered from 100).
    pub store: Vec<u8>,
    /// Remote messages committed.
    pub remote: BTreeSet<u8>,
    /// Witnesses for the `sometimes` properties.
    pub seen: Seen,
}

/// What has happened on the way to a state (for `sometimes` properties).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Seen {
    /// A graceful drain handled a message.
    pub drain_handled: bool,
    /// A drain answered a message with an error.
    pub drain_bounced: bool,
    /// A caller met a closed mailbox.
    pub busy: bool,
    /// An activation loaded a state another node wrote.
    pub loaded_remote: bool,
    /// Ghost: a message was handled while the node did not serve the actor
    /// or from an in-memory state that was not the durable one.
    pub stale_handle: bool,
}

/// Remote messages are numbered from here, apart from callers' messages.
pub const REMOTE_BASE: u8 = 100;

/// The model.
#[derive(Clone, Debug)]
pub struct KelpieActorLifecycle {
    /// Callers' messages (`0..messages`).
    pub messages: u8,
    /// Messages other nodes handle (`REMOTE_BASE..REMOTE_BASE + remote`).
    pub remote: u8,
}

impl Default for KelpieActorLifecycle {
    fn default() -> Self {
        Self { messages: 3, remote: 1 }
    }
}

impl LState {
    fn active_or_draining(&self) -> bool {
        matches!(self.life.phase(), Phase::Active | Phase::Draining { .. })
    }

    /// What the core would do with the next message now.
    fn next_disposition(&self) -> Option<Disposition> {
        if self.mailbox.is_empty() || !self.active_or_draining() {
            return None;
        }
        Some(self.life.clone().take(self.serving))
    }

    /// Takes the next message; the core decides.
    fn take(&mut self) {
        let message = self.mailbox.remove(0);
        match self.life.take(self.serving) {
            Disposition::Handle => {
                self.seen.stale_handle |= !self.serving || self.mem != self.store;
                // Committed (fenced by the token it serves with), then answered.
                self.store.push(message);
                self.mem.push(message);
                self.answered.insert(message);
            }
            Disposition::Refuse => {
                self.answered.insert(message);
            }
            Disposition::Drop => {}
        }
    }
}

impl Model for KelpieActorLifecycle {
    type State = LState;
    type Action = LAction;

    fn init_states(&self) -> Vec<LState> {
        vec![LState {
            life: Lifecycle::new(),
            mailbox: Vec::new(),
            serving: false,
            accepted: BTreeSet::new(),
            answered: BTreeSet::new(),
            mem: Vec::new(),
            store: Vec::new(),
            remote: BTreeSet::new(),
            seen: Seen::default(),
        }]
    }

    fn actions(&self, state: &LState, actions: &mut Vec<LAction>) {
        for message in 0..self.messages {
            if !state.accepted.contains(&message) {
                actions.push(LAction::Deliver(message));
            }
        }
        for r in 0..self.remote {
            if !state.serving && !state.remote.contains(&(REMOTE_BASE + r)) {
                actions.push(LAction::RemoteHandle(r));
            }
        }
        let phase = state.life.phase();
        if phase == Phase::Activating {
            actions.push(LAction::Activate);
            actions.push(LAction::ActivationFailed);
        }
        if phase == Phase::Active {
            actions.push(LAction::StartDrain);
        }
        if state.serving {
            actions.push(LAction::LoseOwnership);
        }
        match (phase, state.next_disposition()) {
            (_, Some(Disposition::Handle)) => actions.push(LAction::Handle),
            (Phase::Active, Some(_)) => actions.push(LAction::Fenced),
            (Phase::Draining { .. }, Some(_)) => actions.push(LAction::Bounce),
            _ => {}
        }
        if matches!(phase, Phase::Draining { .. }) && state.mailbox.is_empty() {
            actions.push(LAction::Deactivate);
        }
    }

    fn next_state(&self, last: &LState, action: LAction) -> Option<LState> {
        let mut state = last.clone();
        match action {
            LAction::Deliver(message) => match state.life.deliver() {
                Admission::Spawn | Admission::Accept => {
                    state.mailbox.push(message);
                    state.accepted.insert(message);
                }
                // The caller retries later; nothing changes but the witness.
                Admission::Busy => state.seen.busy = true,
            },
            LAction::Activate => {
                state.life.activated();
                state.serving = true;
                state.mem = state.store.clone();
                state.seen.loaded_remote |= state.store.iter().any(|m| *m >= REMOTE_BASE);
            }
            LAction::ActivationFailed => state.life.stop(false),
            LAction::Handle => {
                let graceful = state.life.phase() == (Phase::Draining { graceful: true });
                state.take();
                state.seen.drain_handled |= graceful;
            }
            LAction::LoseOwnership => state.serving = false,
            LAction::Fenced => state.take(),
            LAction::StartDrain => state.life.stop(state.serving),
            LAction::Bounce => {
                let answered = state.answered.len();
                state.take();
                state.seen.drain_bounced |= state.answered.len() > answered;
            }
            LAction::Deactivate => {
                state.life.drained();
                // Released: the activation and its memory are gone.
                state.serving = false;
                state.mem.clear();
            }
            LAction::RemoteHandle(r) => {
                state.store.push(REMOTE_BASE + r);
                state.remote.insert(REMOTE_BASE + r);
            }
        }
        Some(state)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("GracefulDeactivation", |_: &Self, state: &LState| {
                state.life.phase() != Phase::Inactive || state.accepted.is_subset(&state.answered)
            }),
            // The core handles a message only while the node serves the
            // actor, from the state it loaded (the durable one), and a
            // serving activation holds exactly the durable state.
            Property::always("NoResurrection", |_: &Self, state: &LState| {
                !state.seen.stale_handle && (!(state.active_or_draining() && state.serving) || state.mem == state.store)
            }),
            Property::always("AnsweredWereAccepted", |_: &Self, state: &LState| {
                state.answered.is_subset(&state.accepted)
            }),
            Property::sometimes("DrainHandles", |_: &Self, state: &LState| state.seen.drain_handled),
            Property::sometimes("DrainBounces", |_: &Self, state: &LState| state.seen.drain_bounced),
            Property::sometimes("BusyWhileDraining", |_: &Self, state: &LState| state.seen.busy),
            Property::sometimes("ReactivatedAfterRemote", |_: &Self, state: &LState| {
                state.seen.loaded_remote && state.life.phase() == Phase::Active
            }),
        ]
    }
}
