//! Linearizability of client histories: a Wing–Gong checker with Lowe's
//! memoization (the "WGL" algorithm), against sequential specifications
//! written as Stateright [`SequentialSpec`]s.
//!
//! A [`History`] records, per object, what clients saw: each client is a
//! thread that invokes one operation at a time ([`History::on_invoke`]) and
//! may see it return ([`History::on_return`]). An operation that never
//! returns — the client timed out or gave up — stays in flight forever: it
//! may have taken effect at any point after its invocation, or never. A
//! client that abandons an operation and goes on must go on under a new
//! thread id, so the abandoned operation stays in flight.
//!
//! [`History::check`] searches for a linearization: a total order of the
//! completed operations (and any subset of the in-flight ones) that respects
//! real time (an operation that returned before another was invoked comes
//! first) and that the specification, run sequentially in that order,
//! answers with exactly the values the clients saw. The search is Wing and
//! Gong's: repeatedly linearize an operation whose invocation is minimal
//! among those left, backtracking when the next return event belongs to an
//! operation not yet linearized; Lowe's optimization caches every
//! (set of linearized operations, specification state) configuration
//! already explored, so none is explored twice. In-flight operations are
//! never forced: once every completed operation is linearized the history
//! is linearizable, the rest never took effect. Two reductions keep
//! abandoned operations from multiplying the search, both sound because
//! they only drop configurations dominated by one that is kept:
//! - an in-flight operation that would leave the state as it is (a read)
//!   is never linearized: leaving it pending is at least as permissive;
//! - of in-flight operations that are equal, only the earliest invoked of
//!   those not linearized yet is a candidate (they are interchangeable, and
//!   the earlier one may go anywhere the later one may).
//!
//! [`LinearizabilityTester`] (Stateright's own checker, an unmemoized
//! depth-first search) gives the same verdicts; [`History::tester`] builds
//! one from a history, and the unit tests compare the two on random
//! histories. The scenarios use [`History::check`], which is fast enough
//! to run after every event.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Debug};

pub use stateright::semantics::{ConsistencyTester, LinearizabilityTester, SequentialSpec};

/// A thread (one client's sequence of operations) in a [`History`].
pub type ThreadId = u64;

/// A counter that only goes up: each [`CounterOp::Increment`] adds one and
/// returns the new value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Counter(pub u64);

/// Operations of a [`Counter`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CounterOp {
    /// Add one; returns the new value.
    Increment,
}

impl SequentialSpec for Counter {
    type Op = CounterOp;
    type Ret = u64;

    fn invoke(&mut self, op: &CounterOp) -> u64 {
        match op {
            CounterOp::Increment => {
                self.0 += 1;
                self.0
            }
        }
    }
}

/// A read/write register holding an optional value (`None` until the
/// first write).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Register<V>(pub Option<V>);

/// Operations of a [`Register`]; both return `Option<V>`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RegisterOp<V> {
    /// Write a value; returns it (`Some(value)`).
    Set(V),
    /// Read; returns the value held.
    Get,
}

impl<V: Clone + PartialEq> SequentialSpec for Register<V> {
    type Op = RegisterOp<V>;
    type Ret = Option<V>;

    fn invoke(&mut self, op: &RegisterOp<V>) -> Option<V> {
        match op {
            RegisterOp::Set(value) => {
                self.0 = Some(value.clone());
                self.0.clone()
            }
            RegisterOp::Get => self.0.clone(),
        }
    }
}

/// One operation of a [`History`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation<Op, Ret> {
    /// The thread that invoked it.
    pub thread: ThreadId,
    /// What was invoked.
    pub op: Op,
    /// The position of the invocation among the history's events.
    pub invoked: u64,
    /// The position of the return among the history's events and the value
    /// returned; `None` while in flight (forever, if abandoned).
    pub returned: Option<(u64, Ret)>,
}

/// A concurrent history of operations on one object, as its clients saw it.
#[derive(Clone, Debug)]
pub struct History<S: SequentialSpec> {
    operations: Vec<Operation<S::Op, S::Ret>>,
    in_flight: BTreeMap<ThreadId, usize>,
    events: u64,
}

impl<S: SequentialSpec> Default for History<S> {
    fn default() -> Self {
        Self {
            operations: Vec::new(),
            in_flight: BTreeMap::new(),
            events: 0,
        }
    }
}

/// Why a [`History`] has no linearization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotLinearizable {
    /// Operations in the history.
    pub operations: usize,
    /// Of which completed.
    pub completed: usize,
    /// The most operations any explored order linearized.
    pub deepest: usize,
    /// The operation (index into [`History::operations`]) whose return the
    /// deepest order could not get past: it could not be linearized there.
    pub stuck_at: usize,
    /// A description of the operations around `stuck_at`.
    pub context: String,
}

impl fmt::Display for NotLinearizable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no linearization of {} operations ({} completed): the deepest order linearized {} \
             and could not place operation #{}; operations invoked before it returned, latest last:\n{}",
            self.operations, self.completed, self.deepest, self.stuck_at, self.context
        )
    }
}

impl<S: SequentialSpec> History<S> {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Operations recorded (completed or in flight).
    pub fn len(&self) -> usize {
        self.operations.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.operations.is_empty()
    }

    /// The operations, in invocation order.
    pub fn operations(&self) -> &[Operation<S::Op, S::Ret>] {
        &self.operations
    }

    /// Records that `thread` invoked `op`. A thread has at most one
    /// operation in flight.
    pub fn on_invoke(&mut self, thread: ThreadId, op: S::Op) -> Result<(), String> {
        if let Some(&index) = self.in_flight.get(&thread) {
            return Err(format!(
                "thread {thread} invoked an operation with operation #{index} still in flight"
            ));
        }
        self.events += 1;
        self.in_flight.insert(thread, self.operations.len());
        self.operations.push(Operation {
            thread,
            op,
            invoked: self.events,
            returned: None,
        });
        Ok(())
    }

    /// Records that the operation in flight on `thread` returned `ret`.
    pub fn on_return(&mut self, thread: ThreadId, ret: S::Ret) -> Result<(), String> {
        let Some(index) = self.in_flight.remove(&thread) else {
            return Err(format!("thread {thread} returned with no operation in flight"));
        };
        self.events += 1;
        self.operations[index].returned = Some((self.events, ret));
        Ok(())
    }
}

impl<S> History<S>
where
    S: SequentialSpec + Clone + Ord,
    S::Op: Clone + Debug + PartialEq,
    S::Ret: Clone + Debug + PartialEq,
{
    /// Searches for a linearization of the history from the initial state
    /// `init` (see the module docs): the linearized operations in order
    /// (operations left in flight that never took effect are absent), or
    /// why there is none.
    pub fn check(&self, init: &S) -> Result<Linearization<S>, NotLinearizable> {
        Search::new(&self.operations).run(init, None)
    }

    /// [`History::check`] for a history that has grown since `previous`
    /// was found for it (operations invoked, in-flight ones returned): first
    /// tries to extend `previous` (cheap when the history grew by a little),
    /// and searches the whole history only if that fails. The verdict is
    /// the same as [`History::check`]'s: every operation in `previous` was
    /// invoked before anything recorded since, so it can precede all of it,
    /// and `previous` is kept only if the operations of it that returned
    /// since returned what it says.
    pub fn check_extending(&self, init: &S, previous: &Linearization<S>) -> Result<Linearization<S>, NotLinearizable> {
        let consistent = previous.order.iter().all(|(index, ret)| {
            self.operations
                .get(*index)
                .is_some_and(|operation| operation.returned.as_ref().is_none_or(|(_, returned)| returned == ret))
        });
        if consistent {
            if let Ok(extended) = Search::new(&self.operations).run(init, Some(previous)) {
                return Ok(extended);
            }
        }
        self.check(init)
    }

    /// The operations of `linearization` in order, with what the
    /// specification returned for each.
    pub fn ops(&self, linearization: &Linearization<S>) -> Vec<(S::Op, S::Ret)> {
        linearization
            .order
            .iter()
            .map(|(index, ret)| (self.operations[*index].op.clone(), ret.clone()))
            .collect()
    }

    /// Stateright's checker loaded with this history: same verdicts as
    /// [`History::check`], by an exponential search (for cross-checking).
    pub fn tester(&self, init: S) -> LinearizabilityTester<ThreadId, S> {
        let mut events: Vec<(u64, usize, bool)> = Vec::new();
        for (index, operation) in self.operations.iter().enumerate() {
            events.push((operation.invoked, index, true));
            if let Some((returned, _)) = &operation.returned {
                events.push((*returned, index, false));
            }
        }
        events.sort_unstable();
        let mut tester = LinearizabilityTester::new(init);
        for (_, index, is_invoke) in events {
            let operation = &self.operations[index];
            let recorded = match (&operation.returned, is_invoke) {
                (_, true) => tester.on_invoke(operation.thread, operation.op.clone()).map(|_| ()),
                (Some((_, ret)), false) => tester.on_return(operation.thread, ret.clone()).map(|_| ()),
                (None, false) => Ok(()),
            };
            // The history was validated as it was recorded.
            debug_assert!(recorded.is_ok(), "{recorded:?}");
        }
        tester
    }
}

/// A linearization found by [`History::check`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Linearization<S: SequentialSpec> {
    /// The linearized operations (indices into [`History::operations`]) in
    /// order, with what the specification returned for each.
    pub order: Vec<(usize, S::Ret)>,
    /// The specification's state after them.
    pub state: S,
}

const HEAD: usize = 0;

/// The WGL search over a doubly linked list of call and return events.
struct Search<'h, Op, Ret> {
    operations: &'h [Operation<Op, Ret>],
    /// Node `n` (1-based; 0 is the head, `tail` the tail sentinel) is the
    /// call (`is_call`) or return event of operation `op_of[n]`.
    op_of: Vec<usize>,
    is_call: Vec<bool>,
    /// The return node of each call node.
    partner: Vec<usize>,
    /// The call node of each operation.
    call_node: Vec<usize>,
    prev: Vec<usize>,
    next: Vec<usize>,
    /// For an in-flight operation, the previous in-flight operation with an
    /// equal `op` (by invocation).
    earlier_twin: Vec<Option<usize>>,
}

impl<'h, Op: Clone + Debug + PartialEq, Ret: Clone + Debug + PartialEq> Search<'h, Op, Ret> {
    fn new(operations: &'h [Operation<Op, Ret>]) -> Self {
        // Events in real-time order; in-flight operations return after
        // everything (they may take effect at any point after invocation).
        let mut events: Vec<(u64, usize, bool)> = Vec::with_capacity(2 * operations.len());
        for (index, operation) in operations.iter().enumerate() {
            events.push((operation.invoked, index, true));
            let returned = operation.returned.as_ref().map_or(u64::MAX, |(at, _)| *at);
            events.push((returned, index, false));
        }
        events.sort_unstable_by_key(|&(at, index, is_call)| (at, index, !is_call));
        let nodes = events.len() + 2;
        let tail = nodes - 1;
        let mut op_of = vec![usize::MAX; nodes];
        let mut is_call = vec![false; nodes];
        let mut partner = vec![0; nodes];
        let mut call_node = vec![0; operations.len()];
        for (position, &(_, index, call)) in events.iter().enumerate() {
            let node = position + 1;
            op_of[node] = index;
            is_call[node] = call;
            if call {
                call_node[index] = node;
            } else {
                partner[call_node[index]] = node;
            }
        }
        let prev = (0..nodes).map(|node| node.saturating_sub(1)).collect();
        let next = (0..nodes).map(|node| (node + 1).min(tail)).collect();
        let mut earlier_twin = vec![None; operations.len()];
        let mut pending: Vec<usize> = Vec::new();
        for (index, operation) in operations.iter().enumerate() {
            if operation.returned.is_some() {
                continue;
            }
            earlier_twin[index] = pending
                .iter()
                .rev()
                .copied()
                .find(|&other| operations[other].op == operation.op);
            pending.push(index);
        }
        Self {
            operations,
            op_of,
            is_call,
            partner,
            call_node,
            prev,
            next,
            earlier_twin,
        }
    }

    fn unlink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = next;
        self.prev[next] = prev;
    }

    fn relink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = node;
        self.prev[next] = node;
    }

    /// Removes a call and its return from the list.
    fn lift(&mut self, call: usize) {
        self.unlink(call);
        self.unlink(self.partner[call]);
    }

    /// Undoes [`Search::lift`].
    fn unlift(&mut self, call: usize) {
        self.relink(self.partner[call]);
        self.relink(call);
    }

    /// Searches from `init`, or (`prefix`) only for extensions of a
    /// linearization of part of the history.
    fn run<S>(mut self, init: &S, prefix: Option<&Linearization<S>>) -> Result<Linearization<S>, NotLinearizable>
    where
        S: SequentialSpec<Op = Op, Ret = Ret> + Clone + Ord,
    {
        let operations = self.operations;
        let mut remaining = operations.iter().filter(|op| op.returned.is_some()).count();
        let completed = remaining;
        let mut linearized = Bits::new(operations.len());
        let mut state = init.clone();
        let mut order = Vec::new();
        if let Some(prefix) = prefix {
            for (index, _) in &prefix.order {
                self.lift(self.call_node[*index]);
                linearized.set(*index, true);
                if operations[*index].returned.is_some() {
                    remaining -= 1;
                }
            }
            order.clone_from(&prefix.order);
            state = prefix.state.clone();
        }
        // (call node, state before, what the spec returned).
        let mut stack: Vec<(usize, S, Ret)> = Vec::new();
        let mut explored: BTreeSet<(Bits, S)> = BTreeSet::new();
        let mut deepest = (0, usize::MAX);
        let mut entry = self.next[HEAD];
        while remaining > 0 {
            let index = self.op_of[entry];
            if self.is_call[entry] {
                let operation = &operations[index];
                let candidate = match &operation.returned {
                    Some((_, expected)) => {
                        let mut after = state.clone();
                        let ret = after.invoke(&operation.op);
                        (ret == *expected).then_some((after, ret))
                    }
                    None if self.earlier_twin[index].is_some_and(|twin| !linearized.get(twin)) => None,
                    None => {
                        let mut after = state.clone();
                        let ret = after.invoke(&operation.op);
                        (after != state).then_some((after, ret))
                    }
                };
                if let Some((after, ret)) = candidate {
                    let mut with = linearized.clone();
                    with.set(index, true);
                    if explored.insert((with.clone(), after.clone())) {
                        stack.push((entry, std::mem::replace(&mut state, after), ret));
                        linearized = with;
                        self.lift(entry);
                        if operation.returned.is_some() {
                            remaining -= 1;
                        }
                        entry = self.next[HEAD];
                        continue;
                    }
                }
                entry = self.next[entry];
            } else {
                // The return of an operation not linearized yet: no order
                // with this prefix can get past it.
                if deepest.1 == usize::MAX || stack.len() > deepest.0 {
                    deepest = (stack.len(), index);
                }
                let Some((call, before, _)) = stack.pop() else {
                    return Err(self.failure(completed, deepest));
                };
                let undone = self.op_of[call];
                linearized.set(undone, false);
                state = before;
                self.unlift(call);
                if operations[undone].returned.is_some() {
                    remaining += 1;
                }
                entry = self.next[call];
            }
        }
        order.extend(stack.into_iter().map(|(call, _, ret)| (self.op_of[call], ret)));
        Ok(Linearization { order, state })
    }

    fn failure(&self, completed: usize, (deepest, stuck_at): (usize, usize)) -> NotLinearizable {
        let operations = self.operations;
        let stuck_returned = operations
            .get(stuck_at)
            .and_then(|op| op.returned.as_ref())
            .map_or(u64::MAX, |(at, _)| *at);
        let before: Vec<usize> = (0..operations.len())
            .filter(|&index| operations[index].invoked < stuck_returned)
            .collect();
        let context = before
            .iter()
            .skip(before.len().saturating_sub(12))
            .map(|&index| {
                let operation = &operations[index];
                let marker = if index == stuck_at { " <- stuck" } else { "" };
                match &operation.returned {
                    Some((at, ret)) => format!(
                        "  #{index} thread {} [{}, {at}] {:?} -> {ret:?}{marker}",
                        operation.thread, operation.invoked, operation.op
                    ),
                    None => format!(
                        "  #{index} thread {} [{}, in flight] {:?}{marker}",
                        operation.thread, operation.invoked, operation.op
                    ),
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        NotLinearizable {
            operations: operations.len(),
            completed,
            deepest,
            stuck_at,
            context,
        }
    }
}

/// A fixed-size bit set (the linearized operations), ordered for the
/// explored-configuration cache.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(len: usize) -> Self {
        Self(vec![0; len.div_ceil(64)])
    }

    fn get(&self, index: usize) -> bool {
        self.0[index / 64] & (1 << (index % 64)) != 0
    }

    fn set(&mut self, index: usize, value: bool) {
        let mask = 1u64 << (index % 64);
        if value {
            self.0[index / 64] |= mask;
        } else {
            self.0[index / 64] &= !mask;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Reg = Register<&'static str>;

    #[allow(clippy::type_complexity)]
    fn ops_of<S>(history: &History<S>, init: &S) -> Result<Vec<(S::Op, S::Ret)>, NotLinearizable>
    where
        S: SequentialSpec + Clone + Ord,
        S::Op: Clone + Debug + PartialEq,
        S::Ret: Clone + Debug + PartialEq,
    {
        history.check(init).map(|linearization| history.ops(&linearization))
    }

    /// Asserts `found` is a linearization of `history`: it replays on the
    /// spec, agrees with every reply, includes every completed operation
    /// once, and respects real-time order.
    fn assert_linearization<S>(history: &History<S>, init: &S, found: &Linearization<S>)
    where
        S: SequentialSpec + Clone + Ord + Debug,
        S::Op: Clone + Debug + PartialEq,
        S::Ret: Clone + Debug + PartialEq,
    {
        let mut state = init.clone();
        let mut seen = BTreeSet::new();
        for (position, (index, ret)) in found.order.iter().enumerate() {
            let operation = &history.operations()[*index];
            assert!(seen.insert(*index), "#{index} twice");
            assert_eq!(&state.invoke(&operation.op), ret);
            if let Some((_, returned)) = &operation.returned {
                assert_eq!(returned, ret);
            }
            for (later, _) in &found.order[position + 1..] {
                let later_returned = history.operations()[*later].returned.as_ref().map(|(at, _)| *at);
                assert!(
                    later_returned.is_none_or(|at| at > operation.invoked),
                    "#{later} before #{index}"
                );
            }
        }
        assert_eq!(state, found.state);
        for (index, operation) in history.operations().iter().enumerate() {
            assert!(
                operation.returned.is_none() || seen.contains(&index),
                "#{index} missing"
            );
        }
    }

    /// Checks `history` in full and by extending `previous`; both must agree.
    fn check_both<S>(history: &History<S>, init: &S, previous: &mut Option<Linearization<S>>) -> bool
    where
        S: SequentialSpec + Clone + Ord + Debug,
        S::Op: Clone + Debug + PartialEq,
        S::Ret: Clone + Debug + PartialEq,
    {
        let full = history.check(init);
        let extended = match previous {
            Some(previous) => history.check_extending(init, previous),
            None => history.check(init),
        };
        assert_eq!(full.is_ok(), extended.is_ok(), "{history:?}");
        for found in [&full, &extended].into_iter().flatten() {
            assert_linearization(history, init, found);
        }
        if let Ok(found) = extended {
            *previous = Some(found);
        }
        full.is_ok()
    }

    /// `(operations, completed, deepest, stuck_at)` of a rejection.
    fn rejection<S: SequentialSpec>(result: Result<Linearization<S>, NotLinearizable>) -> (usize, usize, usize, usize) {
        let failure = result.err().expect("the history is rejected");
        (failure.operations, failure.completed, failure.deepest, failure.stuck_at)
    }

    fn counter_history(events: &[(ThreadId, Option<u64>)]) -> History<Counter> {
        // `(thread, None)` invokes an increment, `(thread, Some(v))` returns v.
        let mut history = History::new();
        for &(thread, ret) in events {
            match ret {
                None => history.on_invoke(thread, CounterOp::Increment),
                Some(value) => history.on_return(thread, value),
            }
            .expect("well-formed");
        }
        history
    }

    #[test]
    fn sequential_counter_that_skips_a_value_is_rejected() {
        // Two sequential increments; the second returns 3 (skips 2).
        let history = counter_history(&[(0, None), (0, Some(1)), (0, None), (0, Some(3))]);
        let failure = history.check(&Counter(0)).expect_err("3 after 1 skips an increment");
        assert_eq!(
            (failure.operations, failure.completed, failure.deepest, failure.stuck_at),
            (2, 2, 1, 1)
        );
        assert_eq!(history.tester(Counter(0)).serialized_history(), None);
        // The same history with the right value is accepted.
        let history = counter_history(&[(0, None), (0, Some(1)), (0, None), (0, Some(2))]);
        assert_eq!(
            ops_of(&history, &Counter(0)),
            Ok(vec![(CounterOp::Increment, 1), (CounterOp::Increment, 2)])
        );
    }

    #[test]
    fn counter_values_out_of_real_time_order_are_rejected() {
        // Thread 0's increment returned 2 before thread 1's, which returned
        // 1, was invoked: 1 must come first.
        let history = counter_history(&[(0, None), (0, Some(2)), (1, None), (1, Some(1))]);
        assert_eq!(rejection(history.check(&Counter(0))), (2, 2, 0, 0));
        assert_eq!(history.tester(Counter(0)).serialized_history(), None);
        // Overlapping, the same values are fine.
        let history = counter_history(&[(0, None), (1, None), (0, Some(2)), (1, Some(1))]);
        assert_eq!(
            ops_of(&history, &Counter(0)),
            Ok(vec![(CounterOp::Increment, 1), (CounterOp::Increment, 2)])
        );
    }

    #[test]
    fn counter_increment_applied_twice_is_rejected() {
        // One increment, retried and applied twice, returns 2: no order of
        // the single operation gives 2.
        let history = counter_history(&[(0, None), (0, Some(2))]);
        assert_eq!(rejection(history.check(&Counter(0))), (1, 1, 0, 0));
        // Two increments returning the same value: one of them is lost.
        let history = counter_history(&[(0, None), (1, None), (0, Some(1)), (1, Some(1))]);
        assert_eq!(rejection(history.check(&Counter(0))), (2, 2, 1, 1));
        assert_eq!(history.tester(Counter(0)).serialized_history(), None);
    }

    #[test]
    fn stale_register_read_after_a_completed_write_is_rejected() {
        let mut history = History::<Reg>::new();
        history.on_invoke(0, RegisterOp::Set("a")).unwrap();
        history.on_return(0, Some("a")).unwrap();
        history.on_invoke(0, RegisterOp::Set("b")).unwrap();
        history.on_return(0, Some("b")).unwrap();
        // Thread 1 reads after both writes completed, and sees the old value.
        history.on_invoke(1, RegisterOp::Get).unwrap();
        history.on_return(1, Some("a")).unwrap();
        let failure = history.check(&Register(None)).expect_err("stale read");
        assert_eq!(
            (failure.operations, failure.completed, failure.deepest, failure.stuck_at),
            (3, 3, 2, 2)
        );
        assert!(
            failure
                .to_string()
                .contains("#2 thread 1 [5, 6] Get -> Some(\"a\") <- stuck"),
            "{failure}"
        );
        assert_eq!(history.tester(Register(None)).serialized_history(), None);
        // A read of a value never written is rejected too.
        let mut history = History::<Reg>::new();
        history.on_invoke(0, RegisterOp::Get).unwrap();
        history.on_return(0, Some("z")).unwrap();
        assert_eq!(rejection(history.check(&Register(None))), (1, 1, 0, 0));
    }

    #[test]
    fn concurrent_register_history_with_an_abandoned_write_that_took_effect_is_accepted() {
        let mut history = History::<Reg>::new();
        history.on_invoke(0, RegisterOp::Set("a")).unwrap();
        history.on_return(0, Some("a")).unwrap();
        // Thread 1 writes "b" and gives up (timed out): in flight forever;
        // the client goes on as thread 2.
        history.on_invoke(1, RegisterOp::Set("b")).unwrap();
        history.on_invoke(0, RegisterOp::Get).unwrap();
        history.on_invoke(2, RegisterOp::Get).unwrap();
        history.on_return(0, Some("a")).unwrap();
        history.on_return(2, Some("b")).unwrap();
        // Another read, later, still sees "b"; then "a" again would be stale.
        history.on_invoke(0, RegisterOp::Get).unwrap();
        history.on_return(0, Some("b")).unwrap();
        assert_eq!(
            ops_of(&history, &Register(None)),
            Ok(vec![
                (RegisterOp::Set("a"), Some("a")),
                (RegisterOp::Get, Some("a")),
                (RegisterOp::Set("b"), Some("b")),
                (RegisterOp::Get, Some("b")),
                (RegisterOp::Get, Some("b")),
            ])
        );
        assert!(history.tester(Register(None)).serialized_history().is_some());
        history.on_invoke(0, RegisterOp::Get).unwrap();
        history.on_return(0, Some("a")).unwrap();
        assert_eq!(rejection(history.check(&Register(None))), (6, 5, 5, 5));
        assert_eq!(history.tester(Register(None)).serialized_history(), None);
    }

    #[test]
    fn abandoned_increments_may_take_effect_late_or_never() {
        // Thread 0 increments and abandons it (in flight forever); as thread
        // 1 it increments again and sees 2 (the abandoned one took effect),
        // then thread 2 sees 3.
        let history = counter_history(&[(0, None), (1, None), (1, Some(2)), (2, None), (2, Some(3))]);
        assert_eq!(
            ops_of(&history, &Counter(0)),
            Ok(vec![
                (CounterOp::Increment, 1),
                (CounterOp::Increment, 2),
                (CounterOp::Increment, 3),
            ])
        );
        // Or it never took effect.
        let history = counter_history(&[(0, None), (1, None), (1, Some(1)), (2, None), (2, Some(2))]);
        assert_eq!(
            ops_of(&history, &Counter(0)),
            Ok(vec![(CounterOp::Increment, 1), (CounterOp::Increment, 2)])
        );
        // It took effect late: between thread 1's and thread 2's.
        let history = counter_history(&[(0, None), (1, None), (1, Some(1)), (2, None), (2, Some(3))]);
        let _linearization = history.check(&Counter(0)).expect("linearizable");
        // But one abandoned increment cannot account for two skipped values.
        let history = counter_history(&[(0, None), (1, None), (1, Some(1)), (2, None), (2, Some(4))]);
        assert_eq!(rejection(history.check(&Counter(0))), (3, 2, 2, 2));
        assert_eq!(history.tester(Counter(0)).serialized_history(), None);
        // Nor can it take effect before it was invoked.
        let history = counter_history(&[(1, None), (1, Some(2)), (0, None)]);
        assert_eq!(rejection(history.check(&Counter(0))), (2, 1, 0, 0));
        assert_eq!(history.tester(Counter(0)).serialized_history(), None);
    }

    #[test]
    fn malformed_histories_are_refused() {
        let mut history = History::<Counter>::new();
        history.on_invoke(0, CounterOp::Increment).unwrap();
        assert_eq!(
            history.on_invoke(0, CounterOp::Increment),
            Err("thread 0 invoked an operation with operation #0 still in flight".to_string())
        );
        assert_eq!(
            history.on_return(1, 1),
            Err("thread 1 returned with no operation in flight".to_string())
        );
        let _linearization = history.check(&Counter(0)).expect("linearizable");
    }

    #[test]
    fn many_abandoned_increments_do_not_blow_up_the_search() {
        // 40 increments abandoned up front, then 200 sequential increments
        // that see 20 of them take effect at once, and a wrong last value.
        let mut events: Vec<(ThreadId, Option<u64>)> = (0..40).map(|thread| (thread, None)).collect();
        for step in 0..200u64 {
            let value = if step < 100 { step + 1 } else { step + 21 };
            events.push((1_000 + step, None));
            events.push((1_000 + step, Some(value)));
        }
        let history = counter_history(&events);
        assert_eq!(history.check(&Counter(0)).map(|found| found.order.len()), Ok(220));
        events.push((5_000, None));
        events.push((5_000, Some(500)));
        assert_eq!(
            rejection(counter_history(&events).check(&Counter(0))),
            (241, 201, 240, 240)
        );
    }

    /// A small deterministic generator (tests only).
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, bound: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % bound
        }
    }

    /// A simulated client: (thread, phase (0 idle, 1 invoked, 2 took
    /// effect), operation, its register result, its counter result).
    type Client = (
        ThreadId,
        u8,
        Option<RegisterOp<&'static str>>,
        Option<&'static str>,
        u64,
    );

    /// Random concurrent histories of `threads` clients over a real
    /// register, each operation taking effect at one point between its
    /// invocation and return (abandoned ones maybe never), and sometimes a
    /// corrupted return; both checkers must agree.
    #[test]
    fn agrees_with_stateright_on_random_histories() {
        let values = ["a", "b", "c"];
        let (mut accepted, mut rejected) = (0, 0);
        for seed in 0..2_000u64 {
            let mut rng = Lcg(seed);
            let mut register: Option<&'static str> = None;
            let mut counter = 0u64;
            let mut reg_history = History::<Reg>::new();
            let mut counter_history = History::<Counter>::new();
            let mut clients: Vec<Client> = (0..3).map(|client| (client, 0, None, None, 0)).collect();
            let mut next_thread = 3;
            let (mut reg_previous, mut counter_previous) = (None, None);
            let (mut reg_ok, mut counter_ok) = (true, true);
            let operations = 3 + rng.below(6);
            let mut invoked = 0;
            for _ in 0..200 {
                let recorded = reg_history.len()
                    + counter_history
                        .operations()
                        .iter()
                        .filter(|op| op.returned.is_some())
                        .count();
                let client = rng.below(3) as usize;
                let (thread, phase, op, ret, counter_ret) = &mut clients[client];
                match *phase {
                    0 if invoked < operations => {
                        invoked += 1;
                        let new_op = match rng.below(3) {
                            0 => RegisterOp::Get,
                            _ => RegisterOp::Set(values[rng.below(3) as usize]),
                        };
                        reg_history.on_invoke(*thread, new_op.clone()).unwrap();
                        counter_history.on_invoke(*thread, CounterOp::Increment).unwrap();
                        *op = Some(new_op);
                        *phase = 1;
                    }
                    1 => {
                        // Take effect, or (rarely) abandon without effect.
                        if rng.below(8) == 0 {
                            *thread = next_thread;
                            next_thread += 1;
                            *phase = 0;
                        } else {
                            *ret = Register(register).invoke(op.as_ref().unwrap());
                            if let Some(RegisterOp::Set(value)) = op {
                                register = Some(*value);
                            }
                            counter += 1;
                            *counter_ret = counter;
                            *phase = 2;
                        }
                    }
                    2 => {
                        if rng.below(6) == 0 {
                            // Took effect, then abandoned.
                            *thread = next_thread;
                            next_thread += 1;
                        } else {
                            let mut reg_ret = *ret;
                            let mut count_ret = *counter_ret;
                            if rng.below(10) == 0 {
                                reg_ret = Some(values[rng.below(3) as usize]);
                                count_ret = 1 + rng.below(counter + 1);
                            }
                            reg_history.on_return(*thread, reg_ret).unwrap();
                            counter_history.on_return(*thread, count_ret).unwrap();
                        }
                        *phase = 0;
                    }
                    _ => {}
                }
                if recorded
                    == reg_history.len()
                        + counter_history
                            .operations()
                            .iter()
                            .filter(|op| op.returned.is_some())
                            .count()
                {
                    continue;
                }
                // Checked incrementally as it grows, as the scenarios do.
                let reg_now = check_both(&reg_history, &Register(None), &mut reg_previous);
                let counter_now = check_both(&counter_history, &Counter(0), &mut counter_previous);
                // A history that is not linearizable stays so as it grows.
                assert!(reg_ok || !reg_now, "seed {seed}: rejected, then accepted");
                assert!(counter_ok || !counter_now, "seed {seed}: rejected, then accepted");
                (reg_ok, counter_ok) = (reg_now, counter_now);
            }
            let ours = reg_history.check(&Register(None)).is_ok();
            let theirs = reg_history.tester(Register(None)).serialized_history().is_some();
            assert_eq!(ours, theirs, "seed {seed}: register {reg_history:?}");
            let ours_counter = counter_history.check(&Counter(0)).is_ok();
            let theirs_counter = counter_history.tester(Counter(0)).serialized_history().is_some();
            assert_eq!(ours_counter, theirs_counter, "seed {seed}: counter {counter_history:?}");
            for verdict in [ours, ours_counter] {
                if verdict {
                    accepted += 1;
                } else {
                    rejected += 1;
                }
            }
        }
        assert!(
            accepted > 700 && rejected > 200,
            "{accepted} accepted, {rejected} rejected"
        );
    }
}
