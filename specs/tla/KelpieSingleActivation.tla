------------------------- MODULE KelpieSingleActivation -------------------------
(***************************************************************************)
(* The claim protocol of G1: "who hosts X, else I do" as ONE etcd          *)
(* compare-and-set transaction, composed with session-lease expiry, lost   *)
(* answers, crashes, release, fence installation and zombie writes.        *)
(* Production: crates/kelpie-runtime/src/ownership.rs (claim_txn,          *)
(* release_txn, answered/own), driver.rs (install_fence), runtime.rs       *)
(* (commit with require_fence), storage/src/store.rs (check_fence).        *)
(*                                                                         *)
(* Untimed: KelpieLease shows that a node stops trusting its session       *)
(* before the store can expire it (self-fencing within the drift bound).   *)
(* Here that is the assumption: SessionTimeout(n) may happen at any        *)
(* moment, and the store may expire a lease only once no node trusts it.   *)
(*                                                                         *)
(* VARIABLES                                                               *)
(*   status    node -> "up" | "down"                                       *)
(*   sess      node -> the session lease it trusts (0 = none)              *)
(*   act       node -> "idle" | "lookedup" | "claiming" | "owned" | "zombie"*)
(*   reply     node -> answer of its claim txn in flight                   *)
(*   tok       node -> fencing token it owns the actor with (0 = none)     *)
(*   ownLease  node -> session lease its ownership is bound to             *)
(*   inst      node -> TRUE once it installed its fence (activated)        *)
(*   leases    store: set of live lease ids                                *)
(*   nextLease store: next lease id                                        *)
(*   owner     store: owner key [lease, token]; token 0 = missing;         *)
(*             token = the key's create revision                           *)
(*   rev       store: revision                                             *)
(*   fence     storage: the actor's installed fencing token                *)
(*   lastCommit storage: [token, fence] of the last applied commit         *)
(*                                                                         *)
(* ACTIONS                                                                 *)
(*   GrantSession(n)   node gets a new session lease                       *)
(*   SessionTimeout(n) node stops trusting its session (self-fencing)      *)
(*   ZombieTimeout(n)  the same while a commit is in flight: the node      *)
(*                     stops serving but that commit still arrives         *)
(*   Lookup(n)         (bug lookup-then-claim) read the owner key alone    *)
(*   Claim(n)          txn: if owner key missing put it on my lease, else  *)
(*                     get it; the answer goes in flight                   *)
(*   ClaimAnswered(n)  node acts on the answer (own / owned elsewhere)     *)
(*   ClaimTimeout(n)   the answer is lost (the txn may have applied); the  *)
(*                     node gives the claim up: Drop(n)                    *)
(*   DuplicateClaim(n) the claim request reaches the store a second time   *)
(*                     and is applied again; the node acts on the first    *)
(*                     answer, the second is ignored                       *)
(*   Reorder(n)        the same, but the duplicate's answer overtakes the  *)
(*                     original's: the node acts on it, the older one      *)
(*                     arrives late and is ignored                         *)
(*   Release(n)        txn: delete the key if its create revision is mine  *)
(*   InstallFence(n)   raise the stored fence to my token (activation)     *)
(*   FencedWrite(n)    commit with precondition fence = my token           *)
(*   LeaseExpire(l)    store deletes lease l and its keys                  *)
(*   Crash(n) Restart(n)                                                   *)
(*                                                                         *)
(* INVARIANTS                                                              *)
(*   TypeOK                                                                *)
(*   SingleActivation  at most one node serves (owns under the session it  *)
(*                     trusts)                                             *)
(*   LeaseUniqueness   at most one node holds the actor under a live lease *)
(*   NoZombieWrite     no commit applied with a token older than the fence *)
(* PROPERTIES                                                              *)
(*   FencingTokenMonotonic  [][fence and owner tokens only grow]_vars      *)
(*   ClaimResolves     a claim in flight is eventually answered or lost    *)
(*   OrphanReclaimed   an owner key nobody trusts is eventually deleted    *)
(*                                                                         *)
(* Simulator faults here (crates/kelpie-dst/src/faults.rs):                *)
(*   MessageDrop          Drop(n), reached by ClaimTimeout(n): the answer  *)
(*                        is lost, the node gives the claim up             *)
(*   CoordinationTimeout  ClaimTimeout(n)                                  *)
(*   MessageDuplicate     DuplicateClaim(n)                                *)
(*   MessageReorder       Reorder(n).  Answers carry their request id      *)
(*                        (ownership.rs, `pending`): only the first answer *)
(*                        to the pending request is acted on; a late one   *)
(*                        (after a timeout, or the second of two) finds no *)
(*                        pending request and changes nothing              *)
(*   NodeCrash            Crash(n), Restart(n)                             *)
(*                                                                         *)
(* Bug switches (CONSTANT Bug; "none" = production):                       *)
(*   "ownership-acquire-without-compare"  claim is a blind put             *)
(*   "ownership-lookup-then-claim"        lookup, then a blind put in a    *)
(*                                        second request                   *)
(*   "runtime-unfenced-commit"            commit without the fence check   *)
(***************************************************************************)
EXTENDS Integers, FiniteSets

CONSTANTS Nodes,      \* node ids (model values)
          MaxLeases,  \* bound on session grants
          MaxToken,   \* bound on revisions (puts)
          MaxCrashes, \* bound on crashes
          Bug         \* bug switch, "none" in production

VARIABLES status, sess, act, reply, tok, ownLease, inst,
          leases, nextLease, owner, rev, fence, lastCommit, crashes

nodeVars  == <<status, sess, act, reply, tok, ownLease, inst>>
storeVars == <<leases, nextLease, owner, rev>>
vars == <<nodeVars, storeVars, fence, lastCommit, crashes>>

NoOwner == [lease |-> 0, token |-> 0]
NoReply == [won |-> FALSE, key |-> NoOwner]

\* The claim carries the compare "owner key missing" unless a bug drops it.
Compares == Bug \notin {"ownership-acquire-without-compare", "ownership-lookup-then-claim"}

Serving(n) ==
    /\ status[n] = "up"
    /\ act[n] = "owned"
    /\ sess[n] # 0
    /\ ownLease[n] = sess[n]

HeldLive(n) ==
    /\ status[n] = "up"
    /\ act[n] = "owned"
    /\ ownLease[n] \in leases

Init ==
    /\ status = [n \in Nodes |-> "up"]
    /\ sess = [n \in Nodes |-> 0]
    /\ act = [n \in Nodes |-> "idle"]
    /\ reply = [n \in Nodes |-> NoReply]
    /\ tok = [n \in Nodes |-> 0]
    /\ ownLease = [n \in Nodes |-> 0]
    /\ inst = [n \in Nodes |-> FALSE]
    /\ leases = {}
    /\ nextLease = 1
    /\ owner = NoOwner
    /\ rev = 0
    /\ fence = 0
    /\ lastCommit = [token |-> 0, fence |-> 0]
    /\ crashes = 0

\* The node gives the actor up locally (no store effect): what a lost
\* answer (MessageDrop, via ClaimTimeout), a lost session, a release or a
\* fencing rejection leads to.
Drop(n) ==
    /\ act' = [act EXCEPT ![n] = "idle"]
    /\ tok' = [tok EXCEPT ![n] = 0]
    /\ ownLease' = [ownLease EXCEPT ![n] = 0]
    /\ inst' = [inst EXCEPT ![n] = FALSE]
    /\ reply' = [reply EXCEPT ![n] = NoReply]

-----------------------------------------------------------------------------
GrantSession(n) ==
    /\ status[n] = "up"
    /\ sess[n] = 0
    /\ nextLease <= MaxLeases
    /\ leases' = leases \cup {nextLease}
    /\ nextLease' = nextLease + 1
    /\ sess' = [sess EXCEPT ![n] = nextLease]
    /\ UNCHANGED <<status, act, reply, tok, ownLease, inst, owner, rev, fence, lastCommit, crashes>>

\* Ownership::lose_session (self-fencing or LeaseNotFound): owned actors
\* are fenced; a claim in flight fails.
SessionTimeout(n) ==
    /\ status[n] = "up"
    /\ sess[n] # 0
    /\ sess' = [sess EXCEPT ![n] = 0]
    /\ IF act[n] = "idle" THEN UNCHANGED <<act, reply, tok, ownLease, inst>> ELSE Drop(n)
    /\ UNCHANGED <<status, storeVars, fence, lastCommit, crashes>>

\* bug-ownership-lookup-then-claim: one request reads the owner key; the
\* claim follows in a second request only if it was missing.
Lookup(n) ==
    /\ Bug = "ownership-lookup-then-claim"
    /\ status[n] = "up"
    /\ sess[n] # 0
    /\ act[n] = "idle"
    /\ owner.token = 0
    /\ act' = [act EXCEPT ![n] = "lookedup"]
    /\ UNCHANGED <<status, sess, reply, tok, ownLease, inst, storeVars, fence, lastCommit, crashes>>

\* claim_txn of node n, applied by the store: compares [owner key missing],
\* success [put key on my lease], failure [get key].  The lease is the
\* session n trusts (while n awaits the answer it is the one the request
\* carries: losing the session ends the claim).
ClaimSucceeds == owner.token = 0 \/ ~Compares

ApplyClaim(n) ==
    IF ClaimSucceeds
       THEN /\ rev < MaxToken
            /\ rev' = rev + 1
            /\ owner' = [lease |-> sess[n], token |-> rev + 1]
       ELSE UNCHANGED <<owner, rev>>

\* Its answer (computed in the state before it is applied).
ClaimAnswer(n) ==
    IF ClaimSucceeds
       THEN [won |-> TRUE, key |-> [lease |-> sess[n], token |-> rev + 1]]
       ELSE [won |-> FALSE, key |-> owner]

\* Atomic in the store; the answer is in flight.
Claim(n) ==
    /\ status[n] = "up"
    /\ sess[n] # 0
    /\ act[n] = IF Bug = "ownership-lookup-then-claim" THEN "lookedup" ELSE "idle"
    /\ ApplyClaim(n)
    /\ reply' = [reply EXCEPT ![n] = ClaimAnswer(n)]
    /\ act' = [act EXCEPT ![n] = "claiming"]
    /\ UNCHANGED <<status, sess, tok, ownLease, inst, leases, nextLease, fence, lastCommit, crashes>>

\* MessageDuplicate: the network delivers n's claim request to the store a
\* second time while n still awaits the answer, and the store applies
\* claim_txn again: if the key is missing by now (the first copy lost, and
\* the owner has since released or its lease expired) it puts n's key on
\* n's lease with a fresh create revision, else it only reads the key.  Both
\* answers carry the request's id; the first to arrive is acted on and
\* Ownership::answered ignores the second (the id is no longer pending).
\* Here the original's answer arrives first, so n acts on `reply`; if n
\* then gives the actor up, a key put by the duplicate stays on n's lease:
\* n's next claim adopts it (our key, our lease), or it dies with the lease.
\* The duplicate's answer arriving first is Reorder(n).
DuplicateClaim(n) ==
    /\ status[n] = "up"
    /\ act[n] = "claiming"
    /\ ApplyClaim(n)
    /\ UNCHANGED <<nodeVars, leases, nextLease, fence, lastCommit, crashes>>

\* MessageReorder: as DuplicateClaim(n), but the duplicate's answer (the
\* newer) overtakes the original's (the older): n acts on the duplicate's
\* answer, and the original's arrives late, after n moved on, for a request
\* no longer pending, and is ignored.  (A late answer to a request the node
\* timed out on is ignored the same way: ClaimTimeout leaves nothing in
\* flight that the node would act on.)
Reorder(n) ==
    /\ status[n] = "up"
    /\ act[n] = "claiming"
    /\ ApplyClaim(n)
    /\ reply' = [reply EXCEPT ![n] = ClaimAnswer(n)]
    /\ UNCHANGED <<status, sess, act, tok, ownLease, inst, leases, nextLease, fence, lastCommit, crashes>>

\* Ownership::answered: own the actor if the txn won, or if the key found is
\* our own under the session we still trust (an earlier answer was lost);
\* a win under a session no longer trusted is not served.
ClaimAnswered(n) ==
    /\ status[n] = "up"
    /\ act[n] = "claiming"
    /\ LET k == reply[n].key IN
          IF sess[n] # 0 /\ k.lease = sess[n] /\ k.token # 0
             THEN /\ act' = [act EXCEPT ![n] = "owned"]
                  /\ tok' = [tok EXCEPT ![n] = k.token]
                  /\ ownLease' = [ownLease EXCEPT ![n] = sess[n]]
                  /\ inst' = [inst EXCEPT ![n] = FALSE]
                  /\ reply' = [reply EXCEPT ![n] = NoReply]
             ELSE Drop(n)
    /\ UNCHANGED <<status, sess, storeVars, fence, lastCommit, crashes>>

ClaimTimeout(n) ==
    /\ status[n] = "up"
    /\ act[n] = "claiming"
    /\ Drop(n)
    /\ UNCHANGED <<status, sess, storeVars, fence, lastCommit, crashes>>

\* release_txn: delete the key if its create revision is my token.
Release(n) ==
    /\ status[n] = "up"
    /\ act[n] = "owned"
    /\ owner' = IF owner.token = tok[n] THEN NoOwner ELSE owner
    /\ Drop(n)
    /\ UNCHANGED <<status, sess, leases, nextLease, rev, fence, lastCommit, crashes>>

InstallFence(n) ==
    /\ Serving(n)
    /\ ~inst[n]
    /\ IF fence <= tok[n]
          THEN /\ fence' = tok[n]
               /\ inst' = [inst EXCEPT ![n] = TRUE]
               /\ UNCHANGED <<act, reply, tok, ownLease>>
          ELSE /\ Drop(n)                      \* ClaimError::Stale
               /\ UNCHANGED fence
    /\ UNCHANGED <<status, sess, storeVars, lastCommit, crashes>>

\* A commit by an activated node.  The store checks the fence inside the
\* commit.  A zombie (see ZombieTimeout) commits once more, then stops.
FencedWrite(n) ==
    /\ status[n] = "up"
    /\ tok[n] # 0
    /\ inst[n]
    /\ LET applied == Bug = "runtime-unfenced-commit" \/ fence = tok[n] IN
          /\ lastCommit' = IF applied THEN [token |-> tok[n], fence |-> fence] ELSE lastCommit
          /\ IF ~applied \/ act[n] = "zombie"     \* FencingRejected, or the zombie's last commit
                THEN Drop(n)
                ELSE UNCHANGED <<act, reply, tok, ownLease, inst>>
    /\ UNCHANGED <<status, sess, storeVars, fence, crashes>>

\* The session is lost while an activated actor's commit is in flight: the
\* node no longer serves, but that commit still reaches the store (a zombie).
ZombieTimeout(n) ==
    /\ status[n] = "up"
    /\ sess[n] # 0
    /\ act[n] = "owned"
    /\ inst[n]
    /\ sess' = [sess EXCEPT ![n] = 0]
    /\ act' = [act EXCEPT ![n] = "zombie"]
    /\ UNCHANGED <<status, reply, tok, ownLease, inst, storeVars, fence, lastCommit, crashes>>

\* The store expires a lease only once no node trusts it (KelpieLease).
LeaseExpire(l) ==
    /\ l \in leases
    /\ \A n \in Nodes : sess[n] # l
    /\ leases' = leases \ {l}
    /\ owner' = IF owner.token # 0 /\ owner.lease = l THEN NoOwner ELSE owner
    /\ UNCHANGED <<nodeVars, nextLease, rev, fence, lastCommit, crashes>>

Crash(n) ==
    /\ status[n] = "up"
    /\ crashes < MaxCrashes
    /\ crashes' = crashes + 1
    /\ status' = [status EXCEPT ![n] = "down"]
    /\ sess' = [sess EXCEPT ![n] = 0]
    /\ Drop(n)
    /\ UNCHANGED <<storeVars, fence, lastCommit>>

Restart(n) ==
    /\ status[n] = "down"
    /\ status' = [status EXCEPT ![n] = "up"]
    /\ UNCHANGED <<sess, act, reply, tok, ownLease, inst, storeVars, fence, lastCommit, crashes>>

-----------------------------------------------------------------------------
NodeStep(n) ==
    \/ GrantSession(n) \/ SessionTimeout(n) \/ ZombieTimeout(n) \/ Lookup(n)
    \/ Claim(n) \/ ClaimAnswered(n) \/ ClaimTimeout(n) \/ Release(n)
    \/ InstallFence(n) \/ FencedWrite(n)

Next ==
    \/ \E l \in leases : LeaseExpire(l)
    \/ \E n \in Nodes : NodeStep(n) \/ Crash(n) \/ Restart(n)
                         \/ DuplicateClaim(n) \/ Reorder(n)

\* The store expires untrusted leases; a node that is up answers its claims.
Fairness ==
    /\ WF_vars(\E l \in leases : LeaseExpire(l))
    /\ \A n \in Nodes : WF_vars(ClaimAnswered(n))

Spec == Init /\ [][Next]_vars /\ Fairness

-----------------------------------------------------------------------------
TypeOK ==
    /\ status \in [Nodes -> {"up", "down"}]
    /\ sess \in [Nodes -> 0..MaxLeases]
    /\ act \in [Nodes -> {"idle", "lookedup", "claiming", "owned", "zombie"}]
    /\ tok \in [Nodes -> 0..MaxToken]
    /\ ownLease \in [Nodes -> 0..MaxLeases]
    /\ inst \in [Nodes -> BOOLEAN]
    /\ leases \subseteq 1..MaxLeases
    /\ owner.token \in 0..MaxToken
    /\ rev \in 0..MaxToken
    /\ fence \in 0..MaxToken
    /\ crashes \in 0..MaxCrashes

SingleActivation == \A n, m \in Nodes : Serving(n) /\ Serving(m) => n = m

LeaseUniqueness == \A n, m \in Nodes : HeldLive(n) /\ HeldLive(m) => n = m

NoZombieWrite == lastCommit.token >= lastCommit.fence

FencingTokenMonotonic ==
    [][ /\ fence' >= fence
        /\ rev' >= rev
        /\ (owner'.token # 0 /\ owner'.token # owner.token) => owner'.token > rev
      ]_vars

ClaimResolves == \A n \in Nodes : (act[n] = "claiming") ~> (act[n] # "claiming")

Orphaned ==
    /\ owner.token # 0
    /\ \A n \in Nodes : sess[n] # owner.lease

OrphanReclaimed == Orphaned ~> (owner.token = 0)
=============================================================================
