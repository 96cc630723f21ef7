//! `KelpieSingleActivation` (specs/tla/KelpieSingleActivation.tla) on the
//! production code: the claim compare-and-set composed with session-lease
//! expiry, lost answers, crashes, release, fence installation and zombie
//! writes. Each node runs the sans-IO [`Ownership`] core; the store is the
//! production [`CoordinationState`]; activation is `driver::install_fence`
//! and writes are the runtime's fenced commit on the production store.
//!
//! Untimed, as the spec: `KelpieLease` shows a node stops trusting its
//! session before the store can expire it, so here `SessionTimeout(n)` may
//! happen at any moment (the node's clock jumps to the end of its serving
//! window and the core's tick self-fences), and `LeaseExpire(l)` deletes a
//! lease (production `lease_revoke`: the same deletion of the lease and its
//! keys as expiry) only once no node trusts it. The store's own clock stays
//! at 0, so nothing expires behind the model's back.
//!
//! Actions (the spec's names): `GrantSession`, `SessionTimeout`,
//! `ZombieTimeout`, `Lookup` (only the lookup-then-claim bug issues one),
//! `Claim`, `ClaimAnswered`, `ClaimTimeout`, `DuplicateClaim`, `Reorder`,
//! `Release`, `InstallFence`, `FencedWrite`, `LeaseExpire`, `Crash`,
//! `Restart`.
//!
//! `DuplicateClaim(n)` and `Reorder(n)` are the simulator's
//! `MessageDuplicate` and `MessageReorder`: while node `n`'s claim answer is
//! in flight, its claim request reaches the store again and the production
//! `CoordinationState::txn` applies the same transaction a second time.
//! Both answers carry the request's id. After `DuplicateClaim` the node
//! acts on the original's answer (`ClaimAnswered` or `ClaimTimeout`), and
//! the duplicate's arrives right after it; after `Reorder` the duplicate's
//! answer is the one acted on and the original's arrives right after it.
//! The later one is fed to the production core, which finds its request no
//! longer pending. (A `Reorder` whose duplicate the store refuses is a lost
//! answer followed by an ignored one: `ClaimTimeout` covers it.)
//!
//! Properties: `always` `SingleActivation`, `LeaseUniqueness`,
//! `NoZombieWrite`, `FencingTokenMonotonic`; `sometimes`
//! `TwoNodesContend`, `ClaimAnswerLost`, `ZombieAttemptsWrite`,
//! `OwnerTakesOver`, `DuplicateClaimApplied` (a duplicate claim put the
//! owner key the original found taken), `ReorderedAnswerActedOn` (the node
//! acted on a duplicate's answer that overtook a different original's,
//! which was then ignored).
//!
//! Bounds (`Default`): 2 nodes, 3 session grants, one runtime request for
//! the actor per node, one crash (of node 0: the nodes are symmetric), one
//! duplicated claim (`DuplicateClaim` or `Reorder`).

use bytes::Bytes;
use kelpie_core::clock::MonotonicInstant;
use kelpie_core::coordination::{CoordinationState, LeaseId, TxnOp, TxnResponse};
use kelpie_core::NodeId;
use kelpie_runtime::driver::{install_fence, ClaimError};
use kelpie_runtime::ownership::{
    owner_key, Command, Event, Failure, FencingToken, Input, Output, Ownership, OwnershipConfig, RequestId,
};
use kelpie_storage::StorageError;
use stateright::{Model, Property};

use crate::common::{self, actor, complete, StorageFacts};

/// One node of the model.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SaNode {
    /// Crashed (its process state is gone) or running.
    pub down: bool,
    /// The node's clock, in units: it only jumps at a session timeout.
    pub clock: u64,
    /// The production ownership core.
    pub core: Ownership,
    /// Commands issued by the core, not yet executed against the store.
    pub outbox: Vec<Command>,
    /// The answer of the claim transaction the store applied, in flight.
    pub reply: Option<(RequestId, TxnResponse)>,
    /// The claim request whose answer is in flight (a duplicate re-runs it).
    pub claim: Option<Command>,
    /// The second answer to that request, arriving after `reply`.
    pub late: Option<Input>,
    /// `reply` is a duplicate's answer that overtook the original's.
    pub reordered: bool,
    /// The token the runtime activated the actor with (fence installed).
    pub activation: Option<FencingToken>,
    /// The session was lost while a commit was in flight: that one commit
    /// still reaches the store.
    pub zombie: bool,
    /// How often the runtime asked the core for the actor (bounded).
    pub requests: u8,
}

/// A state of the `KelpieSingleActivation` model.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SaState {
    /// The nodes.
    pub nodes: Vec<SaNode>,
    /// The production coordination state machine.
    pub coord: CoordinationState,
    /// Session grants so far (bounded).
    pub grants: u8,
    /// The actor's storage, as read from the production store.
    pub storage: StorageFacts,
    /// `(token, fence)` of the last applied commit.
    pub last_commit: Option<(u64, u64)>,
    /// Crashes so far.
    pub crashes: u8,
    /// The installed fence before the last step.
    pub prev_fence: u64,
    /// The owner key's token before the last step (0: missing).
    pub prev_owner: i64,
    /// The store revision before the last step.
    pub prev_revision: i64,
    /// Ghost: the last step's claim found the actor owned by the other node.
    pub contended: bool,
    /// Ghost: the last step lost the answer of an applied claim.
    pub answer_lost: bool,
    /// Ghost: the last step was a commit attempt with a token older than the fence.
    pub zombie_write: bool,
    /// Duplicated claims so far.
    pub duplicates: u8,
    /// Ghost: the last step's duplicate claim put the owner key.
    pub duplicate_put: bool,
    /// Ghost: the last step acted on a reordered answer differing from the
    /// original's, and the original's was ignored.
    pub reorder_acted: bool,
}

/// An action of the model (the spec's action names; `n` is a node).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SaAction {
    /// Node `n` gets a session lease (the runtime asks for the actor, or
    /// the core wants a new session for a waiting claim).
    GrantSession(usize),
    /// Node `n` stops trusting its session (self-fencing).
    SessionTimeout(usize),
    /// The same while an activated actor's commit is in flight.
    ZombieTimeout(usize),
    /// (bug lookup-then-claim) node `n` reads the owner key alone.
    Lookup(usize),
    /// Node `n`'s claim transaction runs at the store; its answer is in flight.
    Claim(usize),
    /// Node `n`'s core gets the claim's answer.
    ClaimAnswered(usize),
    /// The claim's answer is lost (the transaction applied): a timeout.
    ClaimTimeout(usize),
    /// Node `n`'s claim request is applied a second time; the original's
    /// answer arrives first.
    DuplicateClaim(usize),
    /// As `DuplicateClaim`, but the duplicate's answer arrives first.
    Reorder(usize),
    /// Node `n`'s runtime deactivates the actor: the release transaction.
    Release(usize),
    /// Node `n`'s runtime activates the actor: `driver::install_fence`.
    InstallFence(usize),
    /// Node `n`'s runtime commits with its token.
    FencedWrite(usize),
    /// The store deletes lease `l` (trusted by no node) and its keys.
    LeaseExpire(i64),
    /// Node `n` crashes.
    Crash(usize),
    /// Node `n` restarts.
    Restart(usize),
}

/// The `KelpieSingleActivation` model.
#[derive(Clone, Debug)]
pub struct KelpieSingleActivation {
    /// Number of nodes.
    pub nodes: usize,
    /// Bound on session grants.
    pub max_leases: u8,
    /// Bound on the runtime's requests for the actor, per node.
    pub max_requests: u8,
    /// Crash bound.
    pub max_crashes: u8,
    /// Bound on duplicated claims (`DuplicateClaim`, `Reorder`).
    pub max_duplicates: u8,
}

impl Default for KelpieSingleActivation {
    fn default() -> Self {
        Self {
            nodes: 2,
            max_leases: 3,
            max_requests: 1,
            max_crashes: 1,
            max_duplicates: 1,
        }
    }
}

fn is_txn(command: &Command) -> bool {
    matches!(command, Command::Txn { .. })
}

fn is_grant(command: &Command) -> bool {
    matches!(command, Command::GrantSession { .. })
}

/// A lookup (bug lookup-then-claim): a transaction that only reads.
fn is_lookup(command: &Command) -> bool {
    matches!(command, Command::Txn { txn, .. }
        if txn.compares.is_empty() && txn.success.iter().all(|op| matches!(op, TxnOp::Get { .. })))
}

impl KelpieSingleActivation {
    /// The protocol's timing (only the serving window matters here).
    pub fn config() -> OwnershipConfig {
        OwnershipConfig::new(common::units(3), common::units(1), common::units(1)).expect("valid timing")
    }

    fn store_now() -> MonotonicInstant {
        common::instant(0)
    }

    fn now(state: &SaState, n: usize) -> MonotonicInstant {
        common::instant(state.nodes[n].clock)
    }

    fn fresh_node(n: usize, clock: u64) -> SaNode {
        SaNode {
            down: false,
            clock,
            core: Ownership::new(NodeId::from_index(u32::try_from(n).expect("few nodes")), Self::config()),
            outbox: Vec::new(),
            reply: None,
            claim: None,
            late: None,
            reordered: false,
            activation: None,
            zombie: false,
            requests: 0,
        }
    }

    /// Whether node `n` may serve the actor (`Ownership::serving_token`).
    pub fn serving(state: &SaState, n: usize) -> bool {
        !state.nodes[n].down
            && state.nodes[n]
                .core
                .serving_token(&actor(), Self::now(state, n))
                .is_some()
    }

    /// Whether node `n` holds the actor under a lease alive in the store.
    pub fn held_live(state: &SaState, n: usize) -> bool {
        let actor = actor();
        !state.nodes[n].down
            && state.nodes[n]
                .core
                .owned_with_lease()
                .iter()
                .any(|(owned, _, lease)| *owned == actor && state.coord.lease_alive(*lease))
    }

    fn owner_token(state: &SaState) -> i64 {
        state
            .coord
            .peek(&owner_key(&actor()))
            .map_or(0, |kv| kv.create_revision)
    }

    fn feed(state: &mut SaState, n: usize, input: Input) -> Output {
        let now = Self::now(state, n);
        let node = &mut state.nodes[n];
        let out = node.core.step(input, now);
        for event in &out.events {
            match event {
                Event::Fenced { .. } | Event::Released { .. } if !node.zombie => node.activation = None,
                Event::OwnedElsewhere { .. } => state.contended = true,
                _ => {}
            }
        }
        out
    }

    /// Feeds `input`; a lookup it issues runs at once (the spec's `Lookup`
    /// is atomic), other commands are queued.
    fn step(&self, state: &mut SaState, n: usize, input: Input) {
        let out = Self::feed(state, n, input);
        for command in out.commands {
            if is_lookup(&command) {
                self.run_atomic(state, n, command);
            } else {
                state.nodes[n].outbox.push(command);
            }
        }
    }

    fn run_atomic(&self, state: &mut SaState, n: usize, command: Command) {
        if is_grant(&command) {
            state.grants += 1;
        }
        let input = common::run_command(&mut state.coord, command, Self::store_now());
        self.step(state, n, input);
    }

    /// Node `n`'s runtime commits `value` with its activation's token (the
    /// runtime's fenced commit on the production store). Returns whether
    /// the commit applied; `None` if the node has no activation.
    pub fn fenced_write(state: &mut SaState, n: usize, value: Bytes) -> Option<bool> {
        let token = state.nodes[n].activation?;
        let fence = state.storage.fence_or_zero();
        state.zombie_write = token.0 < fence;
        let store = state.storage.rebuild();
        let applied = match common::fenced_write(&store, token, value) {
            Ok(_) => {
                state.last_commit = Some((token.0, fence));
                true
            }
            Err(StorageError::FencingRejected { .. }) => {
                state.nodes[n].activation = None;
                false
            }
            Err(other) => panic!("fenced commit on the memory engine: {other}"),
        };
        if state.nodes[n].zombie {
            // The zombie's one commit in flight has arrived.
            state.nodes[n].zombie = false;
            state.nodes[n].activation = None;
        }
        state.storage = StorageFacts::read(&store);
        Some(applied)
    }

    /// The second answer to node `n`'s claim arrives (if there is one):
    /// fed to the core, whose request is no longer pending. Returns whether
    /// the core ignored it (no command, no event).
    fn deliver_late(&self, state: &mut SaState, n: usize) -> bool {
        state.nodes[n].claim = None;
        let Some(late) = state.nodes[n].late.take() else {
            return false;
        };
        let before = state.nodes[n].core.clone();
        let out = Self::feed(state, n, late);
        let ignored = out.commands.is_empty() && out.events.is_empty() && state.nodes[n].core == before;
        for command in out.commands {
            state.nodes[n].outbox.push(command);
        }
        ignored
    }

    fn ask(state: &SaState, n: usize) -> Output {
        let mut core = state.nodes[n].core.clone();
        core.step(Input::Claim { actor: actor() }, Self::now(state, n))
    }
}

impl Model for KelpieSingleActivation {
    type State = SaState;
    type Action = SaAction;

    fn init_states(&self) -> Vec<SaState> {
        vec![SaState {
            nodes: (0..self.nodes).map(|n| Self::fresh_node(n, 0)).collect(),
            coord: CoordinationState::new(),
            grants: 0,
            storage: StorageFacts::default(),
            last_commit: None,
            crashes: 0,
            prev_fence: 0,
            prev_owner: 0,
            prev_revision: 0,
            contended: false,
            answer_lost: false,
            zombie_write: false,
            duplicates: 0,
            duplicate_put: false,
            reorder_acted: false,
        }]
    }

    fn actions(&self, state: &SaState, actions: &mut Vec<SaAction>) {
        let actor = actor();
        for (l, _) in state.coord.lease_deadlines() {
            let trusted = state
                .nodes
                .iter()
                .any(|node| !node.down && node.core.session().is_some_and(|(lease, _)| lease == l));
            if !trusted {
                actions.push(SaAction::LeaseExpire(l.0));
            }
        }
        for (n, node) in state.nodes.iter().enumerate() {
            if node.down {
                actions.push(SaAction::Restart(n));
                continue;
            }
            let now = Self::now(state, n);
            let asked = (node.requests < self.max_requests).then(|| Self::ask(state, n));
            let asked_commands = asked.as_ref().map_or(&[][..], |out| &out.commands[..]);
            if state.grants < self.max_leases
                && (node.outbox.iter().any(is_grant) || asked_commands.iter().any(is_grant))
            {
                actions.push(SaAction::GrantSession(n));
            }
            let txn = node
                .outbox
                .iter()
                .find(|c| is_txn(c))
                .or(asked_commands.iter().find(|c| is_txn(c)));
            match txn {
                Some(command) if is_lookup(command) => actions.push(SaAction::Lookup(n)),
                Some(_) if node.reply.is_none() => actions.push(SaAction::Claim(n)),
                _ => {}
            }
            if node.reply.is_some() {
                actions.push(SaAction::ClaimAnswered(n));
                actions.push(SaAction::ClaimTimeout(n));
                if node.claim.is_some() && node.late.is_none() && state.duplicates < self.max_duplicates {
                    actions.push(SaAction::DuplicateClaim(n));
                    actions.push(SaAction::Reorder(n));
                }
            }
            if node.core.session().is_some() {
                actions.push(SaAction::SessionTimeout(n));
                if node.activation.is_some() && !node.zombie {
                    actions.push(SaAction::ZombieTimeout(n));
                }
            }
            if node.core.owned().iter().any(|(owned, _)| *owned == actor) {
                actions.push(SaAction::Release(n));
            }
            if let Some(token) = node.core.serving_token(&actor, now) {
                if node.activation != Some(token) && !node.zombie {
                    actions.push(SaAction::InstallFence(n));
                }
            }
            if node.activation.is_some() {
                actions.push(SaAction::FencedWrite(n));
            }
            // The nodes are symmetric: crashing node 0 stands for either.
            if n == 0 && state.crashes < self.max_crashes {
                actions.push(SaAction::Crash(n));
            }
        }
    }

    fn next_state(&self, last: &SaState, action: SaAction) -> Option<SaState> {
        let mut state = last.clone();
        state.prev_fence = last.storage.fence_or_zero();
        state.prev_owner = Self::owner_token(last);
        state.prev_revision = last.coord.revision();
        state.contended = false;
        state.answer_lost = false;
        state.zombie_write = false;
        state.duplicate_put = false;
        state.reorder_acted = false;
        let actor = actor();
        match action {
            SaAction::GrantSession(n) => {
                let index = state.nodes[n].outbox.iter().position(is_grant);
                match index {
                    Some(index) => {
                        let command = state.nodes[n].outbox.remove(index);
                        self.run_atomic(&mut state, n, command);
                    }
                    None => {
                        state.nodes[n].requests += 1;
                        self.step(&mut state, n, Input::Claim { actor });
                        let index = state.nodes[n].outbox.iter().position(is_grant)?;
                        let command = state.nodes[n].outbox.remove(index);
                        self.run_atomic(&mut state, n, command);
                    }
                }
            }
            SaAction::SessionTimeout(n) | SaAction::ZombieTimeout(n) => {
                let (_, until) = state.nodes[n].core.session()?;
                state.nodes[n].clock = until.as_nanos() / common::UNIT_NANOS;
                if matches!(action, SaAction::ZombieTimeout(_)) {
                    state.nodes[n].zombie = true;
                }
                self.step(&mut state, n, Input::Tick);
            }
            SaAction::Lookup(n) | SaAction::Claim(n) => {
                let queued = state.nodes[n].outbox.iter().position(is_txn);
                let command = match queued {
                    Some(index) => state.nodes[n].outbox.remove(index),
                    None => {
                        state.nodes[n].requests += 1;
                        let out = Self::feed(&mut state, n, Input::Claim { actor });
                        let mut txns = out.commands.into_iter().filter(is_txn);
                        let command = txns.next()?;
                        state.nodes[n].outbox.extend(txns);
                        command
                    }
                };
                if is_lookup(&command) {
                    self.run_atomic(&mut state, n, command);
                } else {
                    match common::run_command(&mut state.coord, command.clone(), Self::store_now()) {
                        Input::TxnAnswered { request, response } => {
                            state.nodes[n].reply = Some((request, response));
                            state.nodes[n].claim = Some(command);
                        }
                        other => self.step(&mut state, n, other),
                    }
                }
            }
            SaAction::ClaimAnswered(n) => {
                let (request, response) = state.nodes[n].reply.take()?;
                let acted = Input::TxnAnswered { request, response };
                let reordered = std::mem::take(&mut state.nodes[n].reordered);
                let differ = state.nodes[n].late.as_ref().is_some_and(|late| *late != acted);
                self.step(&mut state, n, acted);
                let ignored = self.deliver_late(&mut state, n);
                state.reorder_acted = reordered && differ && ignored;
            }
            SaAction::ClaimTimeout(n) => {
                let (request, _) = state.nodes[n].reply.take()?;
                state.nodes[n].reordered = false;
                state.answer_lost = true;
                self.step(
                    &mut state,
                    n,
                    Input::Failed {
                        request,
                        failure: Failure::Timeout,
                    },
                );
                self.deliver_late(&mut state, n);
            }
            SaAction::DuplicateClaim(n) | SaAction::Reorder(n) => {
                let command = state.nodes[n].claim.clone()?;
                state.duplicates += 1;
                let owner_before = Self::owner_token(&state);
                let answer = common::run_command(&mut state.coord, command, Self::store_now());
                state.duplicate_put = owner_before != Self::owner_token(&state);
                if matches!(action, SaAction::Reorder(_)) {
                    let Input::TxnAnswered { request, response } = answer else {
                        return None;
                    };
                    let (original, first) = state.nodes[n].reply.replace((request, response))?;
                    state.nodes[n].late = Some(Input::TxnAnswered {
                        request: original,
                        response: first,
                    });
                    state.nodes[n].reordered = true;
                } else {
                    state.nodes[n].late = Some(answer);
                }
            }
            SaAction::Release(n) => {
                state.nodes[n].activation = None;
                state.nodes[n].zombie = false;
                let out = Self::feed(&mut state, n, Input::Release { actor });
                for command in out.commands {
                    let input = common::run_command(&mut state.coord, command, Self::store_now());
                    self.step(&mut state, n, input);
                }
            }
            SaAction::InstallFence(n) => {
                let token = state.nodes[n].core.serving_token(&actor, Self::now(&state, n))?;
                let store = state.storage.rebuild();
                match complete(install_fence(&store, &actor, token)) {
                    Ok(()) => state.nodes[n].activation = Some(token),
                    Err(ClaimError::Stale { .. }) => {
                        state.nodes[n].activation = None;
                        let out = Self::feed(&mut state, n, Input::Release { actor });
                        for command in out.commands {
                            let input = common::run_command(&mut state.coord, command, Self::store_now());
                            self.step(&mut state, n, input);
                        }
                    }
                    Err(other) => panic!("install_fence on the memory engine: {other}"),
                }
                state.storage = StorageFacts::read(&store);
            }
            SaAction::FencedWrite(n) => {
                Self::fenced_write(&mut state, n, Bytes::from_static(b"v"))?;
            }
            SaAction::LeaseExpire(l) => {
                state
                    .coord
                    .lease_revoke(LeaseId(l), Self::store_now())
                    .expect("the lease is alive");
            }
            SaAction::Crash(n) => {
                state.crashes += 1;
                let clock = state.nodes[n].clock;
                let requests = state.nodes[n].requests;
                state.nodes[n] = Self::fresh_node(n, clock);
                state.nodes[n].requests = requests;
                state.nodes[n].down = true;
            }
            SaAction::Restart(n) => state.nodes[n].down = false,
        }
        if Self::owner_token(&state) == state.prev_owner {
            state.prev_revision = 0;
        }
        Some(state)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("SingleActivation", |_: &Self, state: &SaState| {
                (0..state.nodes.len()).filter(|n| Self::serving(state, *n)).count() <= 1
            }),
            Property::always("LeaseUniqueness", |_: &Self, state: &SaState| {
                (0..state.nodes.len()).filter(|n| Self::held_live(state, *n)).count() <= 1
            }),
            Property::always("NoZombieWrite", |_: &Self, state: &SaState| {
                state.last_commit.is_none_or(|(token, fence)| token >= fence)
            }),
            Property::always("FencingTokenMonotonic", |_: &Self, state: &SaState| {
                let owner = Self::owner_token(state);
                state.storage.fence_or_zero() >= state.prev_fence
                    && (owner == 0 || owner == state.prev_owner || owner > state.prev_revision)
            }),
            Property::sometimes("TwoNodesContend", |_: &Self, state: &SaState| state.contended),
            Property::sometimes("ClaimAnswerLost", |_: &Self, state: &SaState| state.answer_lost),
            Property::sometimes("ZombieAttemptsWrite", |_: &Self, state: &SaState| state.zombie_write),
            Property::sometimes("OwnerTakesOver", |_: &Self, state: &SaState| {
                state.prev_fence > 0 && state.storage.fence_or_zero() > state.prev_fence
            }),
            Property::sometimes("DuplicateClaimApplied", |_: &Self, state: &SaState| state.duplicate_put),
            Property::sometimes("ReorderedAnswerActedOn", |_: &Self, state: &SaState| {
                state.reorder_acted
            }),
        ]
    }
}
