----------------------------- MODULE KelpieLease -----------------------------
(***************************************************************************)
(* Session leases with a TTL, fencing tokens and self-fencing on drifting  *)
(* node clocks: the timing half of G1 (single activation).                 *)
(* Production: crates/kelpie-runtime/src/ownership.rs (sans-IO core),      *)
(* crates/kelpie-core/src/coordination.rs (etcd-like store),               *)
(* crates/kelpie-runtime/src/driver.rs (install_fence) and                 *)
(* crates/kelpie-storage/src/store.rs (fence checked inside the commit).   *)
(*                                                                         *)
(* One actor.  Each node holds at most one session lease; the actor's      *)
(* owner key is attached to the claiming node's lease and dies with it.    *)
(* The store measures leases in real time; a node serves only while its    *)
(* own monotonic clock is below (send time of the last successful grant or *)
(* keep-alive) + TTL - MaxDrift.                                           *)
(*                                                                         *)
(* Time is unbounded and kept relative, so the state space is finite:      *)
(* the store keeps each lease's remaining real time, a node keeps its      *)
(* remaining serving time and the time since its request was sent, both   *)
(* on its own clock.  Tick advances real time by 1 and each node's clock   *)
(* by 0, 1 or 2 (slower or faster than real time), keeping the clock's     *)
(* deviation from real time, dev[n], inside a band of width MaxDrift: over *)
(* any interval a clock gains or loses at most MaxDrift.  Pause: a node    *)
(* that is up may take no step at all while Ticks advance time (and its    *)
(* clock), and its pending work (a late grant answer, a commit) happens    *)
(* after it resumes; TLC explores every such interleaving, so a `paused`   *)
(* status would only duplicate states.  No fairness is assumed of nodes.   *)
(*                                                                         *)
(* Simulator faults here (crates/kelpie-dst/src/faults.rs):                *)
(*   ClockSkew    Tick: each clock advances 0..2 per unit of real time,    *)
(*                its deviation kept inside the drift band                 *)
(*   ClockJump    Tick: a clock advancing 2 in one Tick is a forward jump  *)
(*                of one unit (0 is a stall), bounded by the band.  Only   *)
(*                the monotonic clock matters (the wall clock is never     *)
(*                used for leases) and it only jumps forward, which ends   *)
(*                a node's serving window earlier, never later.  No        *)
(*                separate ClockJump action: a jump between two steps      *)
(*                inside one unit of time would add only interleavings     *)
(*                finer than the model's time unit.                        *)
(*   NodePause    node n takes no step while Tick advances time (and its   *)
(*                clock): no Pause action and no `paused` status, since    *)
(*                nodes have no fairness; a pause of any length is a run   *)
(*                of Ticks without steps of n                              *)
(*   NodeCrash    Crash(n), Restart(n) (a fresh clock)                     *)
(*   MessageDelay SessionGranted(n): the grant's answer arrives late,      *)
(*                validity still counts from the send time                 *)
(*   Partition    LeaseExpire(l): the holder cannot renew, the store       *)
(*                expires the lease at its deadline                        *)
(*                                                                         *)
(* VARIABLES                                                               *)
(*   dev        node -> its clock's deviation from real time (in Band)     *)
(*   status     node -> "up" | "down"                                      *)
(*   sess       node -> "none" | "granting" | "live" (its session view)    *)
(*   lease      node -> id of its session lease (0 = none)                 *)
(*   left       node -> own-clock time it may still serve (validUntil-clk) *)
(*   pend       node -> own-clock time since its session grant in flight   *)
(*              was sent (capped at Window), NoReq if none                 *)
(*   tok        node -> token it believes it owns the actor with (0: none) *)
(*   ownLease   node -> lease its ownership is bound to                    *)
(*   inst       node -> TRUE once it installed its fence (activated)       *)
(*   leases     store: live lease id -> remaining real time                *)
(*   owner      store: owner key [node, lease, token]; token 0 = missing   *)
(*   rev        store: revision (= last token issued)                      *)
(*   fence      storage: the actor's installed fencing token               *)
(*   lastCommit storage: [token, fence] of the last applied commit         *)
(*   crashes    number of crashes so far (bounded)                         *)
(*                                                                         *)
(* ACTIONS                                                                 *)
(*   Tick              real time +1, each clock +0..2 within the band      *)
(*                     (ClockSkew, ClockJump, NodePause)                   *)
(*   GrantSession(n)   node sends a session grant                          *)
(*   SessionGranted(n) store grants (TTL from now), node goes live         *)
(*                     (MessageDelay: the answer may arrive late)          *)
(*   KeepAlive(n)      keep-alive sent and answered at once: the store     *)
(*                     renews to TTL (or LeaseNotFound: session lost)      *)
(*   SelfFence(n)      node's window is over: drop the session (its tick)  *)
(*   Claim(n)          txn "if owner key missing, put it on my lease"      *)
(*   Release(n)        txn "delete owner key if its token is mine"         *)
(*   InstallFence(n)   raise the stored fence to the node's token          *)
(*   FencedWrite(n)    commit with precondition fence = token (a zombie    *)
(*                     may try this at any time)                           *)
(*   LeaseExpire(l)    store deletes lease l and its keys at its deadline  *)
(*                     (Partition: the holder could not renew)             *)
(*   Crash(n) Restart(n)  environment (a restart gets a fresh clock;       *)
(*                     NodeCrash)                                          *)
(*                                                                         *)
(* INVARIANTS                                                              *)
(*   TypeOK            types                                               *)
(*   SingleActivation  at most one node may serve, on its own clock        *)
(*   LeaseUniqueness   at most one node holds the actor under a lease that *)
(*                     is alive in the store                               *)
(*   NoZombieWrite     no commit is applied with a token older than the    *)
(*                     fence installed before it                           *)
(* PROPERTIES                                                              *)
(*   FencingTokenMonotonic  [][the fence never decreases, and every new    *)
(*                          owner key gets a token above all issued]_vars  *)
(*   OrphanReclaimed        an owner key whose lease no live node holds is *)
(*                          eventually deleted, so a survivor can claim    *)
(*                          (G5; fairness: time advances, expiry runs)     *)
(*                                                                         *)
(* Bug switches (CONSTANT Bug; "none" = production):                       *)
(*   "ownership-no-self-fencing-margin"     serve for TTL, not TTL-MaxDrift *)
(*   "ownership-renew-without-holder-check" keep owned actors across a     *)
(*                                          lost session and rebind them   *)
(*                                          to the next one                *)
(*   "runtime-unfenced-commit"              commit without the fence check *)
(***************************************************************************)
EXTENDS Integers, FiniteSets, TLC

CONSTANTS Nodes,      \* node ids (model values)
          TTL,        \* lease TTL
          MaxDrift,   \* clock drift bound (the protocol's margin)
          MaxLeases,  \* lease ids in use at once (ids of dead leases are reused)
          MaxToken,   \* bound on claims (tokens issued)
          MaxCrashes, \* bound on crashes
          Bug         \* bug switch, "none" in production

ASSUME TTL > MaxDrift + 1 /\ MaxDrift >= 1

VARIABLES dev, status, sess, lease, left, pend, tok, ownLease, inst,
          leases, owner, rev, fence, lastCommit, crashes

nodeVars  == <<dev, status, sess, lease, left, pend, tok, ownLease, inst>>
storeVars == <<leases, owner, rev>>
vars == <<nodeVars, storeVars, fence, lastCommit, crashes>>

NoReq == -1
Band == (-(MaxDrift \div 2))..(MaxDrift - (MaxDrift \div 2))
NoOwner == [lease |-> 0, token |-> 0]

\* How long after a grant/keep-alive was sent the node may serve.
Window == IF Bug = "ownership-no-self-fencing-margin" THEN TTL ELSE TTL - MaxDrift

Max(a, b) == IF a >= b THEN a ELSE b
Min(a, b) == IF a <= b THEN a ELSE b

\* Lease ids referenced anywhere; a free id is one nobody refers to (an
\* abstraction of etcd's never-reused ids: a reused id is indistinguishable).
UsedLeases ==
    DOMAIN leases \cup {lease[n] : n \in Nodes} \cup {ownLease[n] : n \in Nodes}
        \cup {owner.lease}
FreeLeases == (1..MaxLeases) \ UsedLeases

\* Node n believes, on its own clock, that it may serve the actor
\* (Ownership::serving_token).
Serving(n) ==
    /\ status[n] # "down"
    /\ tok[n] # 0
    /\ sess[n] = "live"
    /\ ownLease[n] = lease[n]
    /\ left[n] > 0

\* Node n holds the actor under a lease alive in the store.
HeldLive(n) ==
    /\ status[n] # "down"
    /\ tok[n] # 0
    /\ ownLease[n] \in DOMAIN leases

Init ==
    /\ dev \in [Nodes -> Band]
    /\ status = [n \in Nodes |-> "up"]
    /\ sess = [n \in Nodes |-> "none"]
    /\ lease = [n \in Nodes |-> 0]
    /\ left = [n \in Nodes |-> 0]
    /\ pend = [n \in Nodes |-> NoReq]
    /\ tok = [n \in Nodes |-> 0]
    /\ ownLease = [n \in Nodes |-> 0]
    /\ inst = [n \in Nodes |-> FALSE]
    /\ leases = << >>
    /\ owner = NoOwner
    /\ rev = 0
    /\ fence = 0
    /\ lastCommit = [token |-> 0, fence |-> 0]
    /\ crashes = 0

-----------------------------------------------------------------------------
(* Environment: time and drift, crash, pause, the store's expiry. *)

\* Real time advances by 1; node n's clock by r = 1 + dev'[n] - dev[n].
\* The store expires a lease at its deadline before time moves on.
Tick ==
    /\ \A l \in DOMAIN leases : leases[l] > 0
    /\ leases' = [l \in DOMAIN leases |-> leases[l] - 1]
    /\ \E d \in [Nodes -> Band] :
          /\ \A n \in Nodes : 1 + d[n] - dev[n] \in 0..2
          /\ dev' = [n \in Nodes |-> IF status[n] = "down" THEN 0 ELSE d[n]]
          /\ left' = [n \in Nodes |-> Max(0, left[n] - (1 + d[n] - dev[n]))]
          /\ pend' = [n \in Nodes |->
                        IF pend[n] = NoReq THEN NoReq
                        ELSE Min(Window, pend[n] + (1 + d[n] - dev[n]))]
    /\ UNCHANGED <<status, sess, lease, tok, ownLease, inst, owner, rev,
                   fence, lastCommit, crashes>>

Crash(n) ==
    /\ status[n] # "down"
    /\ crashes < MaxCrashes
    /\ crashes' = crashes + 1
    /\ status' = [status EXCEPT ![n] = "down"]
    /\ dev' = [dev EXCEPT ![n] = 0]
    /\ sess' = [sess EXCEPT ![n] = "none"]
    /\ lease' = [lease EXCEPT ![n] = 0]
    /\ left' = [left EXCEPT ![n] = 0]
    /\ pend' = [pend EXCEPT ![n] = NoReq]
    /\ tok' = [tok EXCEPT ![n] = 0]
    /\ ownLease' = [ownLease EXCEPT ![n] = 0]
    /\ inst' = [inst EXCEPT ![n] = FALSE]
    /\ UNCHANGED <<storeVars, fence, lastCommit>>

\* A new process: a fresh monotonic clock, anywhere in the drift band.
Restart(n) ==
    /\ status[n] = "down"
    /\ status' = [status EXCEPT ![n] = "up"]
    /\ \E d \in Band : dev' = [dev EXCEPT ![n] = d]
    /\ UNCHANGED <<sess, lease, left, pend, tok, ownLease, inst,
                   storeVars, fence, lastCommit, crashes>>

\* The store deletes an expired lease and every key attached to it.
LeaseExpire(l) ==
    /\ l \in DOMAIN leases
    /\ leases[l] = 0
    /\ leases' = [m \in DOMAIN leases \ {l} |-> leases[m]]
    /\ owner' = IF owner.token # 0 /\ owner.lease = l THEN NoOwner ELSE owner
    /\ UNCHANGED <<nodeVars, rev, fence, lastCommit, crashes>>

-----------------------------------------------------------------------------
(* The node's ownership core against the store. *)

\* Ownership::lose_session: every owned actor is fenced, unless the
\* renew-without-holder-check bug keeps believing in it.
LoseSession(n) ==
    /\ sess' = [sess EXCEPT ![n] = "none"]
    /\ lease' = [lease EXCEPT ![n] = 0]
    /\ left' = [left EXCEPT ![n] = 0]
    /\ pend' = [pend EXCEPT ![n] = NoReq]
    /\ IF Bug = "ownership-renew-without-holder-check"
          THEN UNCHANGED <<tok, ownLease, inst>>
          ELSE /\ tok' = [tok EXCEPT ![n] = 0]
               /\ ownLease' = [ownLease EXCEPT ![n] = 0]
               /\ inst' = [inst EXCEPT ![n] = FALSE]

GrantSession(n) ==
    /\ status[n] = "up"
    /\ sess[n] = "none"
    /\ sess' = [sess EXCEPT ![n] = "granting"]
    /\ pend' = [pend EXCEPT ![n] = 0]
    /\ UNCHANGED <<dev, status, lease, left, tok, ownLease, inst,
                   storeVars, fence, lastCommit, crashes>>

\* The store grants a lease with the full TTL now; the node counts its
\* window from the send time (pend[n] ago on its clock).
SessionGranted(n) ==
    /\ status[n] = "up"
    /\ sess[n] = "granting"
    /\ FreeLeases # {}
    /\ LET l == CHOOSE x \in FreeLeases : \A y \in FreeLeases : x <= y IN
          /\ leases' = leases @@ (l :> TTL)
          /\ sess' = [sess EXCEPT ![n] = "live"]
          /\ lease' = [lease EXCEPT ![n] = l]
          /\ left' = [left EXCEPT ![n] = Window - pend[n]]
          /\ pend' = [pend EXCEPT ![n] = NoReq]
          /\ ownLease' = IF Bug = "ownership-renew-without-holder-check" /\ tok[n] # 0
                            THEN [ownLease EXCEPT ![n] = l]
                            ELSE ownLease
    /\ UNCHANGED <<dev, status, tok, inst, owner, rev, fence, lastCommit, crashes>>

\* Keep-alive, sent and answered at once (the send-time rule is exercised by
\* the grant, whose answer may be late): the store renews the lease to the
\* full TTL, the node's window restarts; if the lease is gone the session
\* is lost (LeaseNotFound).
KeepAlive(n) ==
    /\ status[n] = "up"
    /\ sess[n] = "live"
    /\ left[n] > 0
    /\ IF lease[n] \in DOMAIN leases
          THEN /\ leases' = [leases EXCEPT ![lease[n]] = TTL]
               /\ left' = [left EXCEPT ![n] = Window]
               /\ UNCHANGED <<sess, lease, pend, tok, ownLease, inst>>
          ELSE /\ LoseSession(n)
               /\ UNCHANGED leases
    /\ UNCHANGED <<dev, status, owner, rev, fence, lastCommit, crashes>>

\* The node's tick finds its window over: self-fencing.
SelfFence(n) ==
    /\ status[n] = "up"
    /\ sess[n] = "live"
    /\ left[n] = 0
    /\ LoseSession(n)
    /\ UNCHANGED <<dev, status, storeVars, fence, lastCommit, crashes>>

\* One transaction: if the owner key is missing, put it on my session lease;
\* its create revision is my fencing token.  (If present: OwnedElsewhere,
\* no state change.)
Claim(n) ==
    /\ status[n] = "up"
    /\ sess[n] = "live"
    /\ left[n] > 0
    /\ tok[n] = 0
    /\ owner.token = 0
    /\ rev < MaxToken
    /\ rev' = rev + 1
    /\ owner' = [lease |-> lease[n], token |-> rev + 1]
    /\ tok' = [tok EXCEPT ![n] = rev + 1]
    /\ ownLease' = [ownLease EXCEPT ![n] = lease[n]]
    /\ inst' = [inst EXCEPT ![n] = FALSE]
    /\ UNCHANGED <<dev, status, sess, lease, left, pend, leases, fence, lastCommit, crashes>>

\* Deactivation gives the actor up: delete the key only if it is still mine.
Release(n) ==
    /\ status[n] = "up"
    /\ tok[n] # 0
    /\ owner' = IF owner.token = tok[n] THEN NoOwner ELSE owner
    /\ tok' = [tok EXCEPT ![n] = 0]
    /\ ownLease' = [ownLease EXCEPT ![n] = 0]
    /\ inst' = [inst EXCEPT ![n] = FALSE]
    /\ UNCHANGED <<dev, status, sess, lease, left, pend, leases, rev, fence,
                   lastCommit, crashes>>

\* Activation (driver::install_fence): raise the stored fence to my token;
\* a stored fence above it means I am stale: give the actor up.
InstallFence(n) ==
    /\ status[n] = "up"
    /\ Serving(n)
    /\ ~inst[n]
    /\ IF fence <= tok[n]
          THEN /\ fence' = tok[n]
               /\ inst' = [inst EXCEPT ![n] = TRUE]
               /\ UNCHANGED <<tok, ownLease>>
          ELSE /\ tok' = [tok EXCEPT ![n] = 0]
               /\ ownLease' = [ownLease EXCEPT ![n] = 0]
               /\ UNCHANGED <<inst, fence>>
    /\ UNCHANGED <<dev, status, sess, lease, left, pend, storeVars, lastCommit, crashes>>

\* A commit of the actor's state by an activated node.  Not guarded by the
\* node's clock: a node that checked serving_token and then paused may
\* commit arbitrarily late.  The store checks the fence inside the commit.
FencedWrite(n) ==
    /\ status[n] = "up"
    /\ tok[n] # 0
    /\ inst[n]
    /\ IF Bug = "runtime-unfenced-commit" \/ fence = tok[n]
          THEN /\ lastCommit' = [token |-> tok[n], fence |-> fence]
               /\ UNCHANGED <<tok, ownLease, inst>>
          ELSE \* FencingRejected: nothing applied; the activation ends.
               /\ tok' = [tok EXCEPT ![n] = 0]
               /\ ownLease' = [ownLease EXCEPT ![n] = 0]
               /\ inst' = [inst EXCEPT ![n] = FALSE]
               /\ UNCHANGED lastCommit
    /\ UNCHANGED <<dev, status, sess, lease, left, pend, storeVars, fence, crashes>>

-----------------------------------------------------------------------------
NodeStep(n) ==
    \/ GrantSession(n) \/ SessionGranted(n) \/ KeepAlive(n)
    \/ SelfFence(n) \/ Claim(n) \/ Release(n) \/ InstallFence(n) \/ FencedWrite(n)

Next ==
    \/ Tick
    \/ \E l \in DOMAIN leases : LeaseExpire(l)
    \/ \E n \in Nodes : NodeStep(n) \/ Crash(n) \/ Restart(n)

\* Time advances and the store processes expiry.  Nothing is assumed of the
\* nodes: a crashed or paused node may never come back.
Fairness ==
    /\ WF_vars(Tick)
    /\ WF_vars(\E l \in DOMAIN leases : LeaseExpire(l))

Spec == Init /\ [][Next]_vars /\ Fairness

-----------------------------------------------------------------------------
TypeOK ==
    /\ dev \in [Nodes -> Band]
    /\ status \in [Nodes -> {"up", "down"}]
    /\ sess \in [Nodes -> {"none", "granting", "live"}]
    /\ lease \in [Nodes -> 0..MaxLeases]
    /\ left \in [Nodes -> 0..Window]
    /\ pend \in [Nodes -> {NoReq} \cup 0..Window]
    /\ tok \in [Nodes -> 0..MaxToken]
    /\ ownLease \in [Nodes -> 0..MaxLeases]
    /\ inst \in [Nodes -> BOOLEAN]
    /\ DOMAIN leases \subseteq 1..MaxLeases
    /\ \A l \in DOMAIN leases : leases[l] \in 0..TTL
    /\ owner.token \in 0..MaxToken
    /\ rev \in 0..MaxToken
    /\ fence \in 0..MaxToken
    /\ crashes \in 0..MaxCrashes

SingleActivation == \A n, m \in Nodes : Serving(n) /\ Serving(m) => n = m

LeaseUniqueness == \A n, m \in Nodes : HeldLive(n) /\ HeldLive(m) => n = m

NoZombieWrite == lastCommit.token >= lastCommit.fence

FencingTokenMonotonic ==
    [][ /\ fence' >= fence
        /\ (owner'.token # 0 /\ owner'.token # owner.token) => owner'.token > rev
      ]_vars

\* The owner key's lease is renewed by no node: nobody believes in it as
\* its live session, and it is not being granted.
Orphaned ==
    /\ owner.token # 0
    /\ \A n \in Nodes : ~(status[n] # "down" /\ sess[n] = "live" /\ lease[n] = owner.lease)

OrphanReclaimed == Orphaned ~> (owner.token = 0)
=============================================================================
