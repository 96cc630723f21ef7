//! The ownership protocol, sans I/O.
//!
//! **Sessions.** A node holds one session lease in the coordination store.
//! Every actor it owns is a key `owners/<actor>` attached to that lease, so a
//! crashed, paused or partitioned node loses all of them together when the
//! lease expires; nothing else ever cleans up ownership.
//!
//! **Claims.** "Who hosts X, else I do" is one transaction: if
//! `owners/<actor>` is missing, put it (value: this node, lease: this
//! session); otherwise read it. The fencing token is the key's create
//! revision — strictly increasing for every new owner of every actor, since
//! etcd revisions never repeat.
//!
//! **Self-fencing.** The node serves an actor only while its session is
//! valid *on its own monotonic clock*: until the send time of the last
//! successful grant or keep-alive, plus the TTL, minus the configured maximum
//! clock drift. Measuring from the send (not the answer) and subtracting the
//! drift makes the node stop before the store can have expired the lease, as
//! long as real drift stays within the bound. Fenced commits (checked by the
//! store) cover the rest: a node that lost ownership may still run code, but
//! its commits are rejected.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use kelpie_core::clock::MonotonicInstant;
use kelpie_core::coordination::{
    Compare, CoordinationError, LeaseGrant, LeaseId, Txn, TxnOp, TxnOpResult, TxnResponse,
};
use kelpie_core::{ActorId, NodeId};

/// The coordination-store prefix of ownership keys.
pub const OWNERS_PREFIX: &str = "owners/";

/// The ownership key of `actor`.
pub fn owner_key(actor: &ActorId) -> String {
    format!("{OWNERS_PREFIX}{actor}")
}

/// A fencing token: strictly increasing across the owners of an actor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FencingToken(pub u64);

impl FencingToken {
    /// The token as stored with fenced commits (big-endian, so byte order is
    /// numeric order).
    pub fn to_bytes(self) -> Bytes {
        Bytes::copy_from_slice(&self.0.to_be_bytes())
    }
}

/// Timing of the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OwnershipConfig {
    lease_ttl: Duration,
    renew_interval: Duration,
    max_clock_drift: Duration,
}

/// An [`OwnershipConfig`] that cannot be safe.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("lease TTL {ttl_ms} ms must exceed renew interval {renew_ms} ms + max clock drift {drift_ms} ms, and the renew interval must be > 0")]
pub struct OwnershipConfigError {
    /// The TTL.
    pub ttl_ms: u128,
    /// The renew interval.
    pub renew_ms: u128,
    /// The drift bound.
    pub drift_ms: u128,
}

impl OwnershipConfig {
    /// Validated timing: `lease_ttl > renew_interval + max_clock_drift`, so a
    /// node renewing on time always holds a servable lease.
    pub fn new(
        lease_ttl: Duration,
        renew_interval: Duration,
        max_clock_drift: Duration,
    ) -> Result<Self, OwnershipConfigError> {
        if renew_interval.is_zero() || lease_ttl <= renew_interval + max_clock_drift {
            return Err(OwnershipConfigError {
                ttl_ms: lease_ttl.as_millis(),
                renew_ms: renew_interval.as_millis(),
                drift_ms: max_clock_drift.as_millis(),
            });
        }
        Ok(Self {
            lease_ttl,
            renew_interval,
            max_clock_drift,
        })
    }

    /// From a validated [`kelpie_core::config::LeaseConfig`].
    pub fn from_lease_config(config: &kelpie_core::config::LeaseConfig) -> Result<Self, OwnershipConfigError> {
        Self::new(config.ttl(), config.renew_interval(), config.max_clock_drift())
    }

    /// The lease TTL.
    pub fn lease_ttl(&self) -> Duration {
        self.lease_ttl
    }

    /// How long after a grant or keep-alive was *sent* this node may serve.
    pub fn serving_window(&self) -> Duration {
        if cfg!(feature = "bug-ownership-no-self-fencing-margin") {
            return self.lease_ttl;
        }
        self.lease_ttl - self.max_clock_drift
    }
}

/// Identifies a command, to match its answer.
pub type RequestId = u64;

/// Something the driver must do against the coordination store.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    /// Grant a session lease with this TTL.
    GrantSession {
        /// The request.
        request: RequestId,
        /// The TTL.
        ttl: Duration,
    },
    /// Keep the session lease alive.
    KeepAlive {
        /// The request.
        request: RequestId,
        /// The session lease.
        lease: LeaseId,
    },
    /// Run `txn` (a claim or a release of `actor`).
    Txn {
        /// The request.
        request: RequestId,
        /// The actor concerned.
        actor: ActorId,
        /// The transaction to run.
        txn: Txn,
    },
}

/// What the coordination store answered to a [`Command`] (the driver's and
/// the models' one way to turn it into the core's next [`Input`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// `GrantSession` succeeded.
    Granted(LeaseGrant),
    /// `KeepAlive` succeeded.
    KeptAlive,
    /// `Txn` ran (its compares may have failed: see the response).
    Txn(TxnResponse),
}

impl Command {
    /// The input that reports `answer` to this command to the core.
    pub fn answered(&self, answer: Result<Answer, CoordinationError>) -> Input {
        let request = match self {
            Command::GrantSession { request, .. }
            | Command::KeepAlive { request, .. }
            | Command::Txn { request, .. } => *request,
        };
        match answer {
            Ok(Answer::Granted(grant)) => Input::SessionGranted {
                request,
                lease: grant.id,
            },
            Ok(Answer::KeptAlive) => Input::KeptAlive { request },
            Ok(Answer::Txn(response)) => Input::TxnAnswered { request, response },
            Err(error) => Input::Failed {
                request,
                failure: failure_of(&error),
            },
        }
    }
}

/// How a failed coordination request is reported to the core.
pub fn failure_of(error: &CoordinationError) -> Failure {
    match error {
        CoordinationError::Timeout { .. } => Failure::Timeout,
        CoordinationError::LeaseNotFound { .. } => Failure::LeaseNotFound,
        CoordinationError::Unavailable { .. } | CoordinationError::InvalidRequest { .. } => Failure::Refused,
    }
}

/// Something the runtime must know.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// This node now owns `actor` with `token` and may serve it.
    Serving {
        /// The actor.
        actor: ActorId,
        /// Its fencing token.
        token: FencingToken,
    },
    /// `owner` owns `actor`.
    OwnedElsewhere {
        /// The actor.
        actor: ActorId,
        /// Its owner.
        owner: NodeId,
    },
    /// The claim failed or its outcome is unknown; claiming again is safe.
    ClaimFailed {
        /// The actor.
        actor: ActorId,
    },
    /// Stop serving `actor` now: the session may have expired.
    Fenced {
        /// The actor.
        actor: ActorId,
        /// The token it was served with.
        token: FencingToken,
    },
    /// `actor` was released.
    Released {
        /// The actor.
        actor: ActorId,
    },
}

/// How a command failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Failure {
    /// No answer: the command may or may not have been applied.
    Timeout,
    /// The lease no longer exists.
    LeaseNotFound,
    /// Refused without being applied.
    Refused,
}

/// An input to the protocol.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Input {
    /// Time passed (the driver ticks at least every renew interval / 4).
    Tick,
    /// The runtime wants to serve `actor`.
    Claim {
        /// The actor.
        actor: ActorId,
    },
    /// The runtime deactivated `actor`; give it up.
    Release {
        /// The actor.
        actor: ActorId,
    },
    /// A session grant succeeded.
    SessionGranted {
        /// The request.
        request: RequestId,
        /// The granted lease.
        lease: LeaseId,
    },
    /// A keep-alive succeeded.
    KeptAlive {
        /// The request.
        request: RequestId,
    },
    /// A transaction was answered.
    TxnAnswered {
        /// The request.
        request: RequestId,
        /// The answer.
        response: TxnResponse,
    },
    /// A command failed.
    Failed {
        /// The request.
        request: RequestId,
        /// How.
        failure: Failure,
    },
}

/// Commands for the driver and events for the runtime.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    /// To execute against the coordination store.
    pub commands: Vec<Command>,
    /// To deliver to the runtime.
    pub events: Vec<Event>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Session {
    None,
    Granting,
    Live {
        lease: LeaseId,
        valid_until: MonotonicInstant,
        last_renew_sent: MonotonicInstant,
        renewing: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum ActorClaim {
    /// Wants to claim once the session is live.
    Waiting,
    /// (bug-ownership-lookup-then-claim) looked the owner up.
    LookingUp,
    Claiming {
        lease: LeaseId,
    },
    Owned {
        token: FencingToken,
        lease: LeaseId,
    },
    /// Deleting the key of the claim that got `token`.
    Releasing {
        token: FencingToken,
    },
    /// A release timed out: the delete may still land later. Until a
    /// retried release is answered, the old key must not be adopted again.
    ReleaseUnknown {
        token: FencingToken,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Pending {
    Grant { sent_at: MonotonicInstant },
    KeepAlive { sent_at: MonotonicInstant, lease: LeaseId },
    Claim { actor: ActorId, lease: LeaseId },
    Lookup { actor: ActorId, lease: LeaseId },
    Release { actor: ActorId, token: FencingToken },
}

/// One node's view of the ownership protocol.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Ownership {
    node: NodeId,
    config: OwnershipConfig,
    session: Session,
    actors: BTreeMap<ActorId, ActorClaim>,
    pending: BTreeMap<RequestId, Pending>,
    next_request: RequestId,
}

/// The claim transaction: "if nobody owns `actor`, this node does (under
/// `lease`); else tell me who does", as one compare-and-set.
pub fn claim_txn(actor: &ActorId, node: &NodeId, lease: LeaseId) -> Txn {
    let key = owner_key(actor);
    let compares = if cfg!(any(
        feature = "bug-ownership-acquire-without-compare",
        feature = "bug-ownership-lookup-then-claim"
    )) {
        Vec::new()
    } else {
        vec![Compare::missing(key.clone())]
    };
    Txn {
        compares,
        success: vec![TxnOp::Put {
            key: key.clone(),
            value: Bytes::from(node.to_string()),
            lease: Some(lease),
        }],
        failure: vec![TxnOp::Get { key }],
    }
}

/// The release transaction: delete the ownership key only if it is still
/// the one this node created (its create revision is the token).
pub fn release_txn(actor: &ActorId, token: FencingToken) -> Txn {
    let key = owner_key(actor);
    Txn {
        compares: vec![Compare {
            key: key.clone(),
            op: kelpie_core::coordination::CompareOp::Equal,
            target: kelpie_core::coordination::CompareTarget::CreateRevision(
                i64::try_from(token.0).unwrap_or(i64::MAX),
            ),
        }],
        success: vec![TxnOp::Delete { key }],
        failure: vec![],
    }
}

impl Ownership {
    /// A node with no session and no actors.
    pub fn new(node: NodeId, config: OwnershipConfig) -> Self {
        Self {
            node,
            config,
            session: Session::None,
            actors: BTreeMap::new(),
            pending: BTreeMap::new(),
            next_request: 1,
        }
    }

    /// The token to serve `actor` with at `now`, if this node may serve it:
    /// it owns it and its session is valid on this node's clock.
    pub fn serving_token(&self, actor: &ActorId, now: MonotonicInstant) -> Option<FencingToken> {
        self.serving_until(actor, now).map(|(token, _)| token)
    }

    /// Like [`Ownership::serving_token`], with the instant until which this
    /// node may serve `actor` unless something changes (a step of the core).
    pub fn serving_until(&self, actor: &ActorId, now: MonotonicInstant) -> Option<(FencingToken, MonotonicInstant)> {
        match (self.actors.get(actor), self.session) {
            (
                Some(ActorClaim::Owned { token, lease }),
                Session::Live {
                    lease: live,
                    valid_until,
                    ..
                },
            ) if *lease == live && now < valid_until => Some((*token, valid_until)),
            _ => None,
        }
    }

    /// Actors this node believes it owns (whether or not still servable).
    pub fn owned(&self) -> Vec<(ActorId, FencingToken)> {
        self.actors
            .iter()
            .filter_map(|(actor, claim)| match claim {
                ActorClaim::Owned { token, .. } => Some((actor.clone(), *token)),
                _ => None,
            })
            .collect()
    }

    /// Actors this node believes it owns, with their token and the session
    /// lease their ownership key is attached to.
    pub fn owned_with_lease(&self) -> Vec<(ActorId, FencingToken, LeaseId)> {
        self.actors
            .iter()
            .filter_map(|(actor, claim)| match claim {
                ActorClaim::Owned { token, lease } => Some((actor.clone(), *token, *lease)),
                _ => None,
            })
            .collect()
    }

    /// The session lease and the instant (this node's clock) until which it
    /// is believed valid.
    pub fn session(&self) -> Option<(LeaseId, MonotonicInstant)> {
        match self.session {
            Session::Live { lease, valid_until, .. } => Some((lease, valid_until)),
            _ => None,
        }
    }

    fn request(&mut self, pending: Pending) -> RequestId {
        let id = self.next_request;
        self.next_request += 1;
        self.pending.insert(id, pending);
        id
    }

    /// Issues the claims of every actor waiting for a live session.
    fn issue_waiting_claims(&mut self, lease: LeaseId, out: &mut Output) {
        let waiting: Vec<ActorId> = self
            .actors
            .iter()
            .filter(|(_, claim)| **claim == ActorClaim::Waiting)
            .map(|(actor, _)| actor.clone())
            .collect();
        for actor in waiting {
            self.issue_claim(actor, lease, out);
        }
    }

    fn issue_claim(&mut self, actor: ActorId, lease: LeaseId, out: &mut Output) {
        if cfg!(feature = "bug-ownership-lookup-then-claim") {
            self.actors.insert(actor.clone(), ActorClaim::LookingUp);
            let request = self.request(Pending::Lookup {
                actor: actor.clone(),
                lease,
            });
            let key = owner_key(&actor);
            out.commands.push(Command::Txn {
                request,
                actor,
                txn: Txn {
                    compares: vec![],
                    success: vec![TxnOp::Get { key }],
                    failure: vec![],
                },
            });
            return;
        }
        self.actors.insert(actor.clone(), ActorClaim::Claiming { lease });
        let request = self.request(Pending::Claim {
            actor: actor.clone(),
            lease,
        });
        let txn = claim_txn(&actor, &self.node, lease);
        out.commands.push(Command::Txn { request, actor, txn });
    }

    fn issue_release(&mut self, actor: ActorId, token: FencingToken, out: &mut Output) {
        self.actors.insert(actor.clone(), ActorClaim::Releasing { token });
        let request = self.request(Pending::Release {
            actor: actor.clone(),
            token,
        });
        let txn = release_txn(&actor, token);
        out.commands.push(Command::Txn { request, actor, txn });
    }

    fn ensure_session(&mut self, now: MonotonicInstant, out: &mut Output) {
        if self.session == Session::None {
            self.session = Session::Granting;
            let request = self.request(Pending::Grant { sent_at: now });
            out.commands.push(Command::GrantSession {
                request,
                ttl: self.config.lease_ttl,
            });
        }
    }

    /// Drops the session: every owned actor is fenced.
    fn lose_session(&mut self, out: &mut Output) {
        self.session = Session::None;
        let actors = std::mem::take(&mut self.actors);
        for (actor, claim) in actors {
            match claim {
                // Bug: keep believing in ownership across the session loss;
                // the next session re-binds it without claiming again.
                ActorClaim::Owned { .. } if cfg!(feature = "bug-ownership-renew-without-holder-check") => {
                    self.actors.insert(actor, claim);
                }
                ActorClaim::Owned { token, .. } => out.events.push(Event::Fenced { actor, token }),
                ActorClaim::Waiting => {
                    self.actors.insert(actor, ActorClaim::Waiting);
                }
                ActorClaim::Claiming { .. } | ActorClaim::LookingUp => out.events.push(Event::ClaimFailed { actor }),
                // The keys die with the session lease.
                ActorClaim::Releasing { .. } | ActorClaim::ReleaseUnknown { .. } => {
                    out.events.push(Event::Released { actor })
                }
            }
        }
    }

    /// Feeds one input at `now` (this node's monotonic time).
    pub fn step(&mut self, input: Input, now: MonotonicInstant) -> Output {
        let mut out = Output::default();
        match input {
            Input::Tick => self.tick(now, &mut out),
            Input::Claim { actor } => match (self.actors.get(&actor).copied(), self.session) {
                (Some(ActorClaim::Owned { token, .. }), _) if self.serving_token(&actor, now).is_some() => {
                    out.events.push(Event::Serving { actor, token });
                }
                (Some(ActorClaim::ReleaseUnknown { token }), _) => self.issue_release(actor, token, &mut out),
                (Some(_), _) => {}
                (None, Session::Live { lease, valid_until, .. }) if now < valid_until => {
                    self.issue_claim(actor, lease, &mut out);
                }
                (None, _) => {
                    self.actors.insert(actor, ActorClaim::Waiting);
                    self.ensure_session(now, &mut out);
                }
            },
            Input::Release { actor } => {
                if let Some(ActorClaim::Owned { token, .. }) = self.actors.get(&actor).copied() {
                    self.issue_release(actor, token, &mut out);
                } else if matches!(self.actors.get(&actor), Some(ActorClaim::Waiting)) {
                    self.actors.remove(&actor);
                }
            }
            Input::SessionGranted { request, lease } => {
                if let Some(Pending::Grant { sent_at }) = self.pending.remove(&request) {
                    let valid_until = sent_at.saturating_add(self.config.serving_window());
                    self.session = Session::Live {
                        lease,
                        valid_until,
                        last_renew_sent: sent_at,
                        renewing: false,
                    };
                    if cfg!(feature = "bug-ownership-renew-without-holder-check") {
                        for claim in self.actors.values_mut() {
                            if let ActorClaim::Owned { lease: owned_under, .. } = claim {
                                *owned_under = lease;
                            }
                        }
                    }
                    self.issue_waiting_claims(lease, &mut out);
                }
            }
            Input::KeptAlive { request } => {
                if let Some(Pending::KeepAlive { sent_at, lease }) = self.pending.remove(&request) {
                    if let Session::Live {
                        lease: live,
                        valid_until,
                        ..
                    } = self.session
                    {
                        if live == lease {
                            self.session = Session::Live {
                                lease,
                                valid_until: valid_until.max(sent_at.saturating_add(self.config.serving_window())),
                                last_renew_sent: sent_at,
                                renewing: false,
                            };
                        }
                    }
                }
            }
            Input::TxnAnswered { request, response } => self.answered(request, response, now, &mut out),
            Input::Failed { request, failure } => self.failed(request, failure, now, &mut out),
        }
        out
    }

    fn tick(&mut self, now: MonotonicInstant, out: &mut Output) {
        if let Session::Live {
            lease,
            valid_until,
            last_renew_sent,
            renewing,
        } = self.session
        {
            if now >= valid_until {
                // Self-fencing: the store may expire the lease any moment now.
                self.lose_session(out);
                if !self.actors.is_empty() {
                    self.ensure_session(now, out);
                }
                return;
            }
            // Claims that arrived while the session was being renewed.
            self.issue_waiting_claims(lease, out);
            let unknown: Vec<(ActorId, FencingToken)> = self
                .actors
                .iter()
                .filter_map(|(actor, claim)| match claim {
                    ActorClaim::ReleaseUnknown { token } => Some((actor.clone(), *token)),
                    _ => None,
                })
                .collect();
            for (actor, token) in unknown {
                self.issue_release(actor, token, out);
            }
            let due = now.saturating_duration_since(last_renew_sent) >= self.config.renew_interval;
            if due && !renewing {
                let request = self.request(Pending::KeepAlive { sent_at: now, lease });
                out.commands.push(Command::KeepAlive { request, lease });
                self.session = Session::Live {
                    lease,
                    valid_until,
                    last_renew_sent,
                    renewing: true,
                };
            }
        } else if self.actors.values().any(|claim| *claim == ActorClaim::Waiting) {
            self.ensure_session(now, out);
        }
    }

    fn answered(&mut self, request: RequestId, response: TxnResponse, now: MonotonicInstant, out: &mut Output) {
        match self.pending.remove(&request) {
            Some(Pending::Claim { actor, lease }) => {
                let live = matches!(self.session, Session::Live { lease: live, valid_until, .. } if live == lease && now < valid_until);
                if self.actors.get(&actor) != Some(&ActorClaim::Claiming { lease }) {
                    return;
                }
                if response.succeeded {
                    let token = FencingToken(u64::try_from(response.revision).unwrap_or(0));
                    self.own(actor, token, lease, live, out);
                    return;
                }
                match response.results.first() {
                    Some(TxnOpResult::Get(Some(kv))) => {
                        let owner = String::from_utf8_lossy(&kv.value).parse::<NodeId>();
                        let token = FencingToken(u64::try_from(kv.create_revision).unwrap_or(0));
                        match owner {
                            // An earlier claim of ours was applied but its answer lost.
                            Ok(owner) if owner == self.node && kv.lease == Some(lease) => {
                                self.own(actor, token, lease, live, out)
                            }
                            // Our key under a session we no longer trust: it dies
                            // with that lease; claim again then.
                            Ok(owner) if owner == self.node => {
                                self.actors.remove(&actor);
                                out.events.push(Event::ClaimFailed { actor });
                            }
                            Ok(owner) => {
                                self.actors.remove(&actor);
                                out.events.push(Event::OwnedElsewhere { actor, owner });
                            }
                            Err(_) => {
                                self.actors.remove(&actor);
                                out.events.push(Event::ClaimFailed { actor });
                            }
                        }
                    }
                    _ => {
                        // The owner vanished between compare and read: claim again.
                        self.actors.remove(&actor);
                        out.events.push(Event::ClaimFailed { actor });
                    }
                }
            }
            Some(Pending::Lookup { actor, lease }) => {
                // bug-ownership-lookup-then-claim: a separate claim follows the lookup.
                match response.results.first() {
                    Some(TxnOpResult::Get(Some(kv))) => {
                        self.actors.remove(&actor);
                        match String::from_utf8_lossy(&kv.value).parse::<NodeId>() {
                            Ok(owner) if owner != self.node => out.events.push(Event::OwnedElsewhere { actor, owner }),
                            _ => out.events.push(Event::ClaimFailed { actor }),
                        }
                    }
                    _ => {
                        self.actors.insert(actor.clone(), ActorClaim::Claiming { lease });
                        let request = self.request(Pending::Claim {
                            actor: actor.clone(),
                            lease,
                        });
                        let txn = claim_txn(&actor, &self.node, lease);
                        out.commands.push(Command::Txn { request, actor, txn });
                    }
                }
            }
            // Only the answer to the release the actor is in: an answer to
            // an older one (a claim and release ago, its key long gone) says
            // nothing of the current key, whose own delete may be in flight.
            Some(Pending::Release { actor, token })
                if self.actors.get(&actor) == Some(&ActorClaim::Releasing { token }) =>
            {
                self.actors.remove(&actor);
                out.events.push(Event::Released { actor });
            }
            _ => {}
        }
    }

    fn own(&mut self, actor: ActorId, token: FencingToken, lease: LeaseId, live: bool, out: &mut Output) {
        if live {
            self.actors.insert(actor.clone(), ActorClaim::Owned { token, lease });
            out.events.push(Event::Serving { actor, token });
        } else {
            // Won under a session this node no longer trusts: the key dies
            // with that lease; do not serve.
            self.actors.remove(&actor);
            out.events.push(Event::ClaimFailed { actor });
        }
    }

    fn failed(&mut self, request: RequestId, failure: Failure, now: MonotonicInstant, out: &mut Output) {
        match self.pending.remove(&request) {
            Some(Pending::Grant { .. }) if self.session == Session::Granting => self.session = Session::None,
            Some(Pending::Grant { .. }) => {}
            Some(Pending::KeepAlive { lease, .. }) => {
                if let Session::Live {
                    lease: live,
                    valid_until,
                    last_renew_sent,
                    ..
                } = self.session
                {
                    if live == lease {
                        if failure == Failure::LeaseNotFound {
                            self.lose_session(out);
                            if !self.actors.is_empty() {
                                self.ensure_session(now, out);
                            }
                        } else {
                            self.session = Session::Live {
                                lease,
                                valid_until,
                                last_renew_sent,
                                renewing: false,
                            };
                        }
                    }
                }
            }
            Some(Pending::Claim { actor, .. }) | Some(Pending::Lookup { actor, .. }) => {
                self.actors.remove(&actor);
                out.events.push(Event::ClaimFailed { actor });
            }
            // The delete may still land: never adopt the old key again until a
            // retried release is answered (or the session ends).
            // Only for the release the actor is in (see `answered`).
            Some(Pending::Release { actor, token })
                if self.actors.get(&actor) == Some(&ActorClaim::Releasing { token }) =>
            {
                self.actors.insert(actor, ActorClaim::ReleaseUnknown { token });
            }
            Some(Pending::Release { .. }) => {}
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kelpie_core::coordination::CoordinationState;

    fn ms(ms: u64) -> MonotonicInstant {
        MonotonicInstant::from_nanos(ms * 1_000_000)
    }

    fn config() -> OwnershipConfig {
        OwnershipConfig::new(
            Duration::from_millis(1_000),
            Duration::from_millis(300),
            Duration::from_millis(100),
        )
        .expect("valid")
    }

    fn actor() -> ActorId {
        "counter/c1".parse().expect("valid")
    }

    /// Executes commands against a real coordination state machine, feeding
    /// answers back; returns the events.
    fn run(node: &mut Ownership, store: &mut CoordinationState, input: Input, now: MonotonicInstant) -> Vec<Event> {
        let mut events = Vec::new();
        let mut inputs = vec![input];
        while let Some(input) = inputs.pop() {
            let output = node.step(input, now);
            events.extend(output.events);
            for command in output.commands {
                inputs.push(answer(store, command, now));
            }
        }
        events
    }

    /// The coordination store's answer to `command`, as the next input.
    fn answer(store: &mut CoordinationState, command: Command, now: MonotonicInstant) -> Input {
        match command {
            Command::GrantSession { request, ttl } => match store.lease_grant(ttl, now) {
                Ok(grant) => Input::SessionGranted {
                    request,
                    lease: grant.id,
                },
                Err(_) => Input::Failed {
                    request,
                    failure: Failure::Refused,
                },
            },
            Command::KeepAlive { request, lease } => match store.lease_keep_alive(lease, now) {
                Ok(_) => Input::KeptAlive { request },
                Err(_) => Input::Failed {
                    request,
                    failure: Failure::LeaseNotFound,
                },
            },
            Command::Txn { request, txn, .. } => match store.txn(&txn, now) {
                Ok(response) => Input::TxnAnswered { request, response },
                Err(_) => Input::Failed {
                    request,
                    failure: Failure::Refused,
                },
            },
        }
    }

    #[test]
    fn a_tick_never_revokes_a_grant_before_its_end() {
        // The driver keeps trusting a cached grant across ticks (other
        // inputs invalidate them): a tick may end a grant only once the
        // grant's end has passed.
        let mut store = CoordinationState::new();
        let mut node = Ownership::new(NodeId::from_index(0), config());
        let actors: Vec<ActorId> = (0..4)
            .map(|i| format!("counter/c{i}").parse().expect("valid"))
            .collect();
        let mut seed = 7u64;
        let mut random = move || {
            seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = seed;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let (mut now, mut checked) = (0u64, 0u32);
        for _ in 0..5_000 {
            let r = random();
            // Mostly short steps; now and then past the lease TTL.
            now += r % 120 + if r % 61 == 0 { 1_500 } else { 0 };
            let actor = actors[usize::try_from((r >> 8) % 4).expect("small")].clone();
            match (r >> 16) % 4 {
                0 => drop(run(&mut node, &mut store, Input::Claim { actor }, ms(now))),
                1 => drop(run(&mut node, &mut store, Input::Release { actor }, ms(now))),
                _ => {
                    let before: Vec<_> = actors.iter().map(|a| node.serving_until(a, ms(now))).collect();
                    let output = node.step(Input::Tick, ms(now));
                    for (a, grant) in actors.iter().zip(before) {
                        let Some((token, until)) = grant else { continue };
                        let after = node.serving_until(a, ms(now));
                        assert_eq!(after.map(|(token, _)| token), Some(token), "{a} at {now} ms");
                        assert!(after.is_some_and(|(_, end)| end >= until), "{a} at {now} ms");
                        checked += 1;
                    }
                    for command in output.commands {
                        let input = answer(&mut store, command, ms(now));
                        run(&mut node, &mut store, input, ms(now));
                    }
                }
            }
        }
        assert!(checked > 1_000, "grants checked across ticks: {checked}");
    }

    #[test]
    fn invalid_timing_is_refused() {
        assert_eq!(
            OwnershipConfig::new(
                Duration::from_millis(400),
                Duration::from_millis(300),
                Duration::from_millis(100)
            ),
            Err(OwnershipConfigError {
                ttl_ms: 400,
                renew_ms: 300,
                drift_ms: 100
            })
        );
    }

    #[test]
    fn first_claim_wins_and_the_second_node_learns_the_owner() {
        let mut store = CoordinationState::new();
        let mut a = Ownership::new(NodeId::from_index(0), config());
        let mut b = Ownership::new(NodeId::from_index(1), config());
        let events = run(&mut a, &mut store, Input::Claim { actor: actor() }, ms(0));
        let token = match events.as_slice() {
            [Event::Serving { actor: served, token }] if *served == actor() => *token,
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(a.serving_token(&actor(), ms(10)), Some(token));
        let events = run(&mut b, &mut store, Input::Claim { actor: actor() }, ms(5));
        assert_eq!(
            events,
            vec![Event::OwnedElsewhere {
                actor: actor(),
                owner: NodeId::from_index(0)
            }]
        );
        assert_eq!(b.serving_token(&actor(), ms(10)), None);
    }

    #[test]
    fn a_node_stops_serving_before_its_lease_can_expire_and_tokens_increase() {
        let mut store = CoordinationState::new();
        let mut a = Ownership::new(NodeId::from_index(0), config());
        let mut b = Ownership::new(NodeId::from_index(1), config());
        let first = run(&mut a, &mut store, Input::Claim { actor: actor() }, ms(0));
        let Some(Event::Serving { token: first_token, .. }) = first.first().cloned() else {
            panic!("{first:?}")
        };
        // A is paused: no ticks, no keep-alives. Its window is TTL - drift = 900 ms.
        assert_eq!(a.serving_token(&actor(), ms(899)), Some(first_token));
        assert_eq!(a.serving_token(&actor(), ms(900)), None, "self-fenced before expiry");
        // The store expires the lease at 1000 ms; B takes over with a larger token.
        let events = run(&mut b, &mut store, Input::Claim { actor: actor() }, ms(1_001));
        let Some(Event::Serving {
            token: second_token, ..
        }) = events.first().cloned()
        else {
            panic!("{events:?}")
        };
        assert!(second_token > first_token);
        // A wakes up and ticks: it fences the actor rather than serving it.
        let events = run(&mut a, &mut store, Input::Tick, ms(1_002));
        assert_eq!(
            events,
            vec![Event::Fenced {
                actor: actor(),
                token: first_token
            }]
        );
        assert_eq!(a.owned(), vec![]);
    }

    #[test]
    fn keep_alives_extend_the_window_from_their_send_time() {
        let mut store = CoordinationState::new();
        let mut a = Ownership::new(NodeId::from_index(0), config());
        run(&mut a, &mut store, Input::Claim { actor: actor() }, ms(0));
        assert_eq!(run(&mut a, &mut store, Input::Tick, ms(299)), vec![]);
        let output = a.step(Input::Tick, ms(300));
        let [Command::KeepAlive { request, .. }] = output.commands.as_slice() else {
            panic!("{output:?}")
        };
        // The answer arrives late; validity still counts from the send at 300.
        let _ = store.lease_keep_alive(LeaseId(1), ms(300));
        a.step(Input::KeptAlive { request: *request }, ms(700));
        assert_eq!(a.session().map(|(_, until)| until), Some(ms(1_200)));
    }

    #[test]
    fn a_lost_claim_answer_is_recognized_on_the_retry() {
        let mut store = CoordinationState::new();
        let mut a = Ownership::new(NodeId::from_index(0), config());
        let output = a.step(Input::Claim { actor: actor() }, ms(0));
        let [Command::GrantSession { request, ttl }] = output.commands.as_slice() else {
            panic!("{output:?}")
        };
        let grant = store.lease_grant(*ttl, ms(0)).expect("grant");
        let output = a.step(
            Input::SessionGranted {
                request: *request,
                lease: grant.id,
            },
            ms(1),
        );
        let [Command::Txn { request, txn, .. }] = output.commands.as_slice() else {
            panic!("{output:?}")
        };
        // The claim is applied but the answer is lost.
        let applied = store.txn(txn, ms(1)).expect("applied");
        let output = a.step(
            Input::Failed {
                request: *request,
                failure: Failure::Timeout,
            },
            ms(500),
        );
        assert_eq!(output.events, vec![Event::ClaimFailed { actor: actor() }]);
        // Claiming again finds our own key under our live lease: we own it.
        let events = run(&mut a, &mut store, Input::Claim { actor: actor() }, ms(501));
        assert_eq!(
            events,
            vec![Event::Serving {
                actor: actor(),
                token: FencingToken(applied.revision as u64)
            }]
        );
    }

    #[test]
    fn losing_the_session_fences_every_owned_actor() {
        let mut store = CoordinationState::new();
        let mut a = Ownership::new(NodeId::from_index(0), config());
        let other: ActorId = "counter/c2".parse().expect("valid");
        run(&mut a, &mut store, Input::Claim { actor: actor() }, ms(0));
        run(&mut a, &mut store, Input::Claim { actor: other.clone() }, ms(1));
        assert_eq!(a.owned().len(), 2);
        // The store expires the session (A was partitioned); the keep-alive says so.
        store.expire_leases(ms(2_000));
        let events = run(&mut a, &mut store, Input::Tick, ms(300));
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(events.iter().all(|event| matches!(event, Event::Fenced { .. })));
        assert_eq!(a.serving_token(&actor(), ms(301)), None);
    }

    #[test]
    fn a_timed_out_release_is_never_followed_by_adopting_the_old_key() {
        let mut store = CoordinationState::new();
        let mut a = Ownership::new(NodeId::from_index(0), config());
        run(&mut a, &mut store, Input::Claim { actor: actor() }, ms(0));
        let old_token = a.serving_token(&actor(), ms(1)).expect("owned");
        let output = a.step(Input::Release { actor: actor() }, ms(10));
        let [Command::Txn { request, txn, .. }] = output.commands.as_slice() else {
            panic!("{output:?}")
        };
        let (request, delayed_delete) = (*request, txn.clone());
        // The delete is in flight; its answer is lost.
        let output = a.step(
            Input::Failed {
                request,
                failure: Failure::Timeout,
            },
            ms(20),
        );
        assert_eq!(output.events, vec![]);
        // A new claim must not adopt the still-present key (the delete may land).
        let output = a.step(Input::Claim { actor: actor() }, ms(30));
        assert!(
            output
                .events
                .iter()
                .all(|event| !matches!(event, Event::Serving { .. })),
            "{output:?}"
        );
        assert_eq!(a.serving_token(&actor(), ms(31)), None);
        // The delayed delete lands; the retried release is answered; a new
        // claim then gets a new, larger token.
        assert!(store.txn(&delayed_delete, ms(40)).expect("delete").succeeded);
        let [Command::Txn { request, txn, .. }] = output.commands.as_slice() else {
            panic!("{output:?}")
        };
        let response = store.txn(txn, ms(41)).expect("retried release");
        let output = a.step(
            Input::TxnAnswered {
                request: *request,
                response,
            },
            ms(42),
        );
        assert_eq!(output.events, vec![Event::Released { actor: actor() }]);
        let events = run(&mut a, &mut store, Input::Claim { actor: actor() }, ms(50));
        let [Event::Serving { token, .. }] = events.as_slice() else {
            panic!("{events:?}")
        };
        assert!(*token > old_token);
    }

    /// The single command of `output`: a transaction (its request and txn).
    fn only_txn(output: &Output) -> (RequestId, Txn) {
        let [Command::Txn { request, txn, .. }] = output.commands.as_slice() else {
            panic!("expected one transaction: {output:?}")
        };
        (*request, txn.clone())
    }

    /// Found by the simulator (runtime scenario, seed 7011495): the outcome
    /// of a release made for an earlier claim reached the actor while it
    /// was releasing a newer claim. Its timeout turned that newer release
    /// into a retry of the old one, whose answer (a failed compare: the old
    /// key was long gone) was taken as "released"; a new claim then adopted
    /// the newer key while its own delete was still in flight. The delete
    /// landed, and another node claimed the actor while this one served it.
    #[test]
    fn the_outcome_of_an_earlier_release_never_ends_a_later_one() {
        let mut store = CoordinationState::new();
        let mut a = Ownership::new(NodeId::from_index(0), config());
        run(&mut a, &mut store, Input::Claim { actor: actor() }, ms(0));
        let first = a.serving_token(&actor(), ms(1)).expect("owned");
        // Releasing the first claim: its answer is lost, and the retry
        // the next tick sends is still in flight when the session ends.
        let (request, _) = only_txn(&a.step(Input::Release { actor: actor() }, ms(10)));
        let failure = Failure::Timeout;
        assert_eq!(a.step(Input::Failed { request, failure }, ms(20)).events, vec![]);
        let (old_retry, old_delete) = only_txn(&a.step(Input::Tick, ms(30)));
        // Past its serving window the session ends (the keep-alives go
        // unanswered); the store expires it, and the first key with it.
        let events = a.step(Input::Tick, ms(950)).events;
        assert_eq!(events, vec![Event::Released { actor: actor() }]);
        store.expire_leases(ms(1_100));
        // A second claim under a new session, then its release, in flight.
        let events = run(&mut a, &mut store, Input::Claim { actor: actor() }, ms(1_200));
        let [Event::Serving { token: second, .. }] = events.as_slice() else {
            panic!("{events:?}")
        };
        assert!(*second > first);
        let (release, delete) = only_txn(&a.step(Input::Release { actor: actor() }, ms(1_210)));
        // The old retry's outcomes, either one, change nothing: no
        // "released", no retry of the old release, no serving.
        let failure = Failure::Timeout;
        assert_eq!(
            a.step(
                Input::Failed {
                    request: old_retry,
                    failure
                },
                ms(1_220)
            ),
            Output::default()
        );
        let response = store.txn(&old_delete, ms(1_230)).expect("old delete");
        assert!(!response.succeeded, "the first key is long gone");
        let answer = Input::TxnAnswered {
            request: old_retry,
            response,
        };
        assert_eq!(a.step(answer, ms(1_230)), Output::default());
        assert_eq!(
            a.step(Input::Tick, ms(1_240)),
            Output::default(),
            "no retry of the old release"
        );
        // So a claim now must not adopt the second key: its delete may land.
        let output = a.step(Input::Claim { actor: actor() }, ms(1_250));
        assert_eq!(output, Output::default());
        assert_eq!(a.serving_token(&actor(), ms(1_250)), None);
        // The second release is answered: released, and a new claim gets a
        // new, larger token.
        let response = store.txn(&delete, ms(1_260)).expect("delete");
        assert!(response.succeeded);
        let output = a.step(
            Input::TxnAnswered {
                request: release,
                response,
            },
            ms(1_260),
        );
        assert_eq!(output.events, vec![Event::Released { actor: actor() }]);
        let events = run(&mut a, &mut store, Input::Claim { actor: actor() }, ms(1_270));
        let [Event::Serving { token: third, .. }] = events.as_slice() else {
            panic!("{events:?}")
        };
        assert!(third > second);
    }

    #[test]
    fn release_deletes_only_our_own_key() {
        let mut store = CoordinationState::new();
        let mut a = Ownership::new(NodeId::from_index(0), config());
        run(&mut a, &mut store, Input::Claim { actor: actor() }, ms(0));
        let events = run(&mut a, &mut store, Input::Release { actor: actor() }, ms(10));
        assert_eq!(events, vec![Event::Released { actor: actor() }]);
        assert_eq!(store.get(&owner_key(&actor()), ms(10)), Ok(None));
        // A stale release (old token) does not delete a newer owner's key.
        let mut b = Ownership::new(NodeId::from_index(1), config());
        run(&mut b, &mut store, Input::Claim { actor: actor() }, ms(20));
        let stale = store.txn(&release_txn(&actor(), FencingToken(1)), ms(21)).expect("txn");
        assert!(!stale.succeeded);
        assert!(store.get(&owner_key(&actor()), ms(21)).expect("get").is_some());
    }
}
