-------------------------- MODULE KelpieTransaction --------------------------
(***************************************************************************)
(* Storage transactions: snapshot reads, read-your-writes, optimistic      *)
(* validation of the read set at commit, atomic application (G3), and      *)
(* serializability in commit order (G6 at the storage layer).              *)
(* Production: crates/kelpie-storage/src/store.rs (Transaction, conflict,  *)
(* apply_batch; read-only transactions commit at their snapshot).          *)
(*                                                                         *)
(* Every transaction writes its own id as the value, so each committed     *)
(* value names its writer.                                                 *)
(*                                                                         *)
(* VARIABLES                                                               *)
(*   db        the store as readers see it: key -> value                   *)
(*   version   number of read-write commits applied                        *)
(*   log       write set (keys) of each read-write commit, in order        *)
(*   st        txn -> "idle" | "active" | "applying" | "committed" |       *)
(*             "aborted"                                                   *)
(*   snap      txn -> the snapshot it reads (db at Begin)                  *)
(*   snapVer   txn -> version at Begin                                     *)
(*   rs        txn -> reads from its snapshot: key -> value read           *)
(*   ws        txn -> its writes: key -> value                             *)
(*   toApply   keys of the committing txn still to apply (bug only)        *)
(*   history   committed read-write txns in commit order: [reads, writes]  *)
(*   roHistory committed read-only txns: [at (snapshot version), reads]    *)
(*                                                                         *)
(* ACTIONS                                                                 *)
(*   Begin(t)      take a snapshot                                         *)
(*   Read(t, k)    read k from the snapshot (not already read or written)  *)
(*   Write(t, k)   buffer a write of k                                     *)
(*   Commit(t)     read-only: commit at the snapshot; read-write: validate *)
(*                 the read set against commits since the snapshot, then   *)
(*                 apply every write at once, or abort on Conflict(t): a   *)
(*                 commit since the snapshot wrote a key read              *)
(*                 (ConcurrentConflict)                                    *)
(*   ApplyWrite(t, k) (bug storage-nonatomic-apply) one write lands        *)
(*   ReadFailed(t) a snapshot read fails (I/O error): the txn aborts with  *)
(*                 no effect (DiskReadError)                               *)
(*                                                                         *)
(* INVARIANTS                                                              *)
(*   TypeOK                                                                *)
(*   SerializableIsolation  every committed txn read exactly what the      *)
(*                          serial execution of the committed read-write   *)
(*                          txns in commit order gives at its position     *)
(*   AtomicVisibility       readers see exactly the committed txns, each   *)
(*                          in full                                        *)
(* PROPERTIES                                                              *)
(*   TxnFinishes            every begun txn eventually commits or aborts   *)
(*                                                                         *)
(* Bug switches (CONSTANT Bug; "none" = production):                       *)
(*   "storage-skip-occ-check"   no read-set validation at commit           *)
(*   "storage-nonatomic-apply"  a commit's writes land one by one          *)
(***************************************************************************)
EXTENDS Integers, Sequences, FiniteSets, TLC

CONSTANTS Keys, Txns, Init0, Bug

VARIABLES db, version, log, st, snap, snapVer, rs, ws, toApply, history, roHistory

vars == <<db, version, log, st, snap, snapVer, rs, ws, toApply, history, roHistory>>

Values == Txns \cup {Init0}
EmptyFn == [k \in {} |-> Init0]

\* Apply a write set to a state.
ApplyTo(s, w) == [k \in Keys |-> IF k \in DOMAIN w THEN w[k] ELSE s[k]]

\* The state after the first i committed read-write txns, serially.
RECURSIVE StateAfter(_)
StateAfter(i) == IF i = 0 THEN [k \in Keys |-> Init0]
                 ELSE ApplyTo(StateAfter(i - 1), history[i].writes)

Init ==
    /\ db = [k \in Keys |-> Init0]
    /\ version = 0
    /\ log = << >>
    /\ st = [t \in Txns |-> "idle"]
    /\ snap = [t \in Txns |-> [k \in Keys |-> Init0]]
    /\ snapVer = [t \in Txns |-> 0]
    /\ rs = [t \in Txns |-> EmptyFn]
    /\ ws = [t \in Txns |-> EmptyFn]
    /\ toApply = {}
    /\ history = << >>
    /\ roHistory = {}

Begin(t) ==
    /\ st[t] = "idle"
    /\ st' = [st EXCEPT ![t] = "active"]
    /\ snap' = [snap EXCEPT ![t] = db]
    /\ snapVer' = [snapVer EXCEPT ![t] = version]
    /\ UNCHANGED <<db, version, log, rs, ws, toApply, history, roHistory>>

\* A snapshot read (reads of own writes are served from `ws` and recorded
\* nowhere, so they are not enabled here).
Read(t, k) ==
    /\ st[t] = "active"
    /\ k \notin DOMAIN rs[t] \cup DOMAIN ws[t]
    /\ rs' = [rs EXCEPT ![t] = @ @@ (k :> snap[t][k])]
    /\ UNCHANGED <<db, version, log, st, snap, snapVer, ws, toApply, history, roHistory>>

\* DiskReadError: a read from the snapshot fails with an I/O error; the
\* caller drops the transaction, which aborts with no effect (its buffered
\* writes are discarded, nothing is validated or applied).
ReadFailed(t) ==
    /\ st[t] = "active"
    /\ \E k \in Keys : k \notin DOMAIN rs[t] \cup DOMAIN ws[t]
    /\ st' = [st EXCEPT ![t] = "aborted"]
    /\ UNCHANGED <<db, version, log, snap, snapVer, rs, ws, toApply, history, roHistory>>

Write(t, k) ==
    /\ st[t] = "active"
    /\ k \notin DOMAIN ws[t]
    /\ ws' = [ws EXCEPT ![t] = @ @@ (k :> t)]
    /\ UNCHANGED <<db, version, log, st, snap, snapVer, rs, toApply, history, roHistory>>

\* Store::commit's `conflict`: a commit after the snapshot wrote a key read.
Conflict(t) ==
    /\ Bug # "storage-skip-occ-check"
    /\ \E i \in (snapVer[t] + 1)..version : log[i] \cap DOMAIN rs[t] # {}

Publish(t) ==
    /\ version' = version + 1
    /\ log' = Append(log, DOMAIN ws[t])
    /\ history' = Append(history, [reads |-> rs[t], writes |-> ws[t]])
    /\ st' = [st EXCEPT ![t] = "committed"]

Commit(t) ==
    /\ st[t] = "active"
    /\ toApply = {}
    /\ IF DOMAIN ws[t] = {}
          THEN \* read-only: serializable at its snapshot, no validation
               /\ st' = [st EXCEPT ![t] = "committed"]
               /\ roHistory' = roHistory \cup {[at |-> snapVer[t], reads |-> rs[t]]}
               /\ UNCHANGED <<db, version, log, toApply, history>>
          ELSE IF Conflict(t)
          THEN /\ st' = [st EXCEPT ![t] = "aborted"]
               /\ UNCHANGED <<db, version, log, toApply, history, roHistory>>
          ELSE IF Bug = "storage-nonatomic-apply"
          THEN /\ st' = [st EXCEPT ![t] = "applying"]
               /\ toApply' = DOMAIN ws[t]
               /\ UNCHANGED <<db, version, log, history, roHistory>>
          ELSE /\ db' = ApplyTo(db, ws[t])         \* one engine transaction
               /\ Publish(t)
               /\ UNCHANGED <<toApply, roHistory>>
    /\ UNCHANGED <<snap, snapVer, rs, ws>>

\* bug-storage-nonatomic-apply: each write is its own engine transaction.
ApplyWrite(t, k) ==
    /\ st[t] = "applying"
    /\ k \in toApply
    /\ db' = [db EXCEPT ![k] = ws[t][k]]
    /\ toApply' = toApply \ {k}
    /\ IF toApply' = {}
          THEN Publish(t)
          ELSE UNCHANGED <<version, log, history, st>>
    /\ UNCHANGED <<snap, snapVer, rs, ws, roHistory>>

Next ==
    \E t \in Txns :
        \/ Begin(t) \/ Commit(t) \/ ReadFailed(t)
        \/ \E k \in Keys : Read(t, k) \/ Write(t, k) \/ ApplyWrite(t, k)

Fairness == \A t \in Txns : WF_vars(Commit(t)) /\ WF_vars(\E k \in Keys : ApplyWrite(t, k))

Spec == Init /\ [][Next]_vars /\ Fairness

-----------------------------------------------------------------------------
TypeOK ==
    /\ db \in [Keys -> Values]
    /\ st \in [Txns -> {"idle", "active", "applying", "committed", "aborted"}]
    /\ version = Len(history)
    /\ toApply \subseteq Keys

\* Reads agree with the state they were serialized at.
ReadsMatch(reads, s) == \A k \in DOMAIN reads : reads[k] = s[k]

SerializableIsolation ==
    /\ \A i \in 1..Len(history) : ReadsMatch(history[i].reads, StateAfter(i - 1))
    /\ \A r \in roHistory : ReadsMatch(r.reads, StateAfter(r.at))

AtomicVisibility == db = StateAfter(Len(history))

TxnFinishes == \A t \in Txns : (st[t] = "active") ~> (st[t] \in {"committed", "aborted"})
=============================================================================
