//! [`Simulation`]: whole nodes of production code on one seeded thread.
//!
//! The loop, each step: if some task of a running node (or of the harness)
//! is ready, pick one with the seeded generator and poll it once; otherwise
//! advance virtual time to the next timeline event (a timer, a message
//! delivery, a fault tick, a restart) and process it. After every step, every
//! invariant is evaluated against the nodes' real state. The run stops at
//! `max_steps`, at `max_virtual_time`, when nothing is left to do, or at the
//! first invariant violation, which is reported with its name, the seed, the
//! step and the last trace events.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::Context;
use std::time::Duration;

use futures::future::BoxFuture;
use kelpie_core::rng::{Rng, SeededRng};
use kelpie_core::spawn::{panic_message, TaskExit, TaskHandle};
use kelpie_core::{NodeEnv, NodeId};

use crate::faults::{FaultConfig, FaultCounters, FaultKind};
use crate::seams::{crash_disk, SimClock, SimCoordination, SimDisk, SimSpawner, SimTransport, TrueClock};
use crate::trace::Trace;
use crate::world::{lock, Life, NodeClock, NodeMeta, Shared, TaskId, TimelineEvent, World};

/// Default bound on steps per run.
pub const MAX_STEPS_DEFAULT: u64 = 2_000_000;
/// Default bound on virtual time per run.
pub const MAX_VIRTUAL_TIME_DEFAULT: Duration = Duration::from_secs(60);
/// Trace events kept for failure reports.
pub const TRACE_TAIL_EVENTS: usize = 32;
/// Most nodes in one simulation.
pub const NODES_MAX: usize = 64;

type BootFn<N> = Arc<dyn Fn(NodeEnv) -> Arc<N> + Send + Sync>;
type CheckFn<N> = Box<dyn FnMut(&WorldView<'_, N>) -> Result<(), String>>;
type HarnessFn = Box<dyn FnOnce(HarnessEnv) -> BoxFuture<'static, ()>>;

/// Where a node is in its life, as invariants see it. Times are virtual time
/// since the start of the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeLife {
    /// Executing since `since` (boot or resume).
    Running {
        /// When it last started or resumed.
        since: Duration,
    },
    /// Paused since `since`: alive but executing nothing.
    Paused {
        /// When the pause began.
        since: Duration,
    },
    /// Crashed at `since`; will restart.
    Down {
        /// When it crashed.
        since: Duration,
    },
}

/// One node, as invariants see it.
pub struct NodeView<N> {
    /// Position in the simulation.
    pub index: usize,
    /// The node's id.
    pub id: NodeId,
    /// Running, paused or down.
    pub life: NodeLife,
    /// How many times the node has booted (1 after the first boot).
    pub boot: u64,
    /// The handle returned by the node's boot function, while not down.
    pub state: Option<Arc<N>>,
    /// The node's current clock rate deviation, in parts per million.
    pub clock_rate_ppm: i64,
}

/// The whole simulation, as invariants see it after an event.
pub struct WorldView<'a, N> {
    /// The step just taken.
    pub step: u64,
    /// Virtual time since the start.
    pub now: Duration,
    /// Every node.
    pub nodes: &'a [NodeView<N>],
    /// The fault configuration of the run.
    pub faults: &'a FaultConfig,
    /// The coordination store's state (true time), for invariants about
    /// leases and ownership.
    pub coordination: &'a kelpie_core::coordination::CoordinationState,
}

/// The seams of a harness task: true virtual time, a seeded generator and a
/// spawner whose tasks belong to no node.
#[derive(Clone)]
pub struct HarnessEnv {
    /// True virtual time (no skew, never paused).
    pub clock: kelpie_core::clock::SharedClock,
    /// A generator forked from the run's seed.
    pub rng: kelpie_core::rng::SharedRng,
    /// Spawns more harness tasks.
    pub spawner: kelpie_core::spawn::SharedSpawner,
    /// Draws the run's faults for harness-owned components (a shared store).
    pub faults: FaultInjector,
}

/// Draws faults from the run's configuration and generator, counting each
/// that fires as an effect (with a trace line), for components the harness
/// owns rather than a node.
#[derive(Clone)]
pub struct FaultInjector {
    shared: Arc<Shared>,
}

impl FaultInjector {
    /// Whether `kind` fires now; if so it is counted as an effect, with
    /// `detail` in the trace.
    pub fn inject(&self, kind: FaultKind, detail: &str) -> bool {
        let mut world = self.shared.world();
        if !world.faults_active() || !world.draw(kind) {
            return false;
        }
        world.effect(kind, detail);
        true
    }

    /// A fair coin from the run's generator (to pick a fault's variant).
    pub fn coin(&self) -> bool {
        self.shared.world().rng.bernoulli(0.5)
    }
}

/// A node-level fault, for [`Simulation::schedule_fault`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultAction {
    /// Set `node`'s clock rate deviation (parts per million, either sign).
    ClockRate {
        /// The node index.
        node: usize,
        /// New rate deviation.
        rate_ppm: i64,
    },
    /// Jump `node`'s wall clock by `wall_delta_ms` and its monotonic clock
    /// forward by `monotonic_forward`.
    ClockJump {
        /// The node index.
        node: usize,
        /// Wall-clock change, either sign.
        wall_delta_ms: i64,
        /// Monotonic change, forward only.
        monotonic_forward: Duration,
    },
    /// Pause a running `node` for `duration`.
    Pause {
        /// The node index.
        node: usize,
        /// Pause length.
        duration: Duration,
    },
    /// Crash `node`; it restarts after `downtime`.
    Crash {
        /// The node index.
        node: usize,
        /// Time down.
        downtime: Duration,
    },
    /// Cut the nodes in `store_side` (which keep the coordination store)
    /// from the rest, for `duration`.
    Partition {
        /// Nodes on the store's side.
        store_side: Vec<usize>,
        /// Partition length.
        duration: Duration,
    },
}

impl FaultAction {
    fn node(&self) -> Option<usize> {
        match self {
            FaultAction::ClockRate { node, .. }
            | FaultAction::ClockJump { node, .. }
            | FaultAction::Pause { node, .. }
            | FaultAction::Crash { node, .. } => Some(*node),
            FaultAction::Partition { .. } => None,
        }
    }
}

struct Invariant<N> {
    name: &'static str,
    check: CheckFn<N>,
}

/// Why a run stopped without failing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// `max_virtual_time` reached.
    TimeLimit,
    /// `max_steps` reached.
    StepLimit,
    /// No task ready and nothing scheduled.
    Quiescent,
}

/// What a run did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimReport {
    /// The seed.
    pub seed: u64,
    /// Steps taken.
    pub steps: u64,
    /// Virtual time reached.
    pub virtual_time: Duration,
    /// Why it stopped.
    pub stop: StopReason,
    /// Effects of each fault.
    pub faults: FaultCounters,
    /// Evaluations of each invariant.
    pub invariant_evaluations: BTreeMap<&'static str, u64>,
    /// Tasks that panicked (when panics do not fail the run).
    pub task_panics: u64,
    /// Hash of the whole trace.
    pub trace_hash: String,
    /// Every trace event, if requested with [`Simulation::keep_trace`].
    pub trace: Option<Vec<String>>,
}

impl fmt::Display for SimReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "seed: {}", self.seed)?;
        writeln!(f, "steps: {}", self.steps)?;
        writeln!(f, "virtual time: {:.3}s", self.virtual_time.as_secs_f64())?;
        writeln!(f, "stopped: {:?}", self.stop)?;
        writeln!(f, "fault effects: {}", self.faults)?;
        let evaluations: Vec<String> = self
            .invariant_evaluations
            .iter()
            .map(|(name, count)| format!("{name}={count}"))
            .collect();
        writeln!(f, "invariant evaluations: {}", evaluations.join(" "))?;
        write!(f, "trace hash: {}", self.trace_hash)
    }
}

/// What went wrong in a failed run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// An invariant did not hold.
    InvariantViolated {
        /// The invariant's name.
        invariant: &'static str,
        /// What it found.
        message: String,
    },
    /// A task panicked and the simulation fails on panics.
    TaskPanicked {
        /// The task's name and node.
        task: String,
        /// The panic message.
        message: String,
    },
}

/// A failed run: everything needed to understand and replay it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimFailure {
    /// The seed; `DST_SEED=<seed>` replays the run.
    pub seed: u64,
    /// The step at which it failed.
    pub step: u64,
    /// Virtual time at failure.
    pub virtual_time: Duration,
    /// What failed.
    pub kind: FailureKind,
    /// The last trace events, oldest first.
    pub trace_tail: Vec<String>,
    /// Fault effects up to the failure.
    pub faults: FaultCounters,
    /// Hash of the trace up to the failure.
    pub trace_hash: String,
}

impl SimFailure {
    /// The violated invariant's name, if an invariant failed.
    pub fn invariant(&self) -> Option<&'static str> {
        match &self.kind {
            FailureKind::InvariantViolated { invariant, .. } => Some(invariant),
            FailureKind::TaskPanicked { .. } => None,
        }
    }
}

impl fmt::Display for SimFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            FailureKind::InvariantViolated { invariant, message } => writeln!(
                f,
                "invariant {invariant} violated at step {} (virtual time {:.6}s), seed {}: {message}",
                self.step,
                self.virtual_time.as_secs_f64(),
                self.seed
            )?,
            FailureKind::TaskPanicked { task, message } => writeln!(
                f,
                "task {task} panicked at step {} (virtual time {:.6}s), seed {}: {message}",
                self.step,
                self.virtual_time.as_secs_f64(),
                self.seed
            )?,
        }
        writeln!(f, "replay with: DST_SEED={}", self.seed)?;
        writeln!(f, "fault effects: {}", self.faults)?;
        writeln!(f, "last {} events:", self.trace_tail.len())?;
        for line in &self.trace_tail {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SimFailure {}

/// Prints the seed if the thread unwinds while it is alive, so a panic
/// anywhere in a run (even outside the simulator's reporting) names its seed.
#[derive(Debug)]
pub struct SeedGuard {
    seed: u64,
}

impl SeedGuard {
    /// Guards a run of `seed`.
    pub fn new(seed: u64) -> Self {
        Self { seed }
    }
}

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "DST failure with seed {} (replay with DST_SEED={})",
                self.seed, self.seed
            );
        }
    }
}

struct SimNode<N> {
    state: Option<Arc<N>>,
}

/// A simulation of `N`-typed nodes: build it, then [`Simulation::run`].
pub struct Simulation<N: Send + Sync + 'static> {
    seed: u64,
    node_count: usize,
    max_steps: u64,
    max_virtual_time: Duration,
    faults: FaultConfig,
    boot: Option<BootFn<N>>,
    invariants: Vec<Invariant<N>>,
    observers: Vec<CheckFn<N>>,
    schedule: Vec<(Duration, FaultAction)>,
    harness: Vec<(&'static str, HarnessFn)>,
    keep_trace: bool,
    fail_on_task_panic: bool,
}

impl<N: Send + Sync + 'static> Simulation<N> {
    /// A simulation whose every choice derives from `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            node_count: 0,
            max_steps: MAX_STEPS_DEFAULT,
            max_virtual_time: MAX_VIRTUAL_TIME_DEFAULT,
            faults: FaultConfig::none(),
            boot: None,
            invariants: Vec::new(),
            observers: Vec::new(),
            schedule: Vec::new(),
            harness: Vec::new(),
            keep_trace: false,
            fail_on_task_panic: true,
        }
    }

    /// `count` nodes, each started (and restarted after a crash) by running
    /// `boot` with the node's simulated seams. `boot` must spawn the node's
    /// work through `env.spawner` and return a handle invariants can read.
    ///
    /// # Panics
    ///
    /// If `count` exceeds [`NODES_MAX`] (a mistake in the test, not an input).
    pub fn nodes(mut self, count: usize, boot: impl Fn(NodeEnv) -> Arc<N> + Send + Sync + 'static) -> Self {
        assert!(
            count <= NODES_MAX,
            "a simulation has at most {NODES_MAX} nodes, not {count}"
        );
        self.node_count = count;
        self.boot = Some(Arc::new(boot));
        self
    }

    /// The faults to inject.
    pub fn faults(mut self, faults: FaultConfig) -> Self {
        self.faults = faults;
        self
    }

    /// Stop after this many steps.
    pub fn max_steps(mut self, steps: u64) -> Self {
        self.max_steps = steps;
        self
    }

    /// Stop once virtual time would pass this.
    pub fn max_virtual_time(mut self, time: Duration) -> Self {
        self.max_virtual_time = time;
        self
    }

    /// An invariant evaluated after every step; `Err` fails the run.
    pub fn invariant(
        mut self,
        name: &'static str,
        check: impl FnMut(&WorldView<'_, N>) -> Result<(), String> + 'static,
    ) -> Self {
        self.invariants.push(Invariant {
            name,
            check: Box::new(check),
        });
        self
    }

    /// A harness task (a client workload) not tied to any node: it survives
    /// every fault, and its clock is true virtual time.
    pub fn harness(
        mut self,
        name: &'static str,
        task: impl FnOnce(HarnessEnv) -> BoxFuture<'static, ()> + 'static,
    ) -> Self {
        self.harness.push((name, Box::new(task)));
        self
    }

    /// Injects `action` at virtual time `at`, in addition to random faults.
    pub fn schedule_fault(mut self, at: Duration, action: FaultAction) -> Self {
        self.schedule.push((at, action));
        self
    }

    /// A read-only observer called after every step like an invariant, but
    /// not counted as one (for coverage statistics).
    pub fn observer(mut self, observe: impl FnMut(&WorldView<'_, N>) -> Result<(), String> + 'static) -> Self {
        self.observers.push(Box::new(observe));
        self
    }

    /// Keep every trace event in the report.
    pub fn keep_trace(mut self, keep: bool) -> Self {
        self.keep_trace = keep;
        self
    }

    /// Whether a panicking task fails the run (default) or only ends the task.
    pub fn fail_on_task_panic(mut self, fail: bool) -> Self {
        self.fail_on_task_panic = fail;
        self
    }

    /// Runs to a stop or the first failure.
    pub fn run(self) -> Result<SimReport, Box<SimFailure>> {
        let _guard = SeedGuard::new(self.seed);
        let mut runner = Runner::new(self);
        runner.run()
    }
}

struct Runner<N: Send + Sync + 'static> {
    config: Simulation<N>,
    shared: Arc<Shared>,
    nodes: Vec<SimNode<N>>,
    evaluations: BTreeMap<&'static str, u64>,
    task_panics: u64,
}

/// Virtual nanoseconds as a duration.
fn at(nanos: u64) -> Duration {
    Duration::from_nanos(nanos)
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

impl<N: Send + Sync + 'static> Runner<N> {
    fn new(mut config: Simulation<N>) -> Self {
        config.node_count = config.node_count.min(NODES_MAX);
        let trace = Trace::new(TRACE_TAIL_EVENTS, config.keep_trace);
        let mut world = World::new(config.seed, config.faults.clone(), trace);
        for index in 0..config.node_count {
            // Random monotonic origins catch code that compares instants across nodes.
            let origin = world.rng.in_range(0, 1_000_000_000_000);
            world.nodes.push(NodeMeta {
                id: NodeId::from_index(index as u32),
                life: Life::Down { since: 0 },
                boot: 0,
                clock: NodeClock::new(origin),
                inbox: Default::default(),
                inbox_wakers: Vec::new(),
                disk: BTreeMap::new(),
                local_timers: Vec::new(),
            });
        }
        let nodes = (0..config.node_count).map(|_| SimNode { state: None }).collect();
        Self {
            config,
            shared: Arc::new(Shared {
                world: std::sync::Mutex::new(world),
                ready: Arc::new(std::sync::Mutex::new(BTreeSet::new())),
                tasks: std::sync::Mutex::new(BTreeMap::new()),
            }),
            nodes,
            evaluations: BTreeMap::new(),
            task_panics: 0,
        }
    }

    fn run(&mut self) -> Result<SimReport, Box<SimFailure>> {
        for index in 0..self.nodes.len() {
            self.boot_node(index);
        }
        self.start_harness();
        {
            let mut world = self.shared.world();
            for (index, (time, _)) in self.config.schedule.iter().enumerate() {
                world.schedule(nanos(*time), TimelineEvent::Scheduled(index));
            }
        }
        if self.config.faults.any_scheduled() {
            let mut world = self.shared.world();
            let tick = nanos(world.faults.tick);
            world.schedule(tick, TimelineEvent::FaultTick);
        }
        self.check_invariants()?;
        let stop = loop {
            if self.shared.world().step >= self.config.max_steps {
                break StopReason::StepLimit;
            }
            if let Some(task) = self.pick_runnable() {
                self.begin_step();
                self.poll_task(task)?;
            } else {
                match self.next_event() {
                    None => break StopReason::Quiescent,
                    Some((time, _)) if time > nanos(self.config.max_virtual_time) => break StopReason::TimeLimit,
                    Some((time, key)) => {
                        self.begin_step();
                        self.process_event(time, key);
                    }
                }
            }
            self.check_invariants()?;
        };
        Ok(self.report(stop))
    }

    fn begin_step(&self) {
        self.shared.world().step += 1;
    }

    fn env_for(&self, index: usize, boot: u64, rng: SeededRng) -> NodeEnv {
        let id = NodeId::from_index(index as u32);
        NodeEnv {
            node_id: id.clone(),
            clock: Arc::new(SimClock {
                shared: self.shared.clone(),
                node: index,
            }),
            rng: Arc::new(rng),
            spawner: Arc::new(SimSpawner {
                shared: self.shared.clone(),
                node: Some((index, boot)),
            }),
            disk: Arc::new(SimDisk {
                shared: self.shared.clone(),
                node: index,
                boot,
            }),
            transport: Arc::new(SimTransport {
                shared: self.shared.clone(),
                node: index,
                boot,
                id,
            }),
            coordination: Arc::new(SimCoordination {
                shared: self.shared.clone(),
                node: index,
                boot,
            }),
        }
    }

    fn boot_node(&mut self, index: usize) {
        let (boot, rng) = {
            let mut world = self.shared.world();
            let now = world.now;
            let meta = &mut world.nodes[index];
            meta.boot += 1;
            meta.life = Life::Running { since: now };
            meta.inbox.clear();
            meta.inbox_wakers.clear();
            meta.local_timers.clear();
            let boot = meta.boot;
            let line = format!("boot {} #{boot}", meta.id);
            world.record(&line);
            (boot, world.rng.fork())
        };
        let env = self.env_for(index, boot, rng);
        if let Some(boot_fn) = self.config.boot.clone() {
            self.nodes[index].state = Some(boot_fn(env));
        }
    }

    fn start_harness(&mut self) {
        let harness = std::mem::take(&mut self.config.harness);
        for (name, task) in harness {
            let rng = self.shared.world().rng.fork();
            let spawner = SimSpawner {
                shared: self.shared.clone(),
                node: None,
            };
            let env = HarnessEnv {
                clock: Arc::new(TrueClock {
                    shared: self.shared.clone(),
                }),
                rng: Arc::new(rng),
                spawner: Arc::new(SimSpawner {
                    shared: self.shared.clone(),
                    node: None,
                }),
                faults: FaultInjector {
                    shared: self.shared.clone(),
                },
            };
            let _detached: TaskHandle = spawner.spawn_task(name, task(env));
        }
    }

    fn crash_node(&mut self, index: usize, downtime: Duration) {
        {
            let mut world = self.shared.world();
            let now = world.now;
            let meta = &mut world.nodes[index];
            let paused_and_kept_from_running = matches!(meta.life, Life::Paused { deferred: true, .. });
            meta.life = Life::Down { since: now };
            meta.inbox.clear();
            meta.inbox_wakers.clear();
            meta.local_timers.clear();
            let line = format!("crash {}", meta.id);
            world.record(&line);
            if paused_and_kept_from_running {
                let id = world.nodes[index].id.clone();
                world.effect(
                    FaultKind::NodePause,
                    &format!("{id} kept from running until it crashed"),
                );
            }
            crash_disk(&mut world, index);
            world.schedule(
                now.saturating_add(nanos(downtime)),
                TimelineEvent::Restart { node: index },
            );
        }
        let doomed: Vec<(TaskId, crate::world::TaskSlot)> = {
            let mut tasks = lock(&self.shared.tasks);
            let ids: Vec<TaskId> = tasks
                .iter()
                .filter(|(_, slot)| slot.node == Some(index))
                .map(|(id, _)| *id)
                .collect();
            ids.into_iter()
                .filter_map(|id| tasks.remove(&id).map(|slot| (id, slot)))
                .collect()
        };
        {
            let mut ready = lock(&self.shared.ready);
            for (id, _) in &doomed {
                ready.remove(id);
            }
        }
        // Dropped with no simulator lock held: their destructors may use seams.
        drop(doomed);
        let state = self.nodes[index].state.take();
        drop(state);
    }

    /// A ready task whose node is running, chosen by the seed.
    fn pick_runnable(&self) -> Option<TaskId> {
        let ready: Vec<TaskId> = lock(&self.shared.ready).iter().copied().collect();
        if ready.is_empty() {
            return None;
        }
        let owners: Vec<(TaskId, Option<Option<usize>>)> = {
            let tasks = lock(&self.shared.tasks);
            ready
                .iter()
                .map(|id| (*id, tasks.get(id).map(|slot| slot.node)))
                .collect()
        };
        let mut world = self.shared.world();
        let mut candidates = Vec::with_capacity(owners.len());
        let mut finished = Vec::new();
        for (id, owner) in owners {
            match owner {
                None => finished.push(id),
                Some(None) => candidates.push(id),
                Some(Some(node)) => match &mut world.nodes[node].life {
                    Life::Running { .. } => candidates.push(id),
                    Life::Paused { deferred, .. } => *deferred = true,
                    Life::Down { .. } => finished.push(id),
                },
            }
        }
        let choice = if candidates.is_empty() {
            None
        } else {
            let index = usize::try_from(world.rng.below(candidates.len() as u64)).unwrap_or(0);
            Some(candidates[index])
        };
        drop(world);
        if !finished.is_empty() {
            let mut ready = lock(&self.shared.ready);
            for id in finished {
                ready.remove(&id);
            }
        }
        choice
    }

    fn poll_task(&mut self, id: TaskId) -> Result<(), Box<SimFailure>> {
        lock(&self.shared.ready).remove(&id);
        let taken = {
            let mut tasks = lock(&self.shared.tasks);
            match tasks.get_mut(&id) {
                None => None,
                Some(slot) if slot.aborted.load(std::sync::atomic::Ordering::SeqCst) => tasks.remove(&id).map(Err),
                Some(slot) => slot
                    .future
                    .take()
                    .map(|future| Ok((future, slot.waker.clone(), slot.name, slot.node))),
            }
        };
        let (mut future, waker, name, node) = match taken {
            None => return Ok(()),
            Some(Err(mut aborted_slot)) => {
                if let Some(exit) = aborted_slot.exit.take() {
                    let _ = exit.send(TaskExit::Aborted);
                }
                drop(aborted_slot);
                self.shared.world().record(&format!("abort #{id}"));
                return Ok(());
            }
            Some(Ok(parts)) => parts,
        };
        let owner = match node {
            Some(node) => format!("{}", NodeId::from_index(node as u32)),
            None => "harness".to_string(),
        };
        self.shared.world().record(&format!("poll #{id} {name}@{owner}"));
        let mut cx = Context::from_waker(&waker);
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(&mut cx)));
        match outcome {
            Ok(std::task::Poll::Pending) => {
                let mut tasks = lock(&self.shared.tasks);
                if let Some(slot) = tasks.get_mut(&id) {
                    slot.future = Some(future);
                    return Ok(());
                }
                drop(tasks);
                drop(future);
                Ok(())
            }
            Ok(std::task::Poll::Ready(())) => {
                drop(future);
                self.finish_task(id, TaskExit::Completed);
                Ok(())
            }
            Err(payload) => {
                drop(future);
                let message = panic_message(payload.as_ref());
                self.task_panics += 1;
                let task = format!("#{id} {name}@{owner}");
                self.shared.world().record(&format!("panic {task}: {message}"));
                self.finish_task(
                    id,
                    TaskExit::Panicked {
                        message: message.clone(),
                    },
                );
                if self.config.fail_on_task_panic {
                    return Err(self.failure(FailureKind::TaskPanicked { task, message }));
                }
                Ok(())
            }
        }
    }

    fn finish_task(&self, id: TaskId, exit: TaskExit) {
        let slot = { lock(&self.shared.tasks).remove(&id) };
        if let Some(mut slot) = slot {
            if let Some(sender) = slot.exit.take() {
                let _ = sender.send(exit);
            }
        }
    }

    /// The next event that is not a cancelled timer.
    fn next_event(&self) -> Option<(u64, (u64, u64))> {
        let mut world = self.shared.world();
        loop {
            let (key, cancelled) = {
                let (key, event) = world.timeline.iter().next()?;
                let cancelled = matches!(event, TimelineEvent::Timer(timer) if timer.cancelled.load(std::sync::atomic::Ordering::SeqCst));
                (*key, cancelled)
            };
            if cancelled {
                world.timeline.remove(&key);
                continue;
            }
            return Some((key.0, key));
        }
    }

    fn process_event(&mut self, time: u64, key: (u64, u64)) {
        let event = {
            let mut world = self.shared.world();
            world.now = world.now.max(time);
            world.timeline.remove(&key)
        };
        let Some(event) = event else { return };
        match event {
            TimelineEvent::Timer(timer) => {
                self.shared.world().record("timer");
                if let Some(waker) = timer.fire() {
                    waker.wake();
                }
            }
            TimelineEvent::Coordination(apply) => {
                let mut world = self.shared.world();
                apply(&mut world);
            }
            TimelineEvent::Deliver {
                envelope,
                from,
                to,
                link_seq,
                delayed,
                duplicate,
            } => {
                let mut world = self.shared.world();
                let route = format!("{} -> {} seq {link_seq}", envelope.from, envelope.to);
                if world.nodes[to].is_down() {
                    world.record(&format!("deliver {route} dropped: destination down"));
                    return;
                }
                if world.partitioned(from, to) {
                    world.effect(FaultKind::Partition, &format!("dropped {route}"));
                    return;
                }
                let link = world.links.entry((from, to)).or_default();
                let overtaken = link.max_delivered.is_some_and(|max| link_seq < max);
                link.max_delivered = Some(link.max_delivered.map_or(link_seq, |max| max.max(link_seq)));
                if overtaken {
                    world.effect(FaultKind::MessageReorder, &route);
                }
                if delayed {
                    world.effect(FaultKind::MessageDelay, &route);
                }
                if duplicate {
                    world.effect(FaultKind::MessageDuplicate, &route);
                }
                world.record(&format!("deliver {route}"));
                let meta = &mut world.nodes[to];
                meta.inbox.push_back(envelope);
                let wakers = std::mem::take(&mut meta.inbox_wakers);
                drop(world);
                for waker in wakers {
                    waker.wake();
                }
            }
            TimelineEvent::FaultTick => self.fault_tick(),
            TimelineEvent::Scheduled(index) => {
                if let Some(action) = self.config.schedule.get(index).cloned() {
                    self.apply_fault(action.1);
                }
            }
            TimelineEvent::Resume { node, pause_id } => {
                let mut world = self.shared.world();
                let now = world.now;
                if let Life::Paused {
                    pause_id: current,
                    deferred,
                    since,
                } = world.nodes[node].life
                {
                    if current == pause_id {
                        world.nodes[node].life = Life::Running { since: now };
                        let id = world.nodes[node].id.clone();
                        world.record(&format!("resume {id}"));
                        if deferred {
                            let paused_ms = now.saturating_sub(since) / 1_000_000;
                            world.effect(
                                FaultKind::NodePause,
                                &format!("{id} kept from running for {paused_ms} ms"),
                            );
                        }
                    }
                }
            }
            TimelineEvent::Restart { node } => {
                if self.shared.world().nodes[node].is_down() {
                    self.boot_node(node);
                }
            }
            TimelineEvent::Heal { partition_id } => {
                let mut world = self.shared.world();
                if world.partition.as_ref().is_some_and(|(id, _)| *id == partition_id) {
                    world.partition = None;
                    world.record("heal partition");
                }
            }
        }
    }

    fn random_node(&self, world: &World, accept: impl Fn(&Life) -> bool) -> Option<usize> {
        let eligible: Vec<usize> = world
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, meta)| accept(&meta.life))
            .map(|(index, _)| index)
            .collect();
        if eligible.is_empty() {
            return None;
        }
        let pick = usize::try_from(world.rng.below(eligible.len() as u64)).unwrap_or(0);
        Some(eligible[pick])
    }

    fn fault_tick(&mut self) {
        let mut actions = Vec::new();
        {
            let mut world = self.shared.world();
            let not_down = |life: &Life| !matches!(life, Life::Down { .. });
            if world.draw(FaultKind::ClockSkew) {
                if let Some(node) = self.random_node(&world, not_down) {
                    let max = i64::from(world.faults.clock_skew_ppm_max);
                    let rate =
                        i64::try_from(world.rng.in_range(0, u64::try_from(2 * max).unwrap_or(0))).unwrap_or(0) - max;
                    actions.push(FaultAction::ClockRate { node, rate_ppm: rate });
                }
            }
            if world.draw(FaultKind::ClockJump) {
                if let Some(node) = self.random_node(&world, not_down) {
                    let max_ms = u64::try_from(world.faults.clock_jump_max.as_millis())
                        .unwrap_or(u64::MAX)
                        .max(1);
                    let wall_ms = i64::try_from(world.rng.in_range(1, max_ms)).unwrap_or(1);
                    let wall_delta_ms = if world.rng.chance(1, 2) { wall_ms } else { -wall_ms };
                    let monotonic_forward = Duration::from_millis(world.rng.in_range(0, max_ms));
                    actions.push(FaultAction::ClockJump {
                        node,
                        wall_delta_ms,
                        monotonic_forward,
                    });
                }
            }
            if world.draw(FaultKind::NodePause) {
                if let Some(node) = self.random_node(&world, |life| matches!(life, Life::Running { .. })) {
                    let length = world
                        .rng
                        .in_range(1_000_000, nanos(world.faults.pause_max).max(1_000_000));
                    actions.push(FaultAction::Pause {
                        node,
                        duration: at(length),
                    });
                }
            }
            if world.draw(FaultKind::NodeCrash) {
                if let Some(node) = self.random_node(&world, not_down) {
                    let downtime = world.rng.in_range(1, nanos(world.faults.crash_downtime_max).max(1));
                    actions.push(FaultAction::Crash {
                        node,
                        downtime: at(downtime),
                    });
                }
            }
            if world.draw(FaultKind::Partition) && world.partition.is_none() && world.nodes.len() >= 2 {
                let count = world.nodes.len().min(63);
                // A random proper, non-empty subset reaches the store.
                let mask = world.rng.in_range(1, (1u64 << count) - 2);
                let store_side: Vec<usize> = (0..count).filter(|node| mask & (1 << node) != 0).collect();
                let length = world
                    .rng
                    .in_range(1_000_000, nanos(world.faults.partition_max).max(1_000_000));
                actions.push(FaultAction::Partition {
                    store_side,
                    duration: at(length),
                });
            }
            let now = world.now;
            let tick = nanos(world.faults.tick);
            let quiet = world
                .faults
                .quiet_after
                .is_some_and(|quiet| now.saturating_add(tick) >= nanos(quiet));
            if !quiet {
                world.schedule(now.saturating_add(tick), TimelineEvent::FaultTick);
            }
        }
        for action in actions {
            self.apply_fault(action);
        }
    }

    /// Applies one node-level fault now (drawn on a fault tick, or scheduled).
    fn apply_fault(&mut self, action: FaultAction) {
        let node_count = self.nodes.len();
        if action.node().is_some_and(|node| node >= node_count) {
            return;
        }
        match action {
            FaultAction::ClockRate { node, rate_ppm } => {
                let mut world = self.shared.world();
                let now = world.now;
                let old = world.nodes[node].clock.rate_ppm();
                if rate_ppm != old && !world.nodes[node].is_down() {
                    world.nodes[node].clock.set_rate(now, rate_ppm);
                    let rate_ppm = world.nodes[node].clock.rate_ppm();
                    let id = world.nodes[node].id.clone();
                    world.effect(FaultKind::ClockSkew, &format!("{id} rate {old} -> {rate_ppm} ppm"));
                    let wakers = world.take_local_timers(node);
                    drop(world);
                    wakers.into_iter().for_each(std::task::Waker::wake);
                }
            }
            FaultAction::ClockJump {
                node,
                wall_delta_ms,
                monotonic_forward,
            } => {
                let mut world = self.shared.world();
                let now = world.now;
                if !world.nodes[node].is_down() {
                    world.nodes[node]
                        .clock
                        .jump(now, nanos(monotonic_forward), wall_delta_ms);
                    let id = world.nodes[node].id.clone();
                    world.effect(
                        FaultKind::ClockJump,
                        &format!(
                            "{id} wall {wall_delta_ms:+} ms, monotonic +{} ms",
                            monotonic_forward.as_millis()
                        ),
                    );
                    let wakers = world.take_local_timers(node);
                    drop(world);
                    wakers.into_iter().for_each(std::task::Waker::wake);
                }
            }
            FaultAction::Pause { node, duration } => {
                let mut world = self.shared.world();
                let now = world.now;
                if matches!(world.nodes[node].life, Life::Running { .. }) {
                    let pause_id = world.next_pause_id;
                    world.next_pause_id += 1;
                    world.nodes[node].life = Life::Paused {
                        since: now,
                        pause_id,
                        deferred: false,
                    };
                    world.schedule(
                        now.saturating_add(nanos(duration)),
                        TimelineEvent::Resume { node, pause_id },
                    );
                    let id = world.nodes[node].id.clone();
                    world.record(&format!("pause {id} for {} ms", duration.as_millis()));
                }
            }
            FaultAction::Crash { node, downtime } => {
                if !self.shared.world().nodes[node].is_down() {
                    self.crash_node(node, downtime);
                    let mut world = self.shared.world();
                    let id = world.nodes[node].id.clone();
                    world.effect(FaultKind::NodeCrash, &format!("{id} crashed"));
                }
            }
            FaultAction::Partition { store_side, duration } => {
                let mut world = self.shared.world();
                if world.partition.is_none() {
                    let now = world.now;
                    let id = world.next_partition_id;
                    world.next_partition_id += 1;
                    let side: BTreeSet<usize> = store_side.into_iter().filter(|node| *node < node_count).collect();
                    world.record(&format!("partition {side:?} | rest for {} ms", duration.as_millis()));
                    world.partition = Some((id, side));
                    world.schedule(
                        now.saturating_add(nanos(duration)),
                        TimelineEvent::Heal { partition_id: id },
                    );
                }
            }
        }
    }

    fn views(&self) -> (u64, u64, Vec<NodeView<N>>) {
        let world = self.shared.world();
        let nodes = world
            .nodes
            .iter()
            .enumerate()
            .map(|(index, meta)| NodeView {
                index,
                id: meta.id.clone(),
                life: match meta.life {
                    Life::Running { since } => NodeLife::Running { since: at(since) },
                    Life::Paused { since, .. } => NodeLife::Paused { since: at(since) },
                    Life::Down { since } => NodeLife::Down { since: at(since) },
                },
                boot: meta.boot,
                state: self.nodes[index].state.clone(),
                clock_rate_ppm: meta.clock.rate_ppm(),
            })
            .collect();
        (world.step, world.now, nodes)
    }

    fn check_invariants(&mut self) -> Result<(), Box<SimFailure>> {
        if self.config.invariants.is_empty() && self.config.observers.is_empty() {
            return Ok(());
        }
        let (step, now, nodes) = self.views();
        let faults = self.config.faults.clone();
        let mut coordination = self.shared.world().coordination.clone();
        coordination.expire_leases(kelpie_core::MonotonicInstant::from_nanos(now));
        let view = WorldView {
            step,
            now: at(now),
            nodes: &nodes,
            faults: &faults,
            coordination: &coordination,
        };
        let mut violation = None;
        for invariant in &mut self.config.invariants {
            *self.evaluations.entry(invariant.name).or_insert(0) += 1;
            if let Err(message) = (invariant.check)(&view) {
                violation = Some(FailureKind::InvariantViolated {
                    invariant: invariant.name,
                    message,
                });
                break;
            }
        }
        if violation.is_none() {
            for observer in &mut self.config.observers {
                // Observers report nothing; their result is ignored by design.
                let _ = observer(&view);
            }
        }
        match violation {
            Some(kind) => Err(self.failure(kind)),
            None => Ok(()),
        }
    }

    fn failure(&self, kind: FailureKind) -> Box<SimFailure> {
        let world = self.shared.world();
        Box::new(SimFailure {
            seed: self.config.seed,
            step: world.step,
            virtual_time: at(world.now),
            kind,
            trace_tail: world.trace.tail(),
            faults: world.counters.clone(),
            trace_hash: world.trace.hash_hex(),
        })
    }

    fn report(&self, stop: StopReason) -> SimReport {
        let world = self.shared.world();
        SimReport {
            seed: self.config.seed,
            steps: world.step,
            virtual_time: at(world.now),
            stop,
            faults: world.counters.clone(),
            invariant_evaluations: self.evaluations.clone(),
            task_panics: self.task_panics,
            trace_hash: world.trace.hash_hex(),
            trace: world.trace.all().map(<[String]>::to_vec),
        }
    }
}

impl<N: Send + Sync + 'static> Drop for Runner<N> {
    fn drop(&mut self) {
        // Futures may hold seams that point back at `shared`; drop them
        // outside every lock, before the world itself goes.
        let tasks = std::mem::take(&mut *lock(&self.shared.tasks));
        drop(tasks);
        for node in &mut self.nodes {
            node.state = None;
        }
    }
}
