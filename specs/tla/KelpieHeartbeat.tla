--------------------------- MODULE KelpieHeartbeat ---------------------------
(***************************************************************************)
(* The heartbeat service: durable incarnations and failure detection       *)
(* (G5: a crashed node is noticed).                                        *)
(* Production: crates/kelpie-cluster/src/incarnation.rs (advance: sync,    *)
(* read, rewrite the value read and sync, write the other slot, sync, use) *)
(* and heartbeat.rs                                                        *)
(* (FailureDetector, the sans-IO core; HeartbeatNode, its driver: advance  *)
(* at boot, then a detector tick every Interval).  Simulator:              *)
(* crates/kelpie-dst/src/scenarios/heartbeat.rs (same invariant names).    *)
(*                                                                         *)
(* Disk.  advance makes the value it reads durable before it writes the    *)
(* next (the rewrite matters when a failed fsync marked pages clean, which *)
(* this disk model, where a failed sync leaves its write pending, does not *)
(* have; incarnation.rs tests it), so at most one write                    *)
(* of the incarnation file is ever unsynced: the disk is durInc (highest   *)
(* valid slot on disk) and unsynced (the page cache also holds durInc+1,   *)
(* written to the other slot).  A process crash keeps the page cache; a    *)
(* machine crash loses the unsynced write or tears it (its checksum        *)
(* fails, and the other slot, holding durInc, is read).                    *)
(*                                                                         *)
(* Messages.  Every ping of one boot is the same (from, to, incarnation)   *)
(* and may arrive late, reordered, twice or never, so Ping(p, o) delivers  *)
(* one at any time while p's boot lives (an over-approximation of delay:   *)
(* even later than MaxDelay).  Only pings a crashed boot left in flight    *)
(* are state (msgs, created by Crash); they arrive within InFlight =       *)
(* MaxDelay of the crash or are lost.  Acks are not modelled: an ack is a  *)
(* message from the pinged node with its current incarnation, which Ping   *)
(* already delivers at any time.  Membership (members/<n> put by           *)
(* compare-and-set under a session lease) is not modelled: it only         *)
(* decides whom a node pings, and since any message may be lost, pinging   *)
(* every node covers every member list (no invariant reads the store).     *)
(*                                                                         *)
(* Time.  Tick advances real time by 1 and each detector's clock by 0, 1   *)
(* or 2, its deviation from real time kept in a band of width MaxDrift     *)
(* (as in KelpieLease).  Times are relative and capped, so the state       *)
(* space is finite.  As in the simulator, time does not advance while a    *)
(* running node has work ready: a due detector tick, or a boot's advance   *)
(* (unless it backs off after a disk error).  So CrashedNodeSuspected is   *)
(* a safety invariant over bounded time (scripts/tlc.sh records a          *)
(* temporal violation only as fail:TemporalProperties, and the bug-switch  *)
(* table needs fail:CrashedNodeSuspected); CrashedNodeEventuallySuspected  *)
(* is its unbounded temporal form.  Detect = SuspectAfter + Interval +     *)
(* MaxDrift: the silence reaches SuspectAfter on the observer's clock,     *)
(* its next tick is at most Interval later on that clock, which lags real  *)
(* time by at most MaxDrift.  The bound is exact: one unit less on either  *)
(* side fails.  upFor counts from the detector's start (or a resume), not  *)
(* from the boot: a boot backing off after a disk error reads its inbox    *)
(* late.                                                                   *)
(*                                                                         *)
(* Simulator faults here (crates/kelpie-dst/src/faults.rs):                *)
(*   ClockSkew, ClockJump  Tick: each clock advances 0..2 per unit of      *)
(*                real time within the drift band (a forward jump of the   *)
(*                monotonic clock only makes suspicion earlier)            *)
(*   NodePause    Pause(n), Resume(n): a paused node takes no step while   *)
(*                its clock runs; a ping waits in its inbox                *)
(*   NodeCrash    Crash(n), Restart(n)                                     *)
(*   FsyncLoss, TornWrite  Crash(n): the unsynced incarnation is lost or   *)
(*                torn (a machine crash)                                   *)
(*   DiskWriteError, DiskReadError  AdvanceFailed(n): the boot's advance   *)
(*                fails (its first sync, its read or write, or its last    *)
(*                sync); it retries after a backoff                        *)
(*   MessageDrop  Drop(m); a Ping that never happens                       *)
(*   MessageDelay, MessageReorder  Deliver(m): a crashed boot's ping       *)
(*                arrives late, after newer ones; Ping at any time         *)
(*   MessageDuplicate  Deliver(m): a copy stays in flight; Ping again      *)
(*   Partition    Drop(m); no Ping across the cut (membership is not       *)
(*                modelled, see above)                                     *)
(*   CoordinationTimeout, ConcurrentConflict, DiskLatency  not here: they  *)
(*                delay a registration (membership) or blocking work the   *)
(*                heartbeat does not use                                   *)
(*                                                                         *)
(* VARIABLES                                                               *)
(*   status    node -> "up" | "paused" | "down"                            *)
(*   durInc    node -> incarnation on disk, synced                         *)
(*   unsynced  node -> the page cache also holds durInc+1, unsynced        *)
(*   inc       node -> incarnation of the current boot (0: booting)        *)
(*   retry     node -> its advance failed; it retries after a backoff      *)
(*   dev       node -> its clock's deviation from real time (0 if it has   *)
(*             no detector)                                                *)
(*   sinceTick node -> own-clock time since its last detector tick         *)
(*   pinc      observer -> peer -> incarnation held (0: never heard)       *)
(*   pstat     observer -> peer -> "none" | "alive" | "suspect"            *)
(*   silent    observer -> peer -> own-clock silence while alive (capped)  *)
(*   msgs      pings a crashed boot left in flight [from, to, inc, age]    *)
(*   upFor     node -> real time its detector has run since it started     *)
(*             or the node resumed (capped at Detect)                      *)
(*   downFor   node -> real time since it crashed (capped)                 *)
(*   prevMax   ghost: highest incarnation an earlier boot of n used        *)
(*   pmax      ghost: highest incarnation the observer's detector held     *)
(*             for the peer                                                *)
(*   crashes, derrs, pauses   faults so far (bounded)                      *)
(*                                                                         *)
(* ACTIONS                                                                 *)
(*   Advance(n)       boot: sync, read, write the next incarnation, sync,  *)
(*                    create the detector (bug: used before its sync)      *)
(*   AdvanceFailed(n) the advance fails with a disk error                  *)
(*   DetectorTick(n)  every Interval: suspect each alive peer silent for   *)
(*                    SuspectAfter (its pings are Ping's)                  *)
(*   Ping(p, o)       a ping of p's live boot arrives at o                 *)
(*   Deliver(m)       a ping of a crashed boot arrives                     *)
(*   Drop(m)          it is lost                                           *)
(*   Tick             real time +1, clocks +0..2                           *)
(*   Crash(n) Restart(n) Pause(n) Resume(n)   environment                  *)
(*                                                                         *)
(* INVARIANTS                                                              *)
(*   TypeOK                                                                *)
(*   IncarnationMonotonic      every boot of a node uses an incarnation    *)
(*                             above any an earlier boot used              *)
(*   PeerIncarnationMonotonic  an observer's view of a peer's              *)
(*                             incarnation never decreases while it runs   *)
(*   CrashedNodeSuspected      (bounded time) a peer down for Detect +     *)
(*                             InFlight is suspected by every observer     *)
(*                             that knew it and whose detector has run     *)
(*                             for Detect                                  *)
(* PROPERTIES                                                              *)
(*   CrashedNodeEventuallySuspected  an alive peer that is down is         *)
(*                             eventually suspected, unless it restarts    *)
(*                             or the observer stops running (fairness:    *)
(*                             time advances, ready work runs)             *)
(*                                                                         *)
(* Bug switches (CONSTANT Bug; "none" = production):                       *)
(*   "incarnation-no-fsync"   the new incarnation is used before its sync  *)
(*   "heartbeat-accept-stale-incarnation"  the detector accepts a message  *)
(*                            from an older incarnation than it holds      *)
(*   "heartbeat-never-suspect"  the detector never suspects                *)
(***************************************************************************)
EXTENDS Integers, FiniteSets

CONSTANTS Nodes,         \* node ids (model values)
          Interval,      \* own-clock time between detector ticks
          SuspectAfter,  \* own-clock silence after which a peer is suspected
          MaxDrift,      \* clock drift bound
          MaxDelay,      \* latest arrival of a ping (or a duplicate) after its send
          MaxCrashes,    \* bound on crashes
          MaxDiskErrors, \* bound on failed advances
          MaxPauses,     \* bound on pauses
          Bug            \* bug switch, "none" in production

ASSUME Interval >= 1 /\ SuspectAfter >= 1 /\ MaxDrift >= 1 /\ MaxDelay >= 1

VARIABLES status, durInc, unsynced, inc, retry, dev, sinceTick,
          pinc, pstat, silent, msgs, upFor, downFor,
          prevMax, pmax, crashes, derrs, pauses

vars == <<status, durInc, unsynced, inc, retry, dev, sinceTick,
          pinc, pstat, silent, msgs, upFor, downFor,
          prevMax, pmax, crashes, derrs, pauses>>

Band == (-(MaxDrift \div 2))..(MaxDrift - (MaxDrift \div 2))
\* Every boot and every failed advance uses up at most one incarnation.
MaxInc == 1 + MaxCrashes + MaxDiskErrors
\* Real time within which a running detector suspects a silent peer: the
\* silence reaches SuspectAfter on its clock, the next tick is at most
\* Interval later on its clock, and its clock lags real time by <= MaxDrift.
Detect == SuspectAfter + Interval + MaxDrift
\* The latest a message (or its duplicate) arrives after its send.
InFlight == MaxDelay

Max(a, b) == IF a >= b THEN a ELSE b
Min(a, b) == IF a <= b THEN a ELSE b

Msg == [from : Nodes, to : Nodes, inc : 1..MaxInc, age : 0..InFlight]

\* incarnation::read_current: what the process reads (the page cache).
Cached(n) == durInc[n] + (IF unsynced[n] THEN 1 ELSE 0)

\* The detector exists and the node executes.
Running(n) == status[n] = "up" /\ inc[n] # 0
\* Started, advancing its incarnation (no detector yet).
Booting(n) == status[n] = "up" /\ inc[n] = 0

NoPeers == [p \in Nodes |-> 0]

Init ==
    /\ status = [n \in Nodes |-> "up"]
    /\ durInc = [n \in Nodes |-> 0]
    /\ unsynced = [n \in Nodes |-> FALSE]
    /\ inc = [n \in Nodes |-> 0]
    /\ retry = [n \in Nodes |-> FALSE]
    /\ dev = [n \in Nodes |-> 0]
    /\ sinceTick = [n \in Nodes |-> 0]
    /\ pinc = [o \in Nodes |-> NoPeers]
    /\ pstat = [o \in Nodes |-> [p \in Nodes |-> "none"]]
    /\ silent = [o \in Nodes |-> NoPeers]
    /\ msgs = {}
    /\ upFor = [n \in Nodes |-> 0]
    /\ downFor = [n \in Nodes |-> 0]
    /\ prevMax = [n \in Nodes |-> 0]
    /\ pmax = [o \in Nodes |-> NoPeers]
    /\ crashes = 0
    /\ derrs = 0
    /\ pauses = 0

-----------------------------------------------------------------------------
(* Boot: the durable incarnation. *)

\* incarnation::advance, then the detector is created and ticks at once.
\* The first sync makes the page cache durable; the next incarnation is
\* written to the other slot and synced before it is used -- unless the bug
\* skips that sync, and the number in use is only in the page cache.
Advance(n) ==
    /\ Booting(n)
    /\ ~retry[n]
    /\ LET next == Cached(n) + 1 IN
          /\ inc' = [inc EXCEPT ![n] = next]
          /\ IF Bug = "incarnation-no-fsync"
                THEN /\ durInc' = [durInc EXCEPT ![n] = next - 1]
                     /\ unsynced' = [unsynced EXCEPT ![n] = TRUE]
                ELSE /\ durInc' = [durInc EXCEPT ![n] = next]
                     /\ unsynced' = [unsynced EXCEPT ![n] = FALSE]
    /\ \E d \in Band : dev' = [dev EXCEPT ![n] = d]
    /\ sinceTick' = [sinceTick EXCEPT ![n] = Interval]
    /\ upFor' = [upFor EXCEPT ![n] = 0]
    /\ UNCHANGED <<status, retry, pinc, pstat, silent, msgs, downFor, prevMax,
                   pmax, crashes, derrs, pauses>>

\* DiskWriteError / DiskReadError: advance returns an error and the boot
\* retries after a backoff.  The first sync fails (nothing changes); or it
\* succeeded and the read or the write fails (nothing written); or the
\* write succeeded and its sync fails (a number is cached, never used).
AdvanceFailed(n) ==
    /\ Booting(n)
    /\ ~retry[n]
    /\ derrs < MaxDiskErrors
    /\ derrs' = derrs + 1
    /\ retry' = [retry EXCEPT ![n] = TRUE]
    /\ \/ UNCHANGED <<durInc, unsynced>>
       \/ /\ durInc' = [durInc EXCEPT ![n] = Cached(n)]
          /\ unsynced' = [unsynced EXCEPT ![n] = FALSE]
       \/ /\ Bug # "incarnation-no-fsync"
          /\ durInc' = [durInc EXCEPT ![n] = Cached(n)]
          /\ unsynced' = [unsynced EXCEPT ![n] = TRUE]
    /\ UNCHANGED <<status, inc, dev, sinceTick, pinc, pstat, silent, msgs,
                   upFor, downFor, prevMax, pmax, crashes, pauses>>

-----------------------------------------------------------------------------
(* The failure detector (FailureDetector::step). *)

\* DetectorInput::Tick: suspect every alive peer silent for SuspectAfter on
\* this node's clock (the pings it sends are Ping(n, _)).
DetectorTick(n) ==
    /\ Running(n)
    /\ sinceTick[n] = Interval
    /\ sinceTick' = [sinceTick EXCEPT ![n] = 0]
    /\ pstat' = [pstat EXCEPT ![n] =
                   [p \in Nodes |->
                      IF /\ pstat[n][p] = "alive"
                         /\ silent[n][p] >= SuspectAfter
                         /\ Bug # "heartbeat-never-suspect"
                      THEN "suspect" ELSE pstat[n][p]]]
    /\ silent' = [silent EXCEPT ![n] = [p \in Nodes |->
                    IF pstat'[n][p] = "alive" THEN silent[n][p] ELSE 0]]
    /\ UNCHANGED <<status, durInc, unsynced, inc, retry, dev, pinc, msgs,
                   upFor, downFor, prevMax, pmax, crashes, derrs, pauses>>

\* DetectorInput::Received at o: a message from p's boot with incarnation
\* i.  An older incarnation than held is ignored; otherwise p is alive.
Receive(o, p, i) ==
    IF /\ pinc[o][p] # 0
       /\ i < pinc[o][p]
       /\ Bug # "heartbeat-accept-stale-incarnation"
    THEN UNCHANGED <<pinc, pstat, silent, pmax>>
    ELSE /\ pinc' = [pinc EXCEPT ![o][p] = i]
         /\ pstat' = [pstat EXCEPT ![o][p] = "alive"]
         /\ silent' = [silent EXCEPT ![o][p] = 0]
         /\ pmax' = [pmax EXCEPT ![o][p] = Max(@, i)]

\* A ping of p's current boot arrives at o.  Every ping of a boot is the
\* same message (p, o, incarnation), sent each Interval while p runs, and
\* may arrive late, out of order, twice or never: so one may arrive at any
\* time while p's boot lives (pinging).
Ping(p, o) ==
    /\ p # o
    /\ Running(o)
    /\ status[p] # "down"
    /\ inc[p] # 0
    /\ Receive(o, p, inc[p])
    /\ UNCHANGED <<status, durInc, unsynced, inc, retry, dev, sinceTick, msgs,
                   upFor, downFor, prevMax, crashes, derrs, pauses>>

\* A ping a crashed boot left in flight arrives (late, perhaps after newer
\* ones: MessageDelay, MessageReorder); a duplicate copy may stay in flight
\* (MessageDuplicate).
Deliver(m) ==
    /\ m \in msgs
    /\ Running(m.to)
    /\ \/ msgs' = msgs \ {m}
       \/ UNCHANGED msgs
    /\ Receive(m.to, m.from, m.inc)
    /\ UNCHANGED <<status, durInc, unsynced, inc, retry, dev, sinceTick,
                   upFor, downFor, prevMax, crashes, derrs, pauses>>

\* MessageDrop; Partition (a message across the cut).
Drop(m) ==
    /\ m \in msgs
    /\ msgs' = msgs \ {m}
    /\ UNCHANGED <<status, durInc, unsynced, inc, retry, dev, sinceTick,
                   pinc, pstat, silent, upFor, downFor,
                   prevMax, pmax, crashes, derrs, pauses>>

-----------------------------------------------------------------------------
(* Environment: time, crash, restart, pause. *)

Waiting(n) == status[n] = "paused" \/ (Booting(n) /\ retry[n])

\* Nothing ready is left waiting when time moves on.
ReadyWork ==
    \/ \E n \in Nodes : Running(n) /\ sinceTick[n] = Interval
    \/ \E n \in Nodes : Booting(n) /\ ~retry[n]

\* Real time +1; the clock of node n (with a detector: only its clock is
\* read) advances r = 1 + dev'[n] - dev[n].  A ping left by a crashed boot
\* that has not arrived InFlight after the crash is lost (as by a Drop
\* before the Tick), unless it waits in the inbox of a paused node or of a
\* booting one backing off, which processes it when it runs.
Tick ==
    /\ ~ReadyWork
    /\ \E d \in [Nodes -> Band] :
          LET r(n) == 1 + d[n] - dev[n] IN
          /\ \A n \in Nodes : IF inc[n] # 0 THEN r(n) \in 0..2 ELSE d[n] = 0
          /\ dev' = d
          /\ sinceTick' = [n \in Nodes |->
                             IF inc[n] # 0 THEN Min(Interval, sinceTick[n] + r(n)) ELSE 0]
          /\ silent' = [o \in Nodes |-> [p \in Nodes |->
                          IF pstat[o][p] = "alive" THEN Min(SuspectAfter, silent[o][p] + r(o))
                          ELSE 0]]
    /\ upFor' = [n \in Nodes |-> IF Running(n) THEN Min(Detect, upFor[n] + 1) ELSE upFor[n]]
    /\ downFor' = [n \in Nodes |->
                     IF status[n] = "down" THEN Min(Detect + InFlight, downFor[n] + 1) ELSE 0]
    /\ msgs' = {[m EXCEPT !.age = Min(InFlight, @ + 1)] :
                  m \in {x \in msgs : x.age < InFlight \/ Waiting(x.to)}}
    /\ retry' = [n \in Nodes |-> FALSE]
    /\ UNCHANGED <<status, durInc, unsynced, inc, pinc, pstat,
                   prevMax, pmax, crashes, derrs, pauses>>

\* Volatile state is lost.  A process crash keeps the page cache, so the
\* unsynced write reaches the disk; a machine crash loses it or tears it
\* (FsyncLoss, TornWrite: the checksum rejects the torn slot, the other
\* slot holds durInc).
Crash(n) ==
    /\ status[n] # "down"
    /\ crashes < MaxCrashes
    /\ crashes' = crashes + 1
    /\ status' = [status EXCEPT ![n] = "down"]
    /\ \/ durInc' = [durInc EXCEPT ![n] = Cached(n)]
       \/ /\ unsynced[n]
          /\ UNCHANGED durInc
    /\ unsynced' = [unsynced EXCEPT ![n] = FALSE]
    /\ prevMax' = [prevMax EXCEPT ![n] = Max(@, inc[n])]
    /\ inc' = [inc EXCEPT ![n] = 0]
    /\ retry' = [retry EXCEPT ![n] = FALSE]
    /\ dev' = [dev EXCEPT ![n] = 0]
    /\ sinceTick' = [sinceTick EXCEPT ![n] = 0]
    /\ pinc' = [pinc EXCEPT ![n] = NoPeers]
    /\ pstat' = [pstat EXCEPT ![n] = [p \in Nodes |-> "none"]]
    /\ silent' = [silent EXCEPT ![n] = NoPeers]
    /\ pmax' = [pmax EXCEPT ![n] = NoPeers]
    /\ upFor' = [upFor EXCEPT ![n] = 0]
    /\ downFor' = [downFor EXCEPT ![n] = 0]
    \* its last pings may still be in flight, to any of the others
    /\ \E to \in SUBSET (IF inc[n] # 0 THEN Nodes \ {n} ELSE {}) :
          msgs' = msgs \cup {[from |-> n, to |-> o, inc |-> inc[n], age |-> 0] : o \in to}
    /\ UNCHANGED <<derrs, pauses>>

\* A new process, with a fresh clock; it starts by advancing its incarnation.
Restart(n) ==
    /\ status[n] = "down"
    /\ status' = [status EXCEPT ![n] = "up"]
    /\ downFor' = [downFor EXCEPT ![n] = 0]
    /\ UNCHANGED <<durInc, unsynced, inc, retry, dev, sinceTick, pinc, pstat, silent,
                   msgs, upFor, prevMax, pmax, crashes, derrs, pauses>>

\* NodePause: the node executes nothing while time (and its clock) goes on.
\* (A booting node that pauses only advances later, as after AdvanceFailed.)
\* upFor restarts at Resume.
Pause(n) ==
    /\ Running(n)
    /\ pauses < MaxPauses
    /\ pauses' = pauses + 1
    /\ status' = [status EXCEPT ![n] = "paused"]
    /\ upFor' = [upFor EXCEPT ![n] = 0]
    /\ UNCHANGED <<durInc, unsynced, inc, retry, dev, sinceTick, pinc, pstat,
                   silent, msgs, downFor, prevMax, pmax,
                   crashes, derrs>>

Resume(n) ==
    /\ status[n] = "paused"
    /\ status' = [status EXCEPT ![n] = "up"]
    /\ upFor' = [upFor EXCEPT ![n] = 0]
    /\ UNCHANGED <<durInc, unsynced, inc, retry, dev, sinceTick, pinc, pstat,
                   silent, msgs, downFor, prevMax, pmax, crashes,
                   derrs, pauses>>

-----------------------------------------------------------------------------
Next ==
    \/ Tick
    \/ \E m \in msgs : Deliver(m) \/ Drop(m)
    \/ \E p, o \in Nodes : Ping(p, o)
    \/ \E n \in Nodes :
          \/ Advance(n) \/ AdvanceFailed(n) \/ DetectorTick(n)
          \/ Crash(n) \/ Restart(n) \/ Pause(n) \/ Resume(n)

\* Time advances and ready work runs.  Nothing is
\* assumed of the environment: a crashed or paused node may never come
\* back, a message may be lost.
Fairness ==
    /\ WF_vars(Tick)
    /\ \A n \in Nodes : WF_vars(Advance(n)) /\ WF_vars(DetectorTick(n))

Spec == Init /\ [][Next]_vars /\ Fairness

-----------------------------------------------------------------------------
TypeOK ==
    /\ status \in [Nodes -> {"up", "paused", "down"}]
    /\ durInc \in [Nodes -> 0..MaxInc]
    /\ unsynced \in [Nodes -> BOOLEAN]
    /\ \A n \in Nodes : Cached(n) <= MaxInc
    /\ inc \in [Nodes -> 0..MaxInc]
    /\ retry \in [Nodes -> BOOLEAN]
    /\ dev \in [Nodes -> Band]
    /\ sinceTick \in [Nodes -> 0..Interval]
    /\ pinc \in [Nodes -> [Nodes -> 0..MaxInc]]
    /\ pstat \in [Nodes -> [Nodes -> {"none", "alive", "suspect"}]]
    /\ silent \in [Nodes -> [Nodes -> 0..SuspectAfter]]
    /\ msgs \subseteq Msg
    /\ upFor \in [Nodes -> 0..Detect]
    /\ downFor \in [Nodes -> 0..(Detect + InFlight)]
    /\ prevMax \in [Nodes -> 0..MaxInc]
    /\ pmax \in [Nodes -> [Nodes -> 0..MaxInc]]
    /\ crashes \in 0..MaxCrashes
    /\ derrs \in 0..MaxDiskErrors
    /\ pauses \in 0..MaxPauses

\* Every boot uses an incarnation above any an earlier boot of the node used.
IncarnationMonotonic == \A n \in Nodes : inc[n] # 0 => inc[n] > prevMax[n]

\* While an observer runs (one detector), the incarnation it holds for a peer
\* is never below one it held before.
PeerIncarnationMonotonic == \A o, p \in Nodes : pinc[o][p] >= pmax[o][p]

\* Bounded time: a peer down for Detect + InFlight (its last message has
\* arrived by then) is suspected by every observer that knew it and whose
\* detector has run for Detect since it started or the node resumed.
CrashedNodeSuspected ==
    \A o, p \in Nodes :
        (/\ Running(o)
         /\ upFor[o] >= Detect
         /\ status[p] = "down"
         /\ downFor[p] >= Detect + InFlight
         /\ pstat[o][p] # "none")
        => pstat[o][p] = "suspect"

\* Unbounded: an alive peer that is down is eventually suspected, unless it
\* restarts or the observer stops running first.
CrashedNodeEventuallySuspected ==
    \A o \in Nodes : \A p \in Nodes \ {o} :
        (Running(o) /\ status[p] = "down" /\ pstat[o][p] = "alive")
            ~> (pstat[o][p] = "suspect" \/ ~Running(o) \/ status[p] # "down")

=============================================================================
