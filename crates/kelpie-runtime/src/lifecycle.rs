//! One actor's lifecycle on one node, as a sans-IO state machine.
//!
//! The runtime ([`crate::runtime`]) asks this core every lifecycle
//! question: whether a caller's message is accepted, starts an activation
//! or must wait ([`Registration::admit`]); whether the actor's task handles
//! the next accepted message or answers it with an error
//! ([`Lifecycle::take`]); when a drain is graceful; when the activation is
//! over. The runtime does the I/O around the answers (claiming, loading
//! state, committing, replying), and `kelpie-spec`'s `KelpieActorLifecycle`
//! model drives this very code through the TLA+ spec's actions
//! (`specs/tla/KelpieActorLifecycle.tla`).
//!
//! The phases: [`Phase::Inactive`] (no task), [`Phase::Activating`] (a task
//! and an open mailbox; claim, fence, load and replay run), [`Phase::Active`]
//! (one message at a time) and [`Phase::Draining`] (the mailbox is closed:
//! new messages wait; every message already accepted is handled while the
//! node still serves the actor, or answered with an error, never dropped).
//!
//! Under the bug switch `bug-runtime-drop-on-deactivate`, a drain that no
//! longer serves the actor drops the messages it should answer.

/// Where an actor is in its lifecycle on this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Not active here: no task, no mailbox.
    Inactive,
    /// A task with an open mailbox is claiming the actor, loading its state
    /// and replaying its journal; accepted messages wait.
    Activating,
    /// Serving: the task takes one accepted message at a time.
    Active,
    /// Deactivating: the mailbox is closed to new messages.
    Draining {
        /// Whether accepted messages are still handled: the drain began
        /// with the node serving the actor and has not found it lost since.
        graceful: bool,
    },
}

/// The registry's view of an actor: what a caller's message meets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Registration {
    /// No activation (or one whose task is gone).
    Vacant,
    /// An activation with an open mailbox (activating or active).
    Open,
    /// An activation draining: its mailbox is closed.
    Closed,
}

/// What happens to a message a caller delivers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Admission {
    /// Accepted, and a new activation starts for it.
    Spawn,
    /// Accepted into the open mailbox.
    Accept,
    /// Not accepted: the actor is deactivating; the caller retries once the
    /// drain is over (a new activation then starts).
    Busy,
}

/// What the actor's task does with the next accepted message it takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Disposition {
    /// Handle it: run the handler and commit (fenced), then reply.
    Handle,
    /// Answer it with a retryable error: this node no longer serves the
    /// actor, or the activation failed.
    Refuse,
    /// Drop it unanswered. Only the bug switch
    /// `bug-runtime-drop-on-deactivate` ever returns this.
    Drop,
}

impl Registration {
    /// What a caller's message meets.
    pub fn admit(self) -> Admission {
        match self {
            Registration::Vacant => Admission::Spawn,
            Registration::Open => Admission::Accept,
            Registration::Closed => Admission::Busy,
        }
    }
}

impl Phase {
    /// What the registry shows of an activation in this phase.
    pub fn registration(self) -> Registration {
        match self {
            Phase::Inactive => Registration::Vacant,
            Phase::Activating | Phase::Active => Registration::Open,
            Phase::Draining { .. } => Registration::Closed,
        }
    }
}

/// One activation's lifecycle (the registry's view of it is
/// [`Phase::registration`]).
///
/// Every method is total: an input that does not apply to the current phase
/// leaves it unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Lifecycle {
    phase: Phase,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self { phase: Phase::Inactive }
    }
}

impl Lifecycle {
    /// An inactive actor.
    pub fn new() -> Self {
        Self::default()
    }

    /// The lifecycle of an activation the registry just spawned (a caller's
    /// message met [`Admission::Spawn`]).
    pub fn spawned() -> Self {
        Self {
            phase: Phase::Activating,
        }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// A caller delivers a message: an inactive actor starts activating.
    pub fn deliver(&mut self) -> Admission {
        let admission = self.phase.registration().admit();
        if admission == Admission::Spawn {
            self.phase = Phase::Activating;
        }
        admission
    }

    /// The activation succeeded (claimed, fenced, state loaded, journal
    /// replayed): the actor serves.
    pub fn activated(&mut self) {
        if self.phase == Phase::Activating {
            self.phase = Phase::Active;
        }
    }

    /// The activation ends: after an idle timeout or at shutdown
    /// (`graceful` if the node still serves the actor, so accepted
    /// messages are handled), or after an error (activation or replay
    /// failed: not graceful). The mailbox closes.
    pub fn stop(&mut self, graceful: bool) {
        if matches!(self.phase, Phase::Activating | Phase::Active) {
            self.phase = Phase::Draining { graceful };
        }
    }

    /// The task takes the next accepted message; `serving` is whether this
    /// node still serves the actor (self-fencing) at that moment.
    ///
    /// An active actor handles it if serving; if not, it answers it with an
    /// error and starts a drain that is not graceful. A draining actor
    /// handles it if the drain is graceful and the node serves; otherwise it
    /// answers with an error (and a graceful drain stops being graceful:
    /// the node lost the actor).
    pub fn take(&mut self, serving: bool) -> Disposition {
        match self.phase {
            Phase::Active if serving => Disposition::Handle,
            Phase::Active => {
                self.phase = Phase::Draining { graceful: false };
                Disposition::Refuse
            }
            Phase::Draining { graceful: true } if serving => Disposition::Handle,
            Phase::Draining { graceful: true } => {
                self.phase = Phase::Draining { graceful: false };
                Disposition::Refuse
            }
            Phase::Draining { graceful: false } if cfg!(feature = "bug-runtime-drop-on-deactivate") => {
                Disposition::Drop
            }
            // Not activated: nothing may be handled.
            Phase::Draining { graceful: false } | Phase::Activating | Phase::Inactive => Disposition::Refuse,
        }
    }

    /// A handled message's result says this node lost the actor (fenced
    /// out by a newer owner, self-fenced, or its state unknown): an active
    /// actor starts a drain that is not graceful; a graceful drain stops
    /// being graceful.
    pub fn lost_ownership(&mut self) {
        if matches!(self.phase, Phase::Active | Phase::Draining { .. }) {
            self.phase = Phase::Draining { graceful: false };
        }
    }

    /// The closed mailbox is empty: the actor is released and deregistered.
    pub fn drained(&mut self) {
        if matches!(self.phase, Phase::Draining { .. }) {
            self.phase = Phase::Inactive;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_actor_activates_serves_drains_and_comes_back() {
        let mut life = Lifecycle::new();
        assert_eq!(life.deliver(), Admission::Spawn);
        assert_eq!(life.phase(), Phase::Activating);
        assert_eq!(life.deliver(), Admission::Accept);
        life.activated();
        assert_eq!(life.phase(), Phase::Active);
        assert_eq!(life.take(true), Disposition::Handle);
        life.stop(true);
        assert_eq!(life.phase(), Phase::Draining { graceful: true });
        assert_eq!(life.deliver(), Admission::Busy);
        assert_eq!(life.take(true), Disposition::Handle);
        life.drained();
        assert_eq!(life.phase(), Phase::Inactive);
        assert_eq!(life.deliver(), Admission::Spawn);
    }

    #[test]
    fn a_node_that_stops_serving_refuses_and_drains() {
        let mut life = Lifecycle::spawned();
        life.activated();
        assert_eq!(life.take(false), Disposition::Refuse);
        assert_eq!(life.phase(), Phase::Draining { graceful: false });

        let mut graceful = Lifecycle::spawned();
        graceful.activated();
        graceful.stop(true);
        assert_eq!(graceful.take(false), Disposition::Refuse);
        assert_eq!(graceful.phase(), Phase::Draining { graceful: false });
        // Once lost, the drain never handles again, even if asked while serving.
        let expected = if cfg!(feature = "bug-runtime-drop-on-deactivate") {
            Disposition::Drop
        } else {
            Disposition::Refuse
        };
        assert_eq!(graceful.take(true), expected);
    }

    #[test]
    fn inputs_that_do_not_apply_leave_the_phase_unchanged() {
        let mut life = Lifecycle::new();
        life.activated();
        life.stop(true);
        life.lost_ownership();
        life.drained();
        assert_eq!(life.phase(), Phase::Inactive);
        assert_eq!(life.take(true), Disposition::Refuse);

        let mut activating = Lifecycle::spawned();
        assert_eq!(activating.take(true), Disposition::Refuse);
        activating.drained();
        assert_eq!(activating.phase(), Phase::Activating);
        activating.stop(false);
        assert_eq!(activating.phase(), Phase::Draining { graceful: false });
        activating.activated();
        assert_eq!(activating.phase(), Phase::Draining { graceful: false });
    }
}
