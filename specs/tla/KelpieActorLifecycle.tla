------------------------- MODULE KelpieActorLifecycle -------------------------
(***************************************************************************)
(* One actor's lifecycle in one node's runtime: activation on demand, one  *)
(* message at a time, drain and deactivation, and the actor moving to      *)
(* another node and back.                                                  *)
(* Production: crates/kelpie-runtime/src/runtime.rs (deliver, run_actor,   *)
(* activate, finish).                                                      *)
(*                                                                         *)
(* Deactivation (finish) closes the mailbox, then either handles every     *)
(* message already accepted (graceful: the node still serves the actor) or *)
(* answers each with an error (the node stopped serving it), then releases *)
(* the actor.  While draining, new messages are refused (Busy: the caller  *)
(* retries later), never accepted and lost.                                *)
(*                                                                         *)
(* VARIABLES                                                               *)
(*   slot      registry slot: "inactive" | "activating" | "active" |       *)
(*             "draining"                                                  *)
(*   mailbox   accepted messages not yet taken, in order                   *)
(*   graceful  draining with the node still serving (handle, not bounce)   *)
(*   serving   the node holds the actor's ownership and serves it          *)
(*   accepted  messages the runtime accepted                               *)
(*   answered  messages answered (handled or bounced with an error)        *)
(*   mem       the activation's in-memory state (handled messages)         *)
(*   store     the durable state: messages handled by any node, in order   *)
(*   remote    messages of other callers handled while another node owned  *)
(*             the actor                                                   *)
(*                                                                         *)
(* ACTIONS                                                                 *)
(*   Deliver(m)      a caller's message is accepted (spawning the          *)
(*                   activation if inactive); refused while draining       *)
(*   Activate        claim succeeded: load the state, serve                *)
(*   ActivationFailed owned elsewhere: bounce what was accepted, inactive  *)
(*   Handle          take the next message, commit its effect, answer      *)
(*   LoseOwnership   the node stops serving (self-fencing, lease lost)     *)
(*   Fenced          the next message finds the node no longer serving:    *)
(*                   answer it with an error and start draining            *)
(*   StartDrain      idle timeout or shutdown: close the mailbox           *)
(*   Bounce          draining without serving: answer a message with an   *)
(*                   error (the bug drops it instead)                      *)
(*   Deactivate      mailbox empty: release, inactive                      *)
(*   RemoteHandle    another node owns the actor and commits a message     *)
(*                                                                         *)
(* INVARIANTS                                                              *)
(*   TypeOK                                                                *)
(*   GracefulDeactivation  with no activation, every accepted message was  *)
(*                         answered                                        *)
(*   NoResurrection        a serving activation holds exactly the durable  *)
(*                         state (no stale state of an earlier activation) *)
(*   AnsweredWereAccepted  only accepted messages are answered             *)
(* PROPERTIES                                                              *)
(*   AcceptedEventuallyAnswered  every accepted message is answered        *)
(*                                                                         *)
(* Bug switches (CONSTANT Bug; "none" = production):                       *)
(*   "runtime-drop-on-deactivate"  drain drops the messages it should      *)
(*                                 bounce                                  *)
(***************************************************************************)
EXTENDS Integers, Sequences, FiniteSets

CONSTANTS Msgs,        \* callers' messages to this node
          RemoteMsgs,  \* messages handled by other nodes
          Bug

VARIABLES slot, mailbox, graceful, serving, accepted, answered, mem, store, remote

vars == <<slot, mailbox, graceful, serving, accepted, answered, mem, store, remote>>

Range(s) == {s[i] : i \in DOMAIN s}

Init ==
    /\ slot = "inactive"
    /\ mailbox = << >>
    /\ graceful = FALSE
    /\ serving = FALSE
    /\ accepted = {}
    /\ answered = {}
    /\ mem = << >>
    /\ store = << >>
    /\ remote = {}

Deliver(m) ==
    /\ m \notin accepted
    /\ slot # "draining"
    /\ slot' = IF slot = "inactive" THEN "activating" ELSE slot
    /\ mailbox' = Append(mailbox, m)
    /\ accepted' = accepted \cup {m}
    /\ UNCHANGED <<graceful, serving, answered, mem, store, remote>>

\* Claim + install fence + load state (+ replay): the activation starts
\* from the durable state.
Activate ==
    /\ slot = "activating"
    /\ slot' = "active"
    /\ serving' = TRUE
    /\ mem' = store
    /\ UNCHANGED <<mailbox, graceful, accepted, answered, store, remote>>

ActivationFailed ==
    /\ slot = "activating"
    /\ slot' = "inactive"
    /\ answered' = answered \cup Range(mailbox)
    /\ mailbox' = << >>
    /\ UNCHANGED <<graceful, serving, accepted, mem, store, remote>>

\* One message, committed (fenced) before it is answered.
Handle ==
    /\ \/ slot = "active"
       \/ slot = "draining" /\ graceful
    /\ serving
    /\ mailbox # << >>
    /\ store' = Append(store, Head(mailbox))
    /\ mem' = Append(mem, Head(mailbox))
    /\ answered' = answered \cup {Head(mailbox)}
    /\ mailbox' = Tail(mailbox)
    /\ UNCHANGED <<slot, graceful, serving, accepted, remote>>

LoseOwnership ==
    /\ serving
    /\ serving' = FALSE
    /\ UNCHANGED <<slot, mailbox, graceful, accepted, answered, mem, store, remote>>

\* run_actor: serving_token no longer matches: answer with an error, finish
\* with that error (not graceful).
Fenced ==
    /\ slot = "active"
    /\ ~serving
    /\ mailbox # << >>
    /\ answered' = answered \cup {Head(mailbox)}
    /\ mailbox' = Tail(mailbox)
    /\ slot' = "draining"
    /\ graceful' = FALSE
    /\ UNCHANGED <<serving, accepted, mem, store, remote>>

\* Idle timeout (or shutdown), possibly racing with a new message: finish
\* with no error; graceful iff the node still serves the actor.
StartDrain ==
    /\ slot = "active"
    /\ slot' = "draining"
    /\ graceful' = serving
    /\ UNCHANGED <<mailbox, serving, accepted, answered, mem, store, remote>>

\* A graceful drain that finds the node no longer serving bounces too.
Bounce ==
    /\ slot = "draining"
    /\ ~(graceful /\ serving)
    /\ mailbox # << >>
    /\ answered' = IF Bug = "runtime-drop-on-deactivate" THEN answered
                   ELSE answered \cup {Head(mailbox)}
    /\ mailbox' = Tail(mailbox)
    /\ UNCHANGED <<slot, graceful, serving, accepted, mem, store, remote>>

Deactivate ==
    /\ slot = "draining"
    /\ mailbox = << >>
    /\ slot' = "inactive"
    /\ serving' = FALSE
    /\ graceful' = FALSE
    /\ mem' = << >>
    /\ UNCHANGED <<mailbox, accepted, answered, store, remote>>

\* Another node owns the actor (this one does not serve it) and commits.
RemoteHandle(r) ==
    /\ ~serving
    /\ r \notin remote
    /\ remote' = remote \cup {r}
    /\ store' = Append(store, r)
    /\ UNCHANGED <<slot, mailbox, graceful, serving, accepted, answered, mem>>

Next ==
    \/ \E m \in Msgs : Deliver(m)
    \/ \E r \in RemoteMsgs : RemoteHandle(r)
    \/ Activate \/ ActivationFailed \/ Handle \/ LoseOwnership \/ Fenced
    \/ StartDrain \/ Bounce \/ Deactivate

\* The actor's task runs: activation ends, messages are taken, a drain ends.
Fairness ==
    /\ WF_vars(Activate \/ ActivationFailed)
    /\ WF_vars(Handle) /\ WF_vars(Fenced) /\ WF_vars(Bounce) /\ WF_vars(Deactivate)

Spec == Init /\ [][Next]_vars /\ Fairness

-----------------------------------------------------------------------------
TypeOK ==
    /\ slot \in {"inactive", "activating", "active", "draining"}
    /\ Range(mailbox) \subseteq accepted
    /\ accepted \subseteq Msgs
    /\ serving \in BOOLEAN
    /\ graceful \in BOOLEAN

GracefulDeactivation == slot = "inactive" => accepted \subseteq answered

NoResurrection == (slot \in {"active", "draining"} /\ serving) => mem = store

AnsweredWereAccepted == answered \subseteq accepted

AcceptedEventuallyAnswered == \A m \in Msgs : (m \in accepted) ~> (m \in answered)
=============================================================================
