--------------------------- MODULE KelpieAgentCreate ---------------------------
(***************************************************************************)
(* Creating an agent with its memory blocks through the agent server, with *)
(* one Idempotency-Key, while the server crashes under the request and the *)
(* client resends it (after a crash, or even after a success) (the seed's  *)
(* BUG-001: an agent without its blocks; BUG-002: a resend creating a      *)
(* second agent: TLC's shortest trace sends twice; the Stateright model    *)
(* also replays a resend after a crash lost the response).                 *)
(* Production: crates/kelpie-server/src/ops.rs (create_agent), over the    *)
(* runtime's keyed invocations (runtime.rs invoke_once: journal append,    *)
(* then the handler's writes and the journal completion in one fenced      *)
(* transaction).  Simulator: crates/kelpie-dst/src/scenarios/              *)
(* agent_server.rs (same invariant names).                                 *)
(*                                                                         *)
(* A create is a plan of invocations, each atomic (G3: one transaction,    *)
(* KelpieTransaction) and, with a key, run at most once per key (G4: the   *)
(* journal, KelpieJournal; a pending entry a crash left is run once, by    *)
(* the replay or by the retry, so "append, run, complete" is one step      *)
(* here).  Production plans one invocation of the agent's actor, named by  *)
(* the key, that writes the agent record (with the AGENTS index entry) and *)
(* every block record.  One request with the blocks Blocks; the client     *)
(* sends it up to MaxAttempts times.                                       *)
(*                                                                         *)
(* VARIABLES                                                               *)
(*   agents    ids of the committed agent records (with their AGENTS       *)
(*             index entries)                                              *)
(*   lists     id -> the block labels its committed record lists           *)
(*   blocks    committed block records: <<agent id, label>>                *)
(*   done      journal: <<actor, key>> whose invocation completed          *)
(*   attempt   the in-flight attempt: [id, pc], or NoAttempt               *)
(*   attempts  attempts so far                                             *)
(*   acked     agent ids in the client's successful responses              *)
(*   crashes   server crashes so far                                       *)
(*                                                                         *)
(* ACTIONS                                                                 *)
(*   Retry     the client sends the request (again after a crash, or even  *)
(*             after a success: a proxy's retry): the server               *)
(*             names the agent by the key (bug: a fresh id) and starts     *)
(*             its plan                                                    *)
(*   Invoke    the next invocation of the plan commits (skipped if its     *)
(*             key's journal entry completed: the stored reply answers)    *)
(*   Reply     the plan is done: the client gets the agent                 *)
(*   Crash     the server crashes: the in-flight attempt is lost (what     *)
(*             committed stays)                                            *)
(*                                                                         *)
(* INVARIANTS                                                              *)
(*   TypeOK                                                                *)
(*   AgentCreateAtomic  a committed agent lists exactly the requested      *)
(*                      blocks, each committed (in every state: a reader   *)
(*                      may look at any moment, so the bare agent of the   *)
(*                      bug is caught as soon as it commits)               *)
(*   IdempotentCreate   at most one agent for the request, and every       *)
(*                      successful response names it                       *)
(* PROPERTIES                                                              *)
(*   CreateEventuallySucceeds  the client gets the agent (crashes are      *)
(*                      bounded below MaxAttempts)                         *)
(*                                                                         *)
(* Bug switches (CONSTANT Bug; "none" = production):                       *)
(*   "server-nonatomic-create"  the agent is created bare, then each       *)
(*                      block and its attachment in later invocations      *)
(*   "server-ignore-idempotency-key"  every attempt gets a fresh agent id  *)
(*                      and no key (nothing is deduplicated)               *)
(***************************************************************************)
EXTENDS Integers, Sequences, FiniteSets

CONSTANTS Blocks,       \* labels of the requested blocks (model values)
          MaxAttempts,  \* attempts the client makes at most
          MaxCrashes,   \* server crashes (< MaxAttempts)
          Bug

ASSUME MaxCrashes < MaxAttempts

VARIABLES agents, lists, blocks, done, attempt, attempts, acked, crashes

vars == <<agents, lists, blocks, done, attempt, attempts, acked, crashes>>

Ids == 1..MaxAttempts
\* The agent id derived from the key (ops.rs derived_id("agent", key)).
Derived == 1
NoAttempt == [id |-> 0, pc |-> 0]

\* One invocation of a plan: the actor it runs on, its journal key, what it does.
Inv(actor, key, op, label) == [actor |-> actor, key |-> key, op |-> op, label |-> label]

\* A fixed order of the labels (the request's list).
Labels == CHOOSE s \in [1..Cardinality(Blocks) -> Blocks] :
              \A i, j \in DOMAIN s : i # j => s[i] # s[j]

\* ops::create_agent: the invocations a create of agent `id` runs, in order.
Plan(id) ==
    IF Bug = "server-nonatomic-create"
    THEN <<Inv(<<"agent", id>>, <<"create", 0>>, "bare", {})>>
         \o [i \in 1..(2 * Len(Labels)) |->
               IF i % 2 = 1
               THEN Inv(<<"block", id, Labels[(i + 1) \div 2]>>, <<"create", 0>>, "block",
                        {Labels[(i + 1) \div 2]})
               ELSE Inv(<<"agent", id>>, <<"attach", i \div 2>>, "attach", {Labels[i \div 2]})]
    ELSE <<Inv(<<"agent", id>>, <<"create", 0>>, "create", Blocks)>>

Init ==
    /\ agents = {}
    /\ lists = [a \in Ids |-> {}]
    /\ blocks = {}
    /\ done = {}
    /\ attempt = NoAttempt
    /\ attempts = 0
    /\ acked = {}
    /\ crashes = 0

\* The client sends the request: first, after its connection dropped, or
\* again after a success (a proxy's retry).
Retry ==
    /\ attempt = NoAttempt
    /\ attempts < MaxAttempts
    /\ attempts' = attempts + 1
    /\ attempt' = [id |-> IF Bug = "server-ignore-idempotency-key" THEN attempts + 1 ELSE Derived,
                   pc |-> 1]
    /\ UNCHANGED <<agents, lists, blocks, done, acked, crashes>>

\* The handler's writes for one invocation, in one transaction (inv.label:
\* the labels of the blocks it writes or attaches).
Apply(id, inv) ==
    CASE inv.op = "create" ->
            /\ agents' = agents \cup {id}
            /\ lists' = [lists EXCEPT ![id] = inv.label]
            /\ blocks' = blocks \cup {<<id, l>> : l \in inv.label}
      [] inv.op = "bare" ->
            /\ agents' = agents \cup {id}
            /\ lists' = [lists EXCEPT ![id] = {}]
            /\ UNCHANGED blocks
      [] inv.op = "block" ->
            /\ blocks' = blocks \cup {<<id, l>> : l \in inv.label}
            /\ UNCHANGED <<agents, lists>>
      [] inv.op = "attach" ->
            /\ lists' = [lists EXCEPT ![id] = @ \cup inv.label]
            /\ UNCHANGED <<agents, blocks>>

Invoke ==
    /\ attempt # NoAttempt
    /\ attempt.pc <= Len(Plan(attempt.id))
    /\ LET inv == Plan(attempt.id)[attempt.pc]
           keyed == Bug # "server-ignore-idempotency-key"
       IN IF keyed /\ <<inv.actor, inv.key>> \in done
          THEN UNCHANGED <<agents, lists, blocks, done>>
          ELSE /\ Apply(attempt.id, inv)
               /\ done' = IF keyed THEN done \cup {<<inv.actor, inv.key>>} ELSE done
    /\ attempt' = [attempt EXCEPT !.pc = @ + 1]
    /\ UNCHANGED <<attempts, acked, crashes>>

Reply ==
    /\ attempt # NoAttempt
    /\ attempt.pc > Len(Plan(attempt.id))
    /\ acked' = acked \cup {attempt.id}
    /\ attempt' = NoAttempt
    /\ UNCHANGED <<agents, lists, blocks, done, attempts, crashes>>

Crash ==
    /\ attempt # NoAttempt
    /\ crashes < MaxCrashes
    /\ crashes' = crashes + 1
    /\ attempt' = NoAttempt
    /\ UNCHANGED <<agents, lists, blocks, done, attempts, acked>>

Next == Retry \/ Invoke \/ Reply \/ Crash

Spec == Init /\ [][Next]_vars /\ WF_vars(Retry) /\ WF_vars(Invoke) /\ WF_vars(Reply)

-----------------------------------------------------------------------------
TypeOK ==
    /\ agents \subseteq Ids
    /\ lists \in [Ids -> SUBSET Blocks]
    /\ blocks \subseteq Ids \X Blocks
    /\ attempts \in 0..MaxAttempts
    /\ acked \subseteq Ids
    /\ crashes \in 0..MaxCrashes

AgentCreateAtomic ==
    \A a \in agents : lists[a] = Blocks /\ \A l \in Blocks : <<a, l>> \in blocks

\* (That an acknowledged agent exists holds by construction here: every
\* plan's first invocation writes it.  The simulator and the Stateright
\* model read it from the production store.)
IdempotentCreate ==
    /\ Cardinality(agents) <= 1
    /\ Cardinality(acked) <= 1

\* Once crashes stop (they are bounded), a retry completes.
CreateEventuallySucceeds == <>(acked # {})
=============================================================================
