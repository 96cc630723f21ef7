//! `KelpieLease` (specs/tla/KelpieLease.tla) on the production code: each
//! node runs the sans-IO [`Ownership`] core, the coordination store is the
//! production [`CoordinationState`], activation is `driver::install_fence`
//! and writes are the runtime's fenced commit, both on the production
//! [`kelpie_storage::Store`].
//!
//! Time: real time (the store's) advances by one unit per `Tick`; each node's
//! clock advances by 0, 1 or 2 units, keeping its deviation from real time
//! inside a band of width `max_drift`, so over any interval a clock gains or
//! loses at most `max_drift` (the bound the protocol's self-fencing margin
//! assumes). A paused node takes no steps while time and its clock advance.
//!
//! Actions (the spec's names): `Tick`, `GrantSession`, `SessionGranted`,
//! `KeepAlive` (with its `KeptAlive` answer), `SelfFence`, `Claim`, `Release`,
//! `InstallFence`, `FencedWrite`, `LeaseExpire`, `Crash`, `Restart`,
//! `Pause`, `Resume`; plus `NodeTick`, a core tick with other effects.
//! Each node-side action feeds one [`Input`] to the node's core at the
//! node's clock reading; the commands it returns are queued and executed
//! against the store by later actions (`SessionGranted`, `Claim`), whose
//! answers are fed back.
//!
//! The two nodes are symmetric (same code, same configuration, every
//! combination of initial clock deviations), so only node 0 is paused or
//! crashed: every behaviour where node 1 alone is has a mirror image where
//! node 0 is. (So, within the bounds of one pause and one crash, a pause of
//! one node together with a crash of the other is not explored.) A node is
//! paused only while it holds an activation: pausing any other node is the
//! same as not scheduling it, which the interleaving already covers.
//!
//! Bounds (`Default`): 2 nodes, TTL 3, drift 1, keep-alive every 1 (the
//! smallest valid timing: TTL > renew + drift), real time up to 3 (one
//! lease can expire), one runtime request per node, one crash, one pause.
//!
//! Properties: `always` `SingleActivation`, `LeaseUniqueness`,
//! `NoZombieWrite`, `FencingTokenMonotonic`; `sometimes`
//! `TwoNodesContend`, `LeaseExpiresWhilePaused`, `ZombieAttemptsWrite`.

use bytes::Bytes;
use kelpie_core::clock::MonotonicInstant;
use kelpie_core::coordination::{CoordinationState, LeaseId};
use kelpie_core::NodeId;
use kelpie_runtime::driver::{install_fence, ClaimError};
use kelpie_runtime::ownership::{owner_key, Command, Event, FencingToken, Input, Output, Ownership, OwnershipConfig};
use kelpie_storage::StorageError;
use stateright::{Model, Property};

use crate::common::{self, actor, complete, StorageFacts};

/// Whether a node runs, is paused (takes no steps; time passes) or is down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    /// Running.
    Up,
    /// Paused (a GC pause, a stopped VM): no steps, its clock runs on.
    Paused,
    /// Crashed; its process state is gone.
    Down,
}

/// One node: its clock, its ownership core, commands the core issued that
/// the store has not executed yet, and the runtime's activation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NodeState {
    /// Up, paused or down.
    pub status: Status,
    /// The node clock's deviation from real time, in time units.
    pub dev: i64,
    /// The production ownership core.
    pub core: Ownership,
    /// Commands issued by the core, not yet executed against the store.
    pub outbox: Vec<Command>,
    /// The token the runtime activated the actor with (its fence
    /// installed), until the activation ends.
    pub activation: Option<FencingToken>,
    /// How often the runtime asked the core for the actor (bounded).
    pub requests: u8,
}

/// A state of the `KelpieLease` model.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LeaseState {
    /// Real time (the store's clock), in units.
    pub time: u64,
    /// The nodes.
    pub nodes: Vec<NodeState>,
    /// The production coordination state machine.
    pub coord: CoordinationState,
    /// The actor's storage, as read from the production store.
    pub storage: StorageFacts,
    /// `(token, fence)` of the last applied commit: the writer's token and
    /// the fence installed when it was applied.
    pub last_commit: Option<(u64, u64)>,
    /// Crashes so far.
    pub crashes: u8,
    /// Pauses so far.
    pub pauses: u8,
    /// The installed fence before the last step.
    pub prev_fence: u64,
    /// The owner key's create revision (token) before the last step, 0 if missing.
    pub prev_owner: i64,
    /// The store revision before the last step (every token issued so far
    /// is at most this) if the last step changed the owner key, else 0.
    pub prev_revision: i64,
    /// Ghost: the last step's claim found the actor owned by the other node.
    pub contended: bool,
    /// Ghost: the last step expired the session lease of a paused node.
    pub expired_while_paused: bool,
    /// Ghost: in the last step a node tried to commit with a token older
    /// than the installed fence.
    pub zombie_write: bool,
}

/// An action of the model (the spec's action names).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LeaseAction {
    /// Real time +1; the nodes' new clock deviations.
    Tick(Vec<i64>),
    /// The runtime asks node `n`'s core for the actor; with no session the
    /// core sends a session grant.
    GrantSession(usize),
    /// The store grants node `n`'s queued session request; the answer is fed back.
    SessionGranted(usize),
    /// Node `n`'s core tick sends a keep-alive; the store renews the lease
    /// (or answers `LeaseNotFound`) and the answer is fed back at once
    /// (the spec's `KeepAlive` with its `KeptAlive` answer: the late-answer
    /// rule is exercised by the session grant).
    KeepAlive(usize),
    /// Node `n`'s core tick finds its serving window over and drops its session.
    SelfFence(usize),
    /// A core tick with other effects (claims waiting for a session).
    NodeTick(usize),
    /// A claim transaction of node `n` (queued, or issued now because the
    /// runtime asks for the actor) runs at the store; the answer is fed back.
    Claim(usize),
    /// Node `n`'s runtime deactivates the actor: the release transaction
    /// runs at the store; the answer is fed back.
    Release(usize),
    /// Node `n`'s runtime activates the actor: `driver::install_fence`.
    InstallFence(usize),
    /// Node `n`'s runtime commits the actor's state with its token (not
    /// guarded by the node's clock: a zombie may try).
    FencedWrite(usize),
    /// The store deletes every lease at its deadline, and its keys.
    LeaseExpire,
    /// Node `n` crashes.
    Crash(usize),
    /// Node `n` restarts with a fresh process and this clock deviation.
    Restart(usize, i64),
    /// Node `n` pauses.
    Pause(usize),
    /// Node `n` resumes.
    Resume(usize),
}

/// The `KelpieLease` model: `nodes` nodes contending for one actor.
#[derive(Clone, Debug)]
pub struct KelpieLease {
    /// Number of nodes.
    pub nodes: usize,
    /// Lease TTL, in units.
    pub ttl: u64,
    /// Clock drift bound, in units (the protocol's margin and the width of
    /// the clocks' deviation band).
    pub max_drift: u64,
    /// Keep-alive interval, in units.
    pub renew: u64,
    /// Real time bound.
    pub max_time: u64,
    /// Crash bound.
    pub max_crashes: u8,
    /// Bound on the runtime's requests for the actor, per node.
    pub max_requests: u8,
    /// Pause bound (pausing only matters for a node that holds the actor:
    /// otherwise it is the same as not scheduling the node).
    pub max_pauses: u8,
}

impl Default for KelpieLease {
    fn default() -> Self {
        Self {
            nodes: 2,
            ttl: 3,
            max_drift: 1,
            renew: 1,
            max_time: 3,
            max_crashes: 1,
            max_requests: 1,
            max_pauses: 1,
        }
    }
}

fn feed(node: &mut NodeState, input: Input, now: MonotonicInstant) -> Output {
    let out = node.core.step(input, now);
    for event in &out.events {
        if matches!(event, Event::Fenced { .. } | Event::Released { .. }) {
            // The runtime stops the actor when the core fences it.
            node.activation = None;
        }
    }
    out
}

impl KelpieLease {
    /// The protocol's timing.
    pub fn config(&self) -> OwnershipConfig {
        OwnershipConfig::new(
            common::units(self.ttl),
            common::units(self.renew),
            common::units(self.max_drift),
        )
        .expect("the model's timing is valid")
    }

    fn band(&self) -> std::ops::RangeInclusive<i64> {
        let width = i64::try_from(self.max_drift).expect("small drift");
        -(width / 2)..=(width - width / 2)
    }

    fn origin(&self) -> u64 {
        self.max_drift + 1
    }

    /// The store's clock.
    pub fn real_now(&self, state: &LeaseState) -> MonotonicInstant {
        common::instant(self.origin() + state.time)
    }

    /// Node `n`'s clock.
    pub fn local_now(&self, state: &LeaseState, n: usize) -> MonotonicInstant {
        let local = i64::try_from(self.origin() + state.time).expect("small time") + state.nodes[n].dev;
        common::instant(u64::try_from(local).expect("the origin keeps clocks positive"))
    }

    fn fresh_node(&self, n: usize, dev: i64) -> NodeState {
        NodeState {
            status: Status::Up,
            dev,
            core: Ownership::new(NodeId::from_index(u32::try_from(n).expect("few nodes")), self.config()),
            outbox: Vec::new(),
            activation: None,
            requests: 0,
        }
    }

    /// Whether node `n` may serve the actor on its own clock
    /// (`Ownership::serving_token`).
    pub fn serving(&self, state: &LeaseState, n: usize) -> bool {
        state.nodes[n].status != Status::Down
            && state.nodes[n]
                .core
                .serving_token(&actor(), self.local_now(state, n))
                .is_some()
    }

    /// Whether node `n` holds the actor under a lease alive in the store.
    pub fn held_live(&self, state: &LeaseState, n: usize) -> bool {
        let actor = actor();
        state.nodes[n].status != Status::Down
            && state.nodes[n]
                .core
                .owned_with_lease()
                .iter()
                .any(|(owned, _, lease)| *owned == actor && state.coord.lease_alive(*lease))
    }

    fn owner_token(state: &LeaseState) -> i64 {
        state
            .coord
            .peek(&owner_key(&actor()))
            .map_or(0, |kv| kv.create_revision)
    }

    fn expiry_due(&self, state: &LeaseState) -> bool {
        let now = self.real_now(state);
        state
            .coord
            .lease_deadlines()
            .iter()
            .any(|(_, deadline)| *deadline <= now)
    }

    fn ask(&self, state: &LeaseState, n: usize) -> Output {
        let mut core = state.nodes[n].core.clone();
        core.step(Input::Claim { actor: actor() }, self.local_now(state, n))
    }

    fn has_queued(node: &NodeState, kind: fn(&Command) -> bool) -> bool {
        node.outbox.iter().any(kind)
    }

    fn take_queued(node: &mut NodeState, kind: fn(&Command) -> bool) -> Option<Command> {
        let index = node.outbox.iter().position(kind)?;
        Some(node.outbox.remove(index))
    }

    /// Runs `command` against the store and feeds the answer to node `n`;
    /// what the answer makes the core issue is queued.
    fn execute(&self, state: &mut LeaseState, n: usize, command: Command) {
        let real = self.real_now(state);
        let input = common::run_command(&mut state.coord, command, real);
        let now = self.local_now(state, n);
        let out = feed(&mut state.nodes[n], input, now);
        self.absorb(state, n, out);
    }

    /// Records the runtime-visible effects of a core step and queues its commands.
    fn absorb(&self, state: &mut LeaseState, n: usize, out: Output) {
        if out
            .events
            .iter()
            .any(|event| matches!(event, Event::OwnedElsewhere { .. }))
        {
            state.contended = true;
        }
        state.nodes[n].outbox.extend(out.commands);
    }

    /// Feeds `input` to node `n` and executes the transactions it issues
    /// right away (claims and releases are one step, as in the spec).
    fn step_and_run_txns(&self, state: &mut LeaseState, n: usize, input: Input) {
        let now = self.local_now(state, n);
        let out = feed(&mut state.nodes[n], input, now);
        let (txns, rest): (Vec<Command>, Vec<Command>) =
            out.commands.into_iter().partition(|c| matches!(c, Command::Txn { .. }));
        self.absorb(
            state,
            n,
            Output {
                commands: rest,
                events: out.events,
            },
        );
        for txn in txns {
            self.execute(state, n, txn);
        }
    }

    fn tick_devs(&self, state: &LeaseState, n: usize, acc: &mut Vec<Vec<i64>>) {
        if n == state.nodes.len() {
            return;
        }
        let node = &state.nodes[n];
        let choices: Vec<i64> = if node.status == Status::Down {
            vec![0]
        } else {
            self.band().filter(|d| (0..=2).contains(&(1 + d - node.dev))).collect()
        };
        let previous = std::mem::take(acc);
        for prefix in previous {
            for d in &choices {
                let mut next = prefix.clone();
                next.push(*d);
                acc.push(next);
            }
        }
        self.tick_devs(state, n + 1, acc);
    }
}

fn is_grant(command: &Command) -> bool {
    matches!(command, Command::GrantSession { .. })
}

fn is_keep_alive(command: &Command) -> bool {
    matches!(command, Command::KeepAlive { .. })
}

fn is_txn(command: &Command) -> bool {
    matches!(command, Command::Txn { .. })
}

impl Model for KelpieLease {
    type State = LeaseState;
    type Action = LeaseAction;

    fn init_states(&self) -> Vec<LeaseState> {
        let mut devs = vec![Vec::new()];
        for _ in 0..self.nodes {
            let previous = std::mem::take(&mut devs);
            for prefix in previous {
                for d in self.band() {
                    let mut next = prefix.clone();
                    next.push(d);
                    devs.push(next);
                }
            }
        }
        devs.into_iter()
            .map(|devs| LeaseState {
                time: 0,
                nodes: devs.iter().enumerate().map(|(n, d)| self.fresh_node(n, *d)).collect(),
                coord: CoordinationState::new(),
                storage: StorageFacts::default(),
                last_commit: None,
                crashes: 0,
                pauses: 0,
                prev_fence: 0,
                prev_owner: 0,
                prev_revision: CoordinationState::new().revision(),
                contended: false,
                expired_while_paused: false,
                zombie_write: false,
            })
            .collect()
    }

    fn actions(&self, state: &LeaseState, actions: &mut Vec<LeaseAction>) {
        let expiry_due = self.expiry_due(state);
        if expiry_due {
            actions.push(LeaseAction::LeaseExpire);
        } else if state.time < self.max_time {
            let mut devs = vec![Vec::new()];
            self.tick_devs(state, 0, &mut devs);
            actions.extend(devs.into_iter().map(LeaseAction::Tick));
        }
        let actor = actor();
        for (n, node) in state.nodes.iter().enumerate() {
            match node.status {
                Status::Down => {
                    actions.extend(self.band().map(|d| LeaseAction::Restart(n, d)));
                    continue;
                }
                Status::Paused => {
                    actions.push(LeaseAction::Resume(n));
                    if n == 0 && state.crashes < self.max_crashes {
                        actions.push(LeaseAction::Crash(n));
                    }
                    continue;
                }
                Status::Up => {}
            }
            let now = self.local_now(state, n);
            let asked = (node.requests < self.max_requests).then(|| self.ask(state, n));
            if asked.as_ref().is_some_and(|out| out.commands.iter().any(is_grant)) {
                actions.push(LeaseAction::GrantSession(n));
            }
            if Self::has_queued(node, is_grant) {
                actions.push(LeaseAction::SessionGranted(n));
            }
            if Self::has_queued(node, is_txn) || asked.as_ref().is_some_and(|out| out.commands.iter().any(is_txn)) {
                actions.push(LeaseAction::Claim(n));
            }
            let mut ticked = node.core.clone();
            let out = ticked.step(Input::Tick, now);
            if node.core.session().is_some() && ticked.session().is_none() {
                actions.push(LeaseAction::SelfFence(n));
            } else if out.commands.iter().any(is_keep_alive) {
                actions.push(LeaseAction::KeepAlive(n));
            } else if ticked != node.core || !out.commands.is_empty() || !out.events.is_empty() {
                actions.push(LeaseAction::NodeTick(n));
            }
            if node.core.owned().iter().any(|(owned, _)| *owned == actor) {
                actions.push(LeaseAction::Release(n));
            }
            if let Some(token) = node.core.serving_token(&actor, now) {
                if node.activation != Some(token) {
                    actions.push(LeaseAction::InstallFence(n));
                }
            }
            if node.activation.is_some() {
                actions.push(LeaseAction::FencedWrite(n));
            }
            if n == 0 && node.activation.is_some() && state.pauses < self.max_pauses {
                actions.push(LeaseAction::Pause(n));
            }
            if n == 0 && state.crashes < self.max_crashes {
                actions.push(LeaseAction::Crash(n));
            }
        }
    }

    fn next_state(&self, last: &LeaseState, action: LeaseAction) -> Option<LeaseState> {
        let mut state = last.clone();
        state.prev_fence = last.storage.fence_or_zero();
        state.prev_owner = Self::owner_token(last);
        state.prev_revision = last.coord.revision();
        // The ghost flags describe the last step only.
        state.contended = false;
        state.expired_while_paused = false;
        state.zombie_write = false;
        let actor = actor();
        match action {
            LeaseAction::Tick(devs) => {
                state.time += 1;
                for (node, dev) in state.nodes.iter_mut().zip(devs) {
                    node.dev = dev;
                }
            }
            LeaseAction::LeaseExpire => {
                let now = self.real_now(&state);
                let expired: Vec<LeaseId> = state.coord.expire_leases(now);
                let paused_lost = state.nodes.iter().any(|node| {
                    node.status == Status::Paused
                        && node.core.session().is_some_and(|(lease, _)| expired.contains(&lease))
                });
                state.expired_while_paused |= paused_lost;
            }
            LeaseAction::GrantSession(n) => {
                state.nodes[n].requests += 1;
                let now = self.local_now(&state, n);
                let out = feed(&mut state.nodes[n], Input::Claim { actor }, now);
                self.absorb(&mut state, n, out);
            }
            LeaseAction::SessionGranted(n) => {
                let command = Self::take_queued(&mut state.nodes[n], is_grant)?;
                self.execute(&mut state, n, command);
            }
            LeaseAction::KeepAlive(n) => {
                let now = self.local_now(&state, n);
                let out = feed(&mut state.nodes[n], Input::Tick, now);
                self.absorb(&mut state, n, out);
                while let Some(command) = Self::take_queued(&mut state.nodes[n], is_keep_alive) {
                    self.execute(&mut state, n, command);
                }
            }
            LeaseAction::SelfFence(n) | LeaseAction::NodeTick(n) => {
                let now = self.local_now(&state, n);
                let out = feed(&mut state.nodes[n], Input::Tick, now);
                self.absorb(&mut state, n, out);
            }
            LeaseAction::Claim(n) => match Self::take_queued(&mut state.nodes[n], is_txn) {
                Some(command) => self.execute(&mut state, n, command),
                None => {
                    state.nodes[n].requests += 1;
                    self.step_and_run_txns(&mut state, n, Input::Claim { actor });
                }
            },
            LeaseAction::Release(n) => {
                state.nodes[n].activation = None;
                self.step_and_run_txns(&mut state, n, Input::Release { actor });
            }
            LeaseAction::InstallFence(n) => {
                let now = self.local_now(&state, n);
                let token = state.nodes[n].core.serving_token(&actor, now)?;
                let store = state.storage.rebuild();
                match complete(install_fence(&store, &actor, token)) {
                    Ok(()) => state.nodes[n].activation = Some(token),
                    Err(ClaimError::Stale { .. }) => {
                        // The runtime gives the actor up (`run_actor`).
                        state.nodes[n].activation = None;
                        self.step_and_run_txns(&mut state, n, Input::Release { actor });
                    }
                    Err(other) => panic!("install_fence on the memory engine: {other}"),
                }
                state.storage = StorageFacts::read(&store);
            }
            LeaseAction::FencedWrite(n) => {
                let token = state.nodes[n].activation?;
                let fence = state.storage.fence_or_zero();
                if token.0 < fence {
                    state.zombie_write = true;
                }
                let store = state.storage.rebuild();
                match common::fenced_write(&store, token, Bytes::from_static(b"v")) {
                    Ok(_) => state.last_commit = Some((token.0, fence)),
                    // Nothing applied; the activation ends.
                    Err(StorageError::FencingRejected { .. }) => state.nodes[n].activation = None,
                    Err(other) => panic!("fenced commit on the memory engine: {other}"),
                }
                state.storage = StorageFacts::read(&store);
            }
            LeaseAction::Crash(n) => {
                state.crashes += 1;
                state.nodes[n] = self.fresh_node(n, 0);
                state.nodes[n].requests = last.nodes[n].requests;
                state.nodes[n].status = Status::Down;
            }
            LeaseAction::Restart(n, dev) => {
                state.nodes[n].status = Status::Up;
                state.nodes[n].dev = dev;
            }
            LeaseAction::Pause(n) => {
                state.pauses += 1;
                state.nodes[n].status = Status::Paused;
            }
            LeaseAction::Resume(n) => state.nodes[n].status = Status::Up,
        }
        if Self::owner_token(&state) == state.prev_owner {
            // Only a new owner key is compared with the revision before it:
            // keep one representative state.
            state.prev_revision = 0;
        }
        Some(state)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("SingleActivation", |model: &Self, state: &LeaseState| {
                (0..state.nodes.len()).filter(|n| model.serving(state, *n)).count() <= 1
            }),
            Property::always("LeaseUniqueness", |model: &Self, state: &LeaseState| {
                (0..state.nodes.len()).filter(|n| model.held_live(state, *n)).count() <= 1
            }),
            Property::always("NoZombieWrite", |_: &Self, state: &LeaseState| {
                state.last_commit.is_none_or(|(token, fence)| token >= fence)
            }),
            Property::always("FencingTokenMonotonic", |_: &Self, state: &LeaseState| {
                let owner = Self::owner_token(state);
                state.storage.fence_or_zero() >= state.prev_fence
                    && (owner == 0 || owner == state.prev_owner || owner > state.prev_revision)
            }),
            Property::sometimes("TwoNodesContend", |_: &Self, state: &LeaseState| state.contended),
            Property::sometimes("LeaseExpiresWhilePaused", |_: &Self, state: &LeaseState| {
                state.expired_while_paused
            }),
            Property::sometimes("ZombieAttemptsWrite", |_: &Self, state: &LeaseState| state.zombie_write),
        ]
    }
}
