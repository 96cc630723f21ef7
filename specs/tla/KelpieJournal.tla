---------------------------- MODULE KelpieJournal ----------------------------
(***************************************************************************)
(* The invocation journal of one actor on one node with a disk: G2         *)
(* (durability), G3 (atomicity of state + journal completion) and G4       *)
(* (exactly-once effects: idempotent retries, replay of pending entries    *)
(* after a crash, once, in order).                                         *)
(* Production: crates/kelpie-storage/src/journal.rs (append, complete,     *)
(* recover), store.rs (one engine write per commit, answered after it is   *)
(* durable), runtime.rs (invoke_once, replay on activation).               *)
(*                                                                         *)
(* The store's contents are an image [log, hist]: `log` is the journal, a  *)
(* sequence of entries [key, status] in append order; `hist` is the        *)
(* actor's state, the sequence of idempotency keys whose effect was        *)
(* applied.  `visible` is what readers and the node see; `durable` is what *)
(* survives a crash.  Production makes a commit visible only once it is    *)
(* durable; the bugs break that or split a commit in two.                  *)
(*                                                                         *)
(* VARIABLES                                                               *)
(*   visible   image readers see (and the node works from)                 *)
(*   durable   image on disk after the last sync                           *)
(*   up        the node is running                                         *)
(*   phase     "idle" | "running" | "applied" | "recovering"               *)
(*   cur       key of the entry being executed                             *)
(*   replaying TRUE when the execution is a replay by recovery             *)
(*   ri        recovery: next log position to look at                      *)
(*   acked     keys whose invocation was acknowledged to the client        *)
(*   crashes   crashes so far (bounded)                                    *)
(*   wfails    failed engine writes so far (bounded)                       *)
(*                                                                         *)
(* ACTIONS                                                                 *)
(*   Append(k)    the client's invocation k arrives: a completed entry is  *)
(*                answered from its record, a pending one is executed, a   *)
(*                new one is appended (pending) and executed               *)
(*   ApplyEffect  (bug storage-nonatomic-apply) the effect, committed on   *)
(*                its own                                                  *)
(*   Complete     effect + entry completion in one commit; acknowledges    *)
(*                the client (not for a replay)                            *)
(*   WriteFailed  a commit's engine write (Append's new entry, or the      *)
(*                effect + completion) fails with an I/O error: not        *)
(*                applied, or applied with the answer lost; the client is  *)
(*                not acknowledged and the store, refusing everything      *)
(*                until reopened, reopens and recovers (DiskWriteError)    *)
(*   Sync         (bug storage-ack-before-sync) a later fsync              *)
(*   Crash        the node dies; unsynced writes are lost                  *)
(*   Restart      the node starts recovery                                 *)
(*   Recover      recovery looks at the next entry: pending ones are       *)
(*                replayed, in order; at the end the node serves again     *)
(*                                                                         *)
(* INVARIANTS                                                              *)
(*   TypeOK                                                                *)
(*   Durability        every acknowledged invocation is visible, completed *)
(*   AtomicVisibility  an invocation's effect is visible iff its journal   *)
(*                     entry is visibly completed                          *)
(*   ReplayIdempotent  no invocation's effect is applied twice             *)
(*   EffectsInOrder    effects are applied in journal (append) order       *)
(* PROPERTIES                                                              *)
(*   PendingEventuallyCompleted  every appended entry is eventually        *)
(*                               completed (replay after a crash)          *)
(*                                                                         *)
(* Simulator faults here (crates/kelpie-dst/src/faults.rs):                *)
(*   FsyncLoss, TornWrite  Crash: what was not synced is lost; a torn last *)
(*                write fails redb's checksum, so its commit is lost too   *)
(*   DiskWriteError  WriteFailed                                           *)
(*   DiskLatency  Sync: the sync happens later.  In production a commit is *)
(*                published and answered only once its sync returned, so   *)
(*                durable = visible and Sync is never enabled; a slow sync *)
(*                is an Append/Complete step that happens later, after any *)
(*                other step (a Crash first: the commit is lost, never     *)
(*                acknowledged).  Under storage-ack-before-sync, Sync is   *)
(*                the sync lagging behind the acknowledged commit.         *)
(*                                                                         *)
(* Bug switches (CONSTANT Bug; "none" = production):                       *)
(*   "journal-replay-completed"  recovery replays completed entries too    *)
(*   "storage-ack-before-sync"   commits are visible and acknowledged      *)
(*                               before they are synced                    *)
(*   "storage-nonatomic-apply"   a commit's writes land one by one         *)
(***************************************************************************)
EXTENDS Integers, FiniteSets

Seq == INSTANCE Sequences   \* prefixed: the action `Append` keeps its production name

CONSTANTS Keys,       \* idempotency keys of the client's invocations
          MaxCrashes, \* bound on crashes
          MaxWriteFailures, \* bound on failed engine writes
          Bug         \* bug switch, "none" in production

VARIABLES visible, durable, up, phase, cur, replaying, ri, acked, crashes, wfails

vars == <<visible, durable, up, phase, cur, replaying, ri, acked, crashes, wfails>>

NoKey == "none"
Empty == [log |-> << >>, hist |-> << >>]

Range(s) == {s[i] : i \in DOMAIN s}
Pos(img, k) == CHOOSE i \in DOMAIN img.log : img.log[i].key = k
InLog(img, k) == \E i \in DOMAIN img.log : img.log[i].key = k
Completed(img, k) == InLog(img, k) /\ img.log[Pos(img, k)].status = "completed"

\* A commit: production publishes it once the engine write (fsync) returned.
Write(img) ==
    /\ visible' = img
    /\ durable' = IF Bug = "storage-ack-before-sync" THEN durable ELSE img

WithEffect(img, k) == [img EXCEPT !.hist = Seq!Append(@, k)]
WithCompletion(img, k) == [img EXCEPT !.log[Pos(img, k)].status = "completed"]

Init ==
    /\ visible = Empty
    /\ durable = Empty
    /\ up = TRUE
    /\ phase = "idle"
    /\ cur = NoKey
    /\ replaying = FALSE
    /\ ri = 1
    /\ acked = {}
    /\ crashes = 0
    /\ wfails = 0

-----------------------------------------------------------------------------
Append(k) ==
    /\ up
    /\ phase = "idle"
    /\ k \notin acked
    /\ IF Completed(visible, k)
          THEN \* Duplicate, completed: the stored result, no re-execution.
               /\ acked' = acked \cup {k}
               /\ UNCHANGED <<visible, durable, phase, cur>>
          ELSE /\ IF InLog(visible, k)
                     THEN UNCHANGED <<visible, durable>>       \* Duplicate, pending: run it
                     ELSE Write([visible EXCEPT !.log = Seq!Append(@, [key |-> k, status |-> "pending"])])
               /\ phase' = "running"
               /\ cur' = k
               /\ UNCHANGED acked
    /\ UNCHANGED <<up, replaying, ri, crashes, wfails>>

\* After the commit: acknowledge (unless replaying), go back.
Finish ==
    /\ acked' = IF replaying THEN acked ELSE acked \cup {cur}
    /\ phase' = IF replaying THEN "recovering" ELSE "idle"
    /\ cur' = NoKey
    /\ replaying' = FALSE

\* bug-storage-nonatomic-apply: the state write commits on its own first.
ApplyEffect ==
    /\ Bug = "storage-nonatomic-apply"
    /\ up
    /\ phase = "running"
    /\ Write(WithEffect(visible, cur))
    /\ phase' = "applied"
    /\ UNCHANGED <<up, cur, replaying, ri, acked, crashes, wfails>>

\* run_handler + Journal::complete: the effect and the completion commit
\* together (production), or the completion alone after ApplyEffect (bug).
Complete ==
    /\ up
    /\ \/ /\ Bug # "storage-nonatomic-apply"
          /\ phase = "running"
          /\ Write(WithCompletion(WithEffect(visible, cur), cur))
       \/ /\ Bug = "storage-nonatomic-apply"
          /\ phase = "applied"
          /\ Write(WithCompletion(visible, cur))
    /\ Finish
    /\ UNCHANGED <<up, ri, crashes, wfails>>

\* bug-storage-ack-before-sync: the disk catches up some time later.
Sync ==
    /\ Bug = "storage-ack-before-sync"
    /\ durable # visible
    /\ durable' = visible
    /\ UNCHANGED <<visible, up, phase, cur, replaying, ri, acked, crashes, wfails>>

\* DiskWriteError: the engine write of a commit fails with an I/O error --
\* the write of Append's new pending entry, or of Complete's effect +
\* completion (under storage-nonatomic-apply, either of its two writes).
\* Either nothing was applied, or the commit was applied and only its answer
\* is lost (e.g. written, then the sync reported the error although the
\* pages reached the disk): the client is not acknowledged either way.
\* redb then refuses every operation (PreviousIo) until the database is
\* reopened, and reopening runs recovery, which replays the pending entries
\* in order before anything new is accepted (and the store validates later
\* commits as if the failed one had applied).  So: unacknowledged, then
\* recovering from the image as it now is.
WriteFailed ==
    /\ up
    /\ wfails < MaxWriteFailures
    /\ wfails' = wfails + 1
    /\ \/ \E k \in Keys :
             /\ phase = "idle"
             /\ k \notin acked
             /\ ~InLog(visible, k)
             /\ \/ UNCHANGED <<visible, durable>>
                \/ Write([visible EXCEPT !.log = Seq!Append(@, [key |-> k, status |-> "pending"])])
       \/ /\ phase \in {"running", "applied"}
          /\ LET img == IF Bug # "storage-nonatomic-apply"
                           THEN WithCompletion(WithEffect(visible, cur), cur)
                        ELSE IF phase = "running" THEN WithEffect(visible, cur)
                        ELSE WithCompletion(visible, cur)
             IN \/ UNCHANGED <<visible, durable>>
                \/ Write(img)
    /\ phase' = "recovering"
    /\ ri' = 1
    /\ cur' = NoKey
    /\ replaying' = FALSE
    /\ UNCHANGED <<up, acked, crashes>>

Crash ==
    /\ up
    /\ crashes < MaxCrashes
    /\ crashes' = crashes + 1
    /\ up' = FALSE
    /\ visible' = durable
    /\ phase' = "idle"
    /\ cur' = NoKey
    /\ replaying' = FALSE
    /\ UNCHANGED <<durable, ri, acked, wfails>>

Restart ==
    /\ ~up
    /\ up' = TRUE
    /\ phase' = "recovering"
    /\ ri' = 1
    /\ UNCHANGED <<visible, durable, cur, replaying, acked, crashes, wfails>>

\* Journal::recover: per entry in sequence order, replay it if pending (the
\* bug replays completed entries too); at the end the actor serves.
Recover ==
    /\ up
    /\ phase = "recovering"
    /\ IF ri > Seq!Len(visible.log)
          THEN /\ phase' = "idle"
               /\ UNCHANGED <<cur, replaying, ri>>
          ELSE /\ ri' = ri + 1
               /\ IF visible.log[ri].status = "pending" \/ Bug = "journal-replay-completed"
                     THEN /\ phase' = "running"
                          /\ cur' = visible.log[ri].key
                          /\ replaying' = TRUE
                     ELSE UNCHANGED <<phase, cur, replaying>>
    /\ UNCHANGED <<visible, durable, up, acked, crashes, wfails>>

-----------------------------------------------------------------------------
Next ==
    \/ \E k \in Keys : Append(k)
    \/ ApplyEffect \/ Complete \/ WriteFailed \/ Sync \/ Crash \/ Restart \/ Recover

Fairness == WF_vars(ApplyEffect) /\ WF_vars(Complete) /\ WF_vars(Restart) /\ WF_vars(Recover)

Spec == Init /\ [][Next]_vars /\ Fairness

-----------------------------------------------------------------------------
TypeOK ==
    /\ up \in BOOLEAN
    /\ phase \in {"idle", "running", "applied", "recovering"}
    /\ cur \in Keys \cup {NoKey}
    /\ acked \subseteq Keys
    /\ Range(visible.hist) \subseteq Keys
    /\ \A i \in DOMAIN visible.log : visible.log[i].status \in {"pending", "completed"}
    /\ crashes \in 0..MaxCrashes
    /\ wfails \in 0..MaxWriteFailures

Durability == \A k \in acked : Completed(visible, k) /\ k \in Range(visible.hist)

AtomicVisibility == \A k \in Keys : (k \in Range(visible.hist)) <=> Completed(visible, k)

ReplayIdempotent ==
    \A i, j \in DOMAIN visible.hist : visible.hist[i] = visible.hist[j] => i = j

EffectsInOrder ==
    \A i, j \in DOMAIN visible.hist :
        i < j => Pos(visible, visible.hist[i]) < Pos(visible, visible.hist[j])

PendingEventuallyCompleted ==
    \A k \in Keys : (InLog(visible, k) /\ ~Completed(visible, k)) ~> Completed(visible, k)
=============================================================================
