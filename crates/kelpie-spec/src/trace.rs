//! Trace validation target: `StoreLevelOwnership`, an abstract model of the
//! store-level variables of `KelpieSingleActivation`
//! (specs/tla/KelpieSingleActivation.tla: `owner`, `rev`, `fence` and the
//! token of `lastCommit`, with a count of applied commits so that a repeated
//! commit under the same token is a step) for several actors, and [`allowed`], which decides
//! whether one recorded step of a simulator run is a stutter or a
//! transition of the model.
//!
//! Unlike the other models of this crate, this one is abstract: its state
//! is what the deterministic simulator's refinement mapping
//! (`kelpie_dst::scenarios::ownership::abstract_ownership`) reads from the
//! production coordination state and shared store after every event, and
//! its actions are the spec's store-level actions on those variables. The
//! simulator runs the production code; this model says which store changes
//! that code may make. `tests/trace_validation.rs` checks recorded runs.
//!
//! Actions (the spec's names; each is what the store does for one request):
//! - `Claim(node, lease, actor, token)`: the claim compare-and-set on a
//!   missing key puts it; the token (the key's create revision) is above
//!   every revision before, and becomes the revision. A lease is one node's
//!   session, so no other node's key may carry it.
//! - `Release(actor)`: the release transaction deletes the actor's key.
//! - `LeaseExpire(leases)`: leases expire (or are revoked), deleting every
//!   key attached to them, one revision each; several leases may expire at
//!   the same instant.
//! - `Rewrite`: a write this abstraction does not see (a put of an existing
//!   key with its own value and lease: the simulator's injected concurrent
//!   write; in production, other keys) advances the revision only.
//! - `InstallFence(actor, token)`: activation raises the stored fence to an
//!   issued token (no other actor's current token).
//! - `FencedWrite(actor, token)`: a commit applies (its token becomes the
//!   last write, the commit count grows by one) only if its token equals the
//!   stored fence at that moment; this is where an unfenced zombie write
//!   would show.
//!
//! The revision counts every write to the coordination store, including
//! ones this abstraction does not see, so actions that write may advance it
//! by more than their own write; `Claim` pins it to its token.
//!
//! Compound actions: one simulator event can make several store changes.
//! Each legitimate combination seen is one action, with why:
//! - `ExpireThen(leases, request)`: a coordination request reaching the
//!   store first expires the leases due at that instant (etcd expires
//!   before it applies), then applies (`Claim`, `Release` or `Rewrite`).
//! - `InstallThenWrite(actor, token)`: a request handler installs its fence
//!   and, when its simulated work takes no time, commits in the same poll
//!   (the shared memory engine commits inline).
//!
//! Properties: `always` `LeaseUniqueness` (one owner key per actor by
//! construction, no two keys share a token, every token is issued — at most
//! the revision — and a lease carries one node's keys only) and
//! `NoZombieWrite` (every applied commit's token is the installed fence or
//! older than it, and a commit implies a fence); `sometimes`
//! `OwnerTakesOver` (an actor claimed anew after a fenced owner lost its
//! key) and `FencedWriteApplied`.
//!
//! Bounds for model checking (`Default`): 2 nodes with 2 session leases
//! each, 2 actors, revisions (so tokens) up to 4, 2 commits per actor. The compound actions are
//! sequences of single ones, so model checking enumerates single actions
//! only; trace checking proposes every action relative to the next state
//! ([`StoreLevelOwnership::for_target`]), since tokens are unbounded.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use stateright::{Model, Property};

/// One actor's ownership key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Owner {
    /// The owning node (the key's value).
    pub node: String,
    /// The session lease the key is attached to.
    pub lease: i64,
    /// The key's create revision: the fencing token.
    pub token: u64,
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} lease {} token {}", self.node, self.lease, self.token)
    }
}

/// The store-level state: per actor its owner key, installed fence and
/// last applied commit's token (absent entries: none), and the revision.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct StoreState {
    /// `owner`: each actor's ownership key.
    pub owners: BTreeMap<String, Owner>,
    /// `fence`: each actor's installed fencing token.
    pub fences: BTreeMap<String, u64>,
    /// The token of each actor's last applied commit.
    pub last_write: BTreeMap<String, u64>,
    /// How many commits of each actor were applied (so a second commit
    /// with the same token is a step).
    pub commits: BTreeMap<String, u64>,
    /// `rev`: the coordination store's revision.
    pub revision: u64,
}

impl StoreState {
    /// The state of a fresh store: nothing owned, fenced or written; the
    /// coordination store starts at revision 1.
    pub fn initial() -> Self {
        Self {
            revision: 1,
            ..Self::default()
        }
    }

    fn fence(&self, actor: &str) -> u64 {
        self.fences.get(actor).copied().unwrap_or(0)
    }
}

/// A store-level action (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// The claim compare-and-set puts the missing key.
    Claim {
        /// The claiming node.
        node: String,
        /// Its session lease.
        lease: i64,
        /// The actor.
        actor: String,
        /// The new key's create revision.
        token: u64,
    },
    /// The release transaction deletes the key.
    Release {
        /// The actor.
        actor: String,
        /// The revision after the delete.
        revision: u64,
    },
    /// Leases expire, deleting their keys.
    LeaseExpire {
        /// The leases.
        leases: BTreeSet<i64>,
        /// The revision after the deletions.
        revision: u64,
    },
    /// A write invisible at this level advances the revision.
    Rewrite {
        /// The revision after it.
        revision: u64,
    },
    /// Activation raises the stored fence.
    InstallFence {
        /// The actor.
        actor: String,
        /// The fence installed.
        token: u64,
    },
    /// A commit fenced by `token` applies.
    FencedWrite {
        /// The actor.
        actor: String,
        /// The commit's token.
        token: u64,
    },
    /// Leases due expire, then a coordination request applies, in one event.
    ExpireThen {
        /// The leases expiring first.
        leases: BTreeSet<i64>,
        /// The request: `Claim`, `Release` or `Rewrite`.
        then: Box<Action>,
    },
    /// A fence installed and a commit under it, in one poll.
    InstallThenWrite {
        /// The actor.
        actor: String,
        /// The fence installed and the commit's token.
        token: u64,
    },
}

/// The model (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreLevelOwnership {
    /// Node ids (model checking).
    pub nodes: Vec<String>,
    /// Session leases per node (model checking): node `i` owns leases
    /// `i * leases_per_node + 1 ..= (i + 1) * leases_per_node`.
    pub leases_per_node: i64,
    /// Actor names (model checking).
    pub actors: Vec<String>,
    /// Highest revision, so token (model checking).
    pub max_revision: u64,
    /// Most commits per actor (model checking).
    pub max_commits: u64,
    /// When set, `actions` proposes the actions that could lead to this
    /// state (trace checking) instead of the bounded enumeration.
    pub target: Option<StoreState>,
}

impl Default for StoreLevelOwnership {
    fn default() -> Self {
        Self {
            nodes: vec!["node-0".to_string(), "node-1".to_string()],
            leases_per_node: 2,
            actors: vec!["register/r0".to_string(), "register/r1".to_string()],
            max_revision: 4,
            max_commits: 2,
            target: None,
        }
    }
}

impl StoreLevelOwnership {
    /// This model proposing actions towards `target` (trace checking).
    pub fn for_target(&self, target: &StoreState) -> Self {
        Self {
            target: Some(target.clone()),
            ..self.clone()
        }
    }

    /// The state after `action`, or why the action is not enabled.
    pub fn apply(&self, state: &StoreState, action: &Action) -> Result<StoreState, String> {
        let mut next = state.clone();
        match action {
            Action::Claim {
                node,
                lease,
                actor,
                token,
            } => {
                if let Some(owner) = state.owners.get(actor) {
                    return Err(format!("{actor} already has an owner ({owner})"));
                }
                if *token <= state.revision {
                    return Err(format!(
                        "token {token} is not above revision {} (not a new create revision)",
                        state.revision
                    ));
                }
                if let Some((other, owner)) = state
                    .owners
                    .iter()
                    .find(|(_, owner)| owner.lease == *lease && owner.node != *node)
                {
                    return Err(format!("lease {lease} is {}'s session (it holds {other})", owner.node));
                }
                next.owners.insert(
                    actor.clone(),
                    Owner {
                        node: node.clone(),
                        lease: *lease,
                        token: *token,
                    },
                );
                next.revision = *token;
            }
            Action::Release { actor, revision } => {
                if next.owners.remove(actor).is_none() {
                    return Err(format!("{actor} has no owner key to release"));
                }
                if *revision <= state.revision {
                    return Err(format!("revision {revision} does not advance from {}", state.revision));
                }
                next.revision = *revision;
            }
            Action::LeaseExpire { leases, revision } => {
                if leases.is_empty() {
                    return Err("no lease expires".to_string());
                }
                for lease in leases {
                    if !state.owners.values().any(|owner| owner.lease == *lease) {
                        return Err(format!("lease {lease} holds no key"));
                    }
                }
                let least = state.revision + leases.len() as u64;
                if *revision < least {
                    return Err(format!(
                        "revision {revision} is below {least} ({} + one per expired lease)",
                        state.revision
                    ));
                }
                next.owners.retain(|_, owner| !leases.contains(&owner.lease));
                next.revision = *revision;
            }
            Action::Rewrite { revision } => {
                if *revision <= state.revision {
                    return Err(format!("revision {revision} does not advance from {}", state.revision));
                }
                next.revision = *revision;
            }
            Action::InstallFence { actor, token } => {
                let fence = state.fence(actor);
                if *token <= fence {
                    return Err(format!("{actor}: token {token} does not raise fence {fence}"));
                }
                if *token > state.revision {
                    return Err(format!(
                        "{actor}: token {token} was never issued (revision {})",
                        state.revision
                    ));
                }
                if let Some((other, _)) = state
                    .owners
                    .iter()
                    .find(|(other, owner)| owner.token == *token && *other != actor)
                {
                    return Err(format!("{actor}: token {token} is {other}'s"));
                }
                next.fences.insert(actor.clone(), *token);
            }
            Action::FencedWrite { actor, token } => {
                let fence = state.fence(actor);
                if *token != fence {
                    return Err(format!(
                        "{actor}: commit with token {token} applied under fence {fence} (zombie write)"
                    ));
                }
                next.last_write.insert(actor.clone(), *token);
                *next.commits.entry(actor.clone()).or_insert(0) += 1;
            }
            Action::ExpireThen { leases, then } => {
                if !matches!(
                    **then,
                    Action::Claim { .. } | Action::Release { .. } | Action::Rewrite { .. }
                ) {
                    return Err("only a coordination request follows lease expiry in one event".to_string());
                }
                let revision = state.revision + leases.len() as u64;
                let expired = self.apply(
                    state,
                    &Action::LeaseExpire {
                        leases: leases.clone(),
                        revision,
                    },
                )?;
                return self.apply(&expired, then);
            }
            Action::InstallThenWrite { actor, token } => {
                let installed = self.apply(
                    state,
                    &Action::InstallFence {
                        actor: actor.clone(),
                        token: *token,
                    },
                )?;
                return self.apply(
                    &installed,
                    &Action::FencedWrite {
                        actor: actor.clone(),
                        token: *token,
                    },
                );
            }
        }
        Ok(next)
    }

    fn bounded_actions(&self, state: &StoreState, actions: &mut Vec<Action>) {
        let revision = state.revision + 1;
        if revision > self.max_revision {
            // Every write advances the revision: only commits remain.
            self.write_actions(state, actions);
            return;
        }
        for actor in &self.actors {
            if state.owners.contains_key(actor) {
                actions.push(Action::Release {
                    actor: actor.clone(),
                    revision,
                });
                continue;
            }
            for (index, node) in self.nodes.iter().enumerate() {
                let first = index as i64 * self.leases_per_node + 1;
                for lease in first..first + self.leases_per_node {
                    actions.push(Action::Claim {
                        node: node.clone(),
                        lease,
                        actor: actor.clone(),
                        token: revision,
                    });
                }
            }
        }
        let leases: BTreeSet<i64> = state.owners.values().map(|owner| owner.lease).collect();
        for lease in leases {
            actions.push(Action::LeaseExpire {
                leases: [lease].into(),
                revision,
            });
        }
        if !state.owners.is_empty() {
            actions.push(Action::Rewrite { revision });
        }
        self.write_actions(state, actions);
    }

    fn write_actions(&self, state: &StoreState, actions: &mut Vec<Action>) {
        for actor in &self.actors {
            for token in state.fence(actor) + 1..=state.revision {
                actions.push(Action::InstallFence {
                    actor: actor.clone(),
                    token,
                });
            }
            let commits = state.commits.get(actor).copied().unwrap_or(0);
            if state.fence(actor) > 0 && commits < self.max_commits {
                actions.push(Action::FencedWrite {
                    actor: actor.clone(),
                    token: state.fence(actor),
                });
            }
        }
    }

    /// Every action that could turn `state` into `target`: built from the
    /// differences, so unbounded tokens need no enumeration. Whether one
    /// really does is up to [`Self::apply`].
    fn target_actions(state: &StoreState, target: &StoreState, actions: &mut Vec<Action>) {
        let actors: BTreeSet<&String> = state
            .owners
            .keys()
            .chain(target.owners.keys())
            .chain(state.fences.keys())
            .chain(target.fences.keys())
            .chain(state.last_write.keys())
            .chain(target.last_write.keys())
            .chain(state.commits.keys())
            .chain(target.commits.keys())
            .collect();
        let mut requests = Vec::new();
        let mut lost_leases = BTreeSet::new();
        for actor in &actors {
            let (before, after) = (state.owners.get(*actor), target.owners.get(*actor));
            if before != after {
                if let Some(owner) = after {
                    requests.push(Action::Claim {
                        node: owner.node.clone(),
                        lease: owner.lease,
                        actor: (*actor).clone(),
                        token: owner.token,
                    });
                }
                if let Some(owner) = before {
                    lost_leases.insert(owner.lease);
                    requests.push(Action::Release {
                        actor: (*actor).clone(),
                        revision: target.revision,
                    });
                }
            }
            let fence = target.fence(actor);
            if state.fence(actor) != fence {
                actions.push(Action::InstallFence {
                    actor: (*actor).clone(),
                    token: fence,
                });
            }
            if state.last_write.get(*actor) != target.last_write.get(*actor)
                || state.commits.get(*actor) != target.commits.get(*actor)
            {
                let token = target.last_write.get(*actor).copied().unwrap_or(0);
                actions.push(Action::FencedWrite {
                    actor: (*actor).clone(),
                    token,
                });
                actions.push(Action::InstallThenWrite {
                    actor: (*actor).clone(),
                    token,
                });
            }
        }
        if target.revision != state.revision {
            requests.push(Action::Rewrite {
                revision: target.revision,
            });
        }
        // Every non-empty subset of the leases whose keys changed (few).
        let lost: Vec<i64> = lost_leases.into_iter().collect();
        let subsets: Vec<BTreeSet<i64>> = (1u32..1 << lost.len().min(8))
            .map(|mask| {
                lost.iter()
                    .enumerate()
                    .filter(|(bit, _)| mask & (1 << bit) != 0)
                    .map(|(_, lease)| *lease)
                    .collect()
            })
            .collect();
        for leases in &subsets {
            actions.push(Action::LeaseExpire {
                leases: leases.clone(),
                revision: target.revision,
            });
            for request in &requests {
                actions.push(Action::ExpireThen {
                    leases: leases.clone(),
                    then: Box::new(request.clone()),
                });
            }
        }
        actions.extend(requests);
    }
}

impl Model for StoreLevelOwnership {
    type State = StoreState;
    type Action = Action;

    fn init_states(&self) -> Vec<StoreState> {
        vec![StoreState::initial()]
    }

    fn actions(&self, state: &StoreState, actions: &mut Vec<Action>) {
        match &self.target {
            Some(target) => Self::target_actions(state, target, actions),
            None => self.bounded_actions(state, actions),
        }
    }

    fn next_state(&self, state: &StoreState, action: Action) -> Option<StoreState> {
        self.apply(state, &action).ok()
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("LeaseUniqueness", |_: &Self, state: &StoreState| {
                lease_uniqueness(state).is_ok()
            }),
            Property::always("NoZombieWrite", |_: &Self, state: &StoreState| {
                no_zombie_write(state).is_ok()
            }),
            Property::sometimes("OwnerTakesOver", |_: &Self, state: &StoreState| {
                state
                    .owners
                    .iter()
                    .any(|(actor, owner)| state.fence(actor) > 0 && owner.token > state.fence(actor))
            }),
            Property::sometimes("FencedWriteApplied", |_: &Self, state: &StoreState| {
                !state.last_write.is_empty()
            }),
        ]
    }
}

/// `LeaseUniqueness` at the store level: one owner key per actor (by
/// construction), no two keys with the same token (each is the create
/// revision of one put), no token above the revision, and no lease
/// carrying two nodes' keys.
pub fn lease_uniqueness(state: &StoreState) -> Result<(), String> {
    let mut tokens: BTreeMap<u64, &String> = BTreeMap::new();
    let mut lease_nodes: BTreeMap<i64, &String> = BTreeMap::new();
    for (actor, owner) in &state.owners {
        if let Some(other) = tokens.insert(owner.token, actor) {
            return Err(format!("{other} and {actor} share token {}", owner.token));
        }
        if owner.token > state.revision {
            return Err(format!(
                "{actor}: token {} above revision {}",
                owner.token, state.revision
            ));
        }
        if let Some(node) = lease_nodes.insert(owner.lease, &owner.node) {
            if *node != owner.node {
                return Err(format!(
                    "lease {} carries keys of {node} and {}",
                    owner.lease, owner.node
                ));
            }
        }
    }
    Ok(())
}

/// `NoZombieWrite` at the store level: each actor's last applied commit
/// carried the fence (so it is at most the fence now), and a commit implies
/// an installed fence.
pub fn no_zombie_write(state: &StoreState) -> Result<(), String> {
    for (actor, token) in &state.last_write {
        let fence = state.fence(actor);
        if *token > fence || fence == 0 {
            return Err(format!("{actor}: last commit's token {token} with fence {fence}"));
        }
    }
    Ok(())
}

/// What changed from `from` to `to`, for error messages.
pub fn describe_change(from: &StoreState, to: &StoreState) -> String {
    fn show<T: fmt::Display>(value: Option<&T>) -> String {
        value.map_or_else(|| "none".to_string(), ToString::to_string)
    }
    let mut changes = Vec::new();
    let actors: BTreeSet<&String> = from
        .owners
        .keys()
        .chain(to.owners.keys())
        .chain(from.fences.keys())
        .chain(to.fences.keys())
        .chain(from.last_write.keys())
        .chain(to.last_write.keys())
        .chain(from.commits.keys())
        .chain(to.commits.keys())
        .collect();
    for actor in actors {
        let (a, b) = (from.owners.get(actor), to.owners.get(actor));
        if a != b {
            changes.push(format!("{actor} owner {} -> {}", show(a), show(b)));
        }
        let (a, b) = (from.fences.get(actor), to.fences.get(actor));
        if a != b {
            changes.push(format!("{actor} fence {} -> {}", show(a), show(b)));
        }
        let (a, b) = (from.last_write.get(actor), to.last_write.get(actor));
        if a != b {
            changes.push(format!("{actor} last write {} -> {}", show(a), show(b)));
        }
        let (a, b) = (from.commits.get(actor), to.commits.get(actor));
        if a != b {
            changes.push(format!("{actor} commits {} -> {}", show(a), show(b)));
        }
    }
    if from.revision != to.revision {
        changes.push(format!("revision {} -> {}", from.revision, to.revision));
    }
    if changes.is_empty() {
        "no change".to_string()
    } else {
        changes.join(", ")
    }
}

/// Whether the step `from` → `to` is a stutter (`to == from`) or a
/// transition of `model`: some action proposed towards `to` yields exactly
/// `to`. The error names the change and why each candidate action fails.
pub fn allowed(model: &StoreLevelOwnership, from: &StoreState, to: &StoreState) -> Result<(), String> {
    if from == to {
        return Ok(());
    }
    let model = model.for_target(to);
    let mut actions = Vec::new();
    model.actions(from, &mut actions);
    let mut reasons = Vec::new();
    for action in &actions {
        match model.apply(from, action) {
            Ok(next) if next == *to => return Ok(()),
            Ok(next) => reasons.push(format!("{action:?} leaves {}", describe_change(&next, to))),
            Err(reason) => reasons.push(format!("{action:?}: {reason}")),
        }
    }
    Err(format!(
        "{}: no action allows it [{}]",
        describe_change(from, to),
        reasons.join("; ")
    ))
}

/// Checks every consecutive pair of `states` with [`allowed`], and that the
/// first is [`StoreState::initial`]. Returns the number of pairs checked;
/// the error names the first bad step (`step i` = states `i` → `i + 1`).
pub fn validate(model: &StoreLevelOwnership, states: &[StoreState]) -> Result<usize, String> {
    if let Some(first) = states.first() {
        if *first != StoreState::initial() {
            return Err(format!(
                "the trace does not start from the initial state: {}",
                describe_change(&StoreState::initial(), first)
            ));
        }
    }
    for (step, pair) in states.windows(2).enumerate() {
        allowed(model, &pair[0], &pair[1]).map_err(|error| format!("step {step}: {error}"))?;
    }
    Ok(states.len().saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(node: &str, lease: i64, token: u64) -> Owner {
        Owner {
            node: node.to_string(),
            lease,
            token,
        }
    }

    #[test]
    fn a_claim_after_an_expiry_and_a_fenced_write_are_allowed() {
        let model = StoreLevelOwnership::default();
        let r0 = "register/r0".to_string();
        let mut states = vec![StoreState::initial()];
        let mut next = |change: &dyn Fn(&mut StoreState)| {
            let mut state = states.last().cloned().unwrap_or_default();
            change(&mut state);
            states.push(state);
        };
        next(&|s| {
            s.owners.insert(r0.clone(), owner("node-0", 1, 2));
            s.revision = 2;
        });
        // Activation and the first commit in one poll.
        next(&|s| {
            s.fences.insert(r0.clone(), 2);
            s.last_write.insert(r0.clone(), 2);
            s.commits.insert(r0.clone(), 1);
        });
        // Expiry and a new claim reaching the store in one event.
        next(&|s| {
            s.owners.insert(r0.clone(), owner("node-1", 3, 4));
            s.revision = 4;
        });
        next(&|s| {
            s.fences.insert(r0.clone(), 4);
        });
        next(&|s| {
            s.last_write.insert(r0.clone(), 4);
            s.commits.insert(r0.clone(), 2);
        });
        // A second commit under the same token.
        next(&|s| {
            s.commits.insert(r0.clone(), 3);
        });
        assert_eq!(validate(&model, &states), Ok(6));
    }

    #[test]
    fn a_stale_write_is_rejected() {
        let model = StoreLevelOwnership::default();
        let mut from = StoreState::initial();
        from.fences.insert("register/r0".to_string(), 3);
        from.revision = 3;
        let mut to = from.clone();
        to.last_write.insert("register/r0".to_string(), 2);
        to.commits.insert("register/r0".to_string(), 1);
        let error = allowed(&model, &from, &to).expect_err("a write under an older token");
        assert!(
            error.contains("commit with token 2 applied under fence 3 (zombie write)"),
            "{error}"
        );
    }
}
