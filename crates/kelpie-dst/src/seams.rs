//! The simulator's implementations of kelpie-core's seams. Production code
//! given a simulated [`NodeEnv`](kelpie_core::NodeEnv) runs unchanged; every
//! observation it makes goes through here, and so does every fault.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::task::ArcWake;
use kelpie_core::clock::{Clock, MonotonicInstant, WallTime};
use kelpie_core::coordination::{
    CoordinationError, CoordinationState, CoordinationStore, KeyValue, LeaseGrant, LeaseId, Txn, TxnOp, TxnResponse,
};
use kelpie_core::disk::{validate_file_name, Disk, DiskError, DiskFile};
use kelpie_core::rng::Rng;
use kelpie_core::spawn::{Spawner, TaskControl, TaskExit, TaskHandle};
use kelpie_core::transport::{check_message_size, Envelope, Transport, TransportError};
use kelpie_core::NodeId;

use crate::faults::FaultKind;
use crate::world::{
    lock, PendingOp, Shared, SimFileState, TaskId, TaskSlot, TimelineEvent, TimerState, World, SIM_FILE_BYTES_MAX,
};

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// When a [`TimerFuture`] completes.
#[derive(Clone, Copy)]
enum Deadline {
    /// At this virtual instant.
    Virtual(u64),
    /// When `node`'s monotonic clock reads at least this.
    Local { node: usize, target_mono: u64 },
}

/// A sleep on the timeline. Re-arms itself if the node's clock rate changed
/// while it waited, so it never completes early on the node's own clock.
struct TimerFuture {
    shared: Arc<Shared>,
    deadline: Deadline,
    timer: Option<Arc<TimerState>>,
}

impl Future for TimerFuture {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let shared = self.shared.clone();
        let mut world = shared.world();
        let due_at = match self.deadline {
            Deadline::Virtual(at) => at,
            Deadline::Local { node, target_mono } => world.nodes[node].clock.virtual_at(target_mono, world.now),
        };
        if due_at <= world.now {
            return Poll::Ready(());
        }
        if let Some(timer) = &self.timer {
            if !timer.fired.load(Ordering::SeqCst) {
                *lock(&timer.waker) = Some(cx.waker().clone());
                return Poll::Pending;
            }
            // Fired but not yet due on this clock (it slowed down): re-arm.
        }
        let timer = Arc::new(TimerState::default());
        *lock(&timer.waker) = Some(cx.waker().clone());
        world.schedule(due_at, TimelineEvent::Timer(timer.clone()));
        if let Deadline::Local { node, .. } = self.deadline {
            let timers = &mut world.nodes[node].local_timers;
            if timers.len() >= 64 && timers.len().is_power_of_two() {
                timers.retain(|timer| timer.strong_count() > 0);
            }
            timers.push(Arc::downgrade(&timer));
        }
        drop(world);
        if let Some(old) = self.timer.replace(timer) {
            old.cancelled.store(true, Ordering::SeqCst);
        }
        Poll::Pending
    }
}

impl Drop for TimerFuture {
    fn drop(&mut self) {
        if let Some(timer) = &self.timer {
            timer.cancelled.store(true, Ordering::SeqCst);
        }
    }
}

fn virtual_delay(shared: &Arc<Shared>, delay: Duration) -> TimerFuture {
    let now = shared.world().now;
    TimerFuture {
        shared: shared.clone(),
        deadline: Deadline::Virtual(now.saturating_add(nanos(delay))),
        timer: None,
    }
}

/// A node's clock: virtual time through the node's skew, jumps and origin.
pub(crate) struct SimClock {
    pub shared: Arc<Shared>,
    pub node: usize,
}

impl Clock for SimClock {
    fn now_monotonic(&self) -> MonotonicInstant {
        let world = self.shared.world();
        MonotonicInstant::from_nanos(world.nodes[self.node].clock.mono(world.now))
    }

    fn now_wall(&self) -> WallTime {
        let world = self.shared.world();
        WallTime::from_unix_ms(world.nodes[self.node].clock.wall_ms(world.now))
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        let target_mono = {
            let world = self.shared.world();
            world.nodes[self.node]
                .clock
                .mono(world.now)
                .saturating_add(nanos(duration))
        };
        Box::pin(TimerFuture {
            shared: self.shared.clone(),
            deadline: Deadline::Local {
                node: self.node,
                target_mono,
            },
            timer: None,
        })
    }
}

/// True virtual time, for harness tasks: no skew, no jumps, no pauses.
pub(crate) struct TrueClock {
    pub shared: Arc<Shared>,
}

impl Clock for TrueClock {
    fn now_monotonic(&self) -> MonotonicInstant {
        MonotonicInstant::from_nanos(self.shared.world().now)
    }

    fn now_wall(&self) -> WallTime {
        let now = self.shared.world().now;
        WallTime::from_unix_ms(crate::world::WALL_EPOCH_UNIX_MS + i64::try_from(now / 1_000_000).unwrap_or(i64::MAX))
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(virtual_delay(&self.shared, duration))
    }
}

/// Wakes a task by putting it in the ready set.
pub(crate) struct TaskWaker {
    pub id: TaskId,
    pub ready: Arc<std::sync::Mutex<std::collections::BTreeSet<TaskId>>>,
}

impl ArcWake for TaskWaker {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        lock(&arc_self.ready).insert(arc_self.id);
    }
}

struct SimTaskControl {
    id: TaskId,
    aborted: Arc<AtomicBool>,
    ready: Arc<std::sync::Mutex<std::collections::BTreeSet<TaskId>>>,
    exit: futures::channel::oneshot::Receiver<TaskExit>,
}

impl TaskControl for SimTaskControl {
    fn abort(&self) {
        self.aborted.store(true, Ordering::SeqCst);
        lock(&self.ready).insert(self.id);
    }

    fn join(self: Box<Self>) -> BoxFuture<'static, TaskExit> {
        Box::pin(async move { self.exit.await.unwrap_or(TaskExit::Aborted) })
    }
}

/// Spawns onto the simulator, tagged with a node incarnation (or none, for
/// harness tasks that survive every fault).
pub(crate) struct SimSpawner {
    pub shared: Arc<Shared>,
    pub node: Option<(usize, u64)>,
}

impl SimSpawner {
    pub(crate) fn spawn_task(&self, name: &'static str, future: BoxFuture<'static, ()>) -> TaskHandle {
        let (exit_tx, exit_rx) = futures::channel::oneshot::channel();
        let aborted = Arc::new(AtomicBool::new(false));
        let id = {
            let mut world = self.shared.world();
            let alive = match self.node {
                Some((node, boot)) => world.is_current(node, boot),
                None => true,
            };
            let id = world.next_task_id;
            world.next_task_id += 1;
            if alive {
                let line = format!("spawn #{id} {name}");
                world.record(&line);
            }
            (id, alive)
        };
        let (id, alive) = id;
        let control = SimTaskControl {
            id,
            aborted: aborted.clone(),
            ready: self.shared.ready.clone(),
            exit: exit_rx,
        };
        if !alive {
            // A crashed incarnation's code can no longer start work.
            drop(exit_tx);
            return TaskHandle::new(Box::new(control));
        }
        let waker = futures::task::waker(Arc::new(TaskWaker {
            id,
            ready: self.shared.ready.clone(),
        }));
        lock(&self.shared.tasks).insert(
            id,
            TaskSlot {
                node: self.node.map(|(node, _)| node),
                name,
                future: Some(future),
                waker,
                aborted,
                exit: Some(exit_tx),
            },
        );
        lock(&self.shared.ready).insert(id);
        TaskHandle::new(Box::new(control))
    }
}

impl Spawner for SimSpawner {
    fn spawn(&self, name: &'static str, future: BoxFuture<'static, ()>) -> TaskHandle {
        self.spawn_task(name, future)
    }

    fn spawn_blocking(&self, name: &'static str, work: Box<dyn FnOnce() + Send>) -> TaskHandle {
        // Blocking work runs in one poll: a crash can come before or after
        // it, never in the middle. Disk latency delays it, letting other
        // tasks run (and crashes happen) first.
        let delay = {
            let mut world = self.shared.world();
            if self.node.is_some() && world.draw(FaultKind::DiskLatency) {
                let max = nanos(world.faults.disk_latency_max).max(1);
                let delay = world.rng.in_range(1, max);
                let detail = format!("{name} delayed {} us", delay / 1_000);
                world.effect(FaultKind::DiskLatency, &detail);
                Some(Duration::from_nanos(delay))
            } else {
                None
            }
        };
        let shared = self.shared.clone();
        self.spawn_task(
            name,
            Box::pin(async move {
                if let Some(delay) = delay {
                    virtual_delay(&shared, delay).await;
                }
                work()
            }),
        )
    }
}

/// A node's endpoint on the simulated network.
pub(crate) struct SimTransport {
    pub shared: Arc<Shared>,
    pub node: usize,
    pub boot: u64,
    pub id: NodeId,
}

impl Transport for SimTransport {
    fn local_node(&self) -> &NodeId {
        &self.id
    }

    fn send(&self, to: &NodeId, payload: Bytes) -> Result<(), TransportError> {
        check_message_size(&payload)?;
        let mut world = self.shared.world();
        if !world.is_current(self.node, self.boot) {
            return Err(TransportError::Closed);
        }
        let target = world
            .node_index(to)
            .ok_or_else(|| TransportError::NoRoute { node: to.clone() })?;
        let link = world.links.entry((self.node, target)).or_default();
        let link_seq = link.next_seq;
        link.next_seq += 1;
        let envelope = Envelope {
            from: self.id.clone(),
            to: to.clone(),
            payload,
        };
        if !world.nodes[target].is_down() && world.draw(FaultKind::MessageDrop) {
            let detail = format!("{} -> {} seq {link_seq}", self.id, to);
            world.effect(FaultKind::MessageDrop, &detail);
            return Ok(());
        }
        let base = nanos(world.faults.network_latency);
        let mut latency = base;
        let delayed = world.draw(FaultKind::MessageDelay);
        if delayed {
            latency += world.rng.in_range(1, nanos(world.faults.message_delay_max).max(1));
        }
        if world.draw(FaultKind::MessageReorder) {
            latency += world.rng.in_range(1, nanos(world.faults.message_reorder_max).max(1));
        }
        let at = world.now.saturating_add(latency);
        if world.draw(FaultKind::MessageDuplicate) {
            let extra = world.rng.in_range(0, nanos(world.faults.message_delay_max));
            world.schedule(
                at.saturating_add(extra),
                TimelineEvent::Deliver {
                    envelope: envelope.clone(),
                    from: self.node,
                    to: target,
                    link_seq,
                    delayed: false,
                    duplicate: true,
                },
            );
        }
        let line = format!(
            "send {} -> {} seq {link_seq} {} bytes",
            self.id,
            to,
            envelope.payload.len()
        );
        world.record(&line);
        world.schedule(
            at,
            TimelineEvent::Deliver {
                envelope,
                from: self.node,
                to: target,
                link_seq,
                delayed,
                duplicate: false,
            },
        );
        Ok(())
    }

    fn recv(&self) -> BoxFuture<'_, Result<Envelope, TransportError>> {
        Box::pin(futures::future::poll_fn(move |cx| {
            let mut world = self.shared.world();
            if !world.is_current(self.node, self.boot) {
                return Poll::Ready(Err(TransportError::Closed));
            }
            let meta = &mut world.nodes[self.node];
            match meta.inbox.pop_front() {
                Some(envelope) => Poll::Ready(Ok(envelope)),
                None => {
                    if !meta.inbox_wakers.iter().any(|waker| waker.will_wake(cx.waker())) {
                        meta.inbox_wakers.push(cx.waker().clone());
                    }
                    Poll::Pending
                }
            }
        }))
    }
}

/// A node's simulated disk.
#[derive(Debug)]
pub(crate) struct SimDisk {
    pub shared: Arc<Shared>,
    pub node: usize,
    pub boot: u64,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shared")
    }
}

fn stale(name: &str, operation: &'static str) -> DiskError {
    DiskError::Io {
        file: name.to_string(),
        operation,
        message: "stale handle: the node crashed since this file was opened".to_string(),
    }
}

fn injected(name: &str, operation: &'static str) -> DiskError {
    DiskError::Io {
        file: name.to_string(),
        operation,
        message: "injected I/O error (EIO)".to_string(),
    }
}

impl Disk for SimDisk {
    fn open(&self, name: &str) -> Result<Arc<dyn DiskFile>, DiskError> {
        validate_file_name(name)?;
        let mut world = self.shared.world();
        if !world.is_current(self.node, self.boot) {
            return Err(stale(name, "open"));
        }
        world.nodes[self.node].disk.entry(name.to_string()).or_default();
        Ok(Arc::new(SimFile {
            shared: self.shared.clone(),
            node: self.node,
            boot: self.boot,
            name: name.to_string(),
        }))
    }

    fn exists(&self, name: &str) -> Result<bool, DiskError> {
        validate_file_name(name)?;
        let world = self.shared.world();
        Ok(world.nodes[self.node].disk.contains_key(name))
    }
}

/// A file on a simulated disk.
#[derive(Debug)]
pub(crate) struct SimFile {
    shared: Arc<Shared>,
    node: usize,
    boot: u64,
    name: String,
}

impl SimFile {
    fn with_file<T>(
        &self,
        operation: &'static str,
        apply: impl FnOnce(&mut World, &str) -> Result<T, DiskError>,
    ) -> Result<T, DiskError> {
        let mut world = self.shared.world();
        if !world.is_current(self.node, self.boot) {
            return Err(stale(&self.name, operation));
        }
        apply(&mut world, &self.name)
    }
}

fn file<'a>(world: &'a mut World, node: usize, name: &str) -> &'a mut SimFileState {
    world.nodes[node].disk.entry(name.to_string()).or_default()
}

impl DiskFile for SimFile {
    fn len(&self) -> Result<u64, DiskError> {
        self.with_file("len", |world, name| {
            Ok(file(world, self.node, name).current.len() as u64)
        })
    }

    fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, DiskError> {
        self.with_file("read", |world, name| {
            if world.draw(FaultKind::DiskReadError) {
                let detail = format!("{} read {name}", world.nodes[self.node].id);
                world.effect(FaultKind::DiskReadError, &detail);
                return Err(injected(name, "read"));
            }
            let bytes = &file(world, self.node, name).current;
            let file_len = bytes.len() as u64;
            let start = usize::try_from(offset).ok().filter(|start| *start as u64 <= file_len);
            match start.and_then(|start| start.checked_add(len).map(|end| (start, end))) {
                Some((start, end)) if end <= bytes.len() => Ok(bytes[start..end].to_vec()),
                _ => Err(DiskError::ReadPastEnd {
                    file: name.to_string(),
                    offset,
                    len,
                    file_len,
                }),
            }
        })
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), DiskError> {
        if offset.saturating_add(data.len() as u64) > SIM_FILE_BYTES_MAX {
            return Err(DiskError::Io {
                file: self.name.clone(),
                operation: "write",
                message: format!("file would exceed the simulated disk's {SIM_FILE_BYTES_MAX} bytes (EFBIG)"),
            });
        }
        self.with_file("write", |world, name| {
            if world.draw(FaultKind::DiskWriteError) {
                let detail = format!("{} write {name}", world.nodes[self.node].id);
                world.effect(FaultKind::DiskWriteError, &detail);
                return Err(injected(name, "write"));
            }
            let op = PendingOp::Write {
                offset,
                data: data.to_vec(),
            };
            let state = file(world, self.node, name);
            op.apply(&mut state.current);
            state.pending.push(op);
            Ok(())
        })
    }

    fn set_len(&self, len: u64) -> Result<(), DiskError> {
        if len > SIM_FILE_BYTES_MAX {
            return Err(DiskError::Io {
                file: self.name.clone(),
                operation: "set_len",
                message: format!("file would exceed the simulated disk's {SIM_FILE_BYTES_MAX} bytes (EFBIG)"),
            });
        }
        self.with_file("set_len", |world, name| {
            let op = PendingOp::SetLen(len);
            let state = file(world, self.node, name);
            op.apply(&mut state.current);
            state.pending.push(op);
            Ok(())
        })
    }

    fn sync_data(&self) -> Result<(), DiskError> {
        self.with_file("sync_data", |world, name| {
            if world.draw(FaultKind::DiskWriteError) {
                let detail = format!("{} sync_data {name}", world.nodes[self.node].id);
                world.effect(FaultKind::DiskWriteError, &detail);
                return Err(injected(name, "sync_data"));
            }
            let state = file(world, self.node, name);
            state.durable = state.current.clone();
            state.pending.clear();
            Ok(())
        })
    }
}

/// Applies a crash to one node's disk: a process crash keeps the page cache
/// (every write survives); with [`FaultKind::FsyncLoss`] it is a machine
/// crash that loses a suffix of the unsynced writes, and with
/// [`FaultKind::TornWrite`] the first lost write is half-persisted.
pub(crate) fn crash_disk(world: &mut World, node: usize) {
    let names: Vec<String> = world.nodes[node].disk.keys().cloned().collect();
    for name in names {
        let Some(state) = world.nodes[node].disk.get_mut(&name) else {
            continue;
        };
        let pending = std::mem::take(&mut state.pending);
        let mut durable = state.durable.clone();
        if pending.is_empty() {
            continue;
        }
        // A machine crash persists an arbitrary subset of the unsynced
        // writes (the page cache flushes in no particular order), at least
        // one lost; the first lost write may be half-persisted (torn).
        let kept: Vec<bool> = if world.draw(FaultKind::FsyncLoss) {
            let mut kept: Vec<bool> = pending.iter().map(|_| world.rng.chance(1, 2)).collect();
            if kept.iter().all(|kept| *kept) {
                let victim = usize::try_from(world.rng.below(pending.len() as u64)).unwrap_or(0);
                kept[victim] = false;
            }
            let lost = kept.iter().filter(|kept| !**kept).count();
            let detail = format!(
                "{} {name} lost {lost} of {} unsynced ops",
                world.nodes[node].id,
                pending.len()
            );
            world.effect(FaultKind::FsyncLoss, &detail);
            kept
        } else {
            vec![true; pending.len()]
        };
        let torn_at = kept.iter().position(|kept| !*kept);
        for (index, op) in pending.iter().enumerate() {
            if kept[index] {
                op.apply(&mut durable);
            } else if Some(index) == torn_at {
                if let PendingOp::Write { offset, data } = op {
                    if data.len() > 1 && world.draw(FaultKind::TornWrite) {
                        let cut = usize::try_from(world.rng.in_range(1, data.len() as u64 - 1)).unwrap_or(1);
                        PendingOp::Write {
                            offset: *offset,
                            data: data[..cut].to_vec(),
                        }
                        .apply(&mut durable);
                        let detail = format!(
                            "{} {name} kept {cut} of {} bytes at offset {offset}",
                            world.nodes[node].id,
                            data.len()
                        );
                        world.effect(FaultKind::TornWrite, &detail);
                    }
                }
            }
        }
        if let Some(state) = world.nodes[node].disk.get_mut(&name) {
            state.current = durable.clone();
            state.durable = durable;
        }
    }
}

/// A node's client of the simulated coordination store. Requests take
/// network time each way; a partition or an injected timeout makes the client
/// wait out its timeout and report `Timeout`, sometimes after the request was
/// applied (the response was lost).
pub(crate) struct SimCoordination {
    pub shared: Arc<Shared>,
    pub node: usize,
    pub boot: u64,
}

enum Delivery<T> {
    Answer(T),
    Lost,
}

impl SimCoordination {
    fn request<T: Send + 'static>(
        &self,
        operation: &'static str,
        apply: impl FnOnce(&mut World) -> Result<T, CoordinationError> + Send + 'static,
    ) -> BoxFuture<'static, Result<T, CoordinationError>> {
        let shared = self.shared.clone();
        let node = self.node;
        let boot = self.boot;
        Box::pin(async move {
            let (latency, timeout) = {
                let world = shared.world();
                (world.faults.coordination_latency, world.faults.coordination_timeout)
            };
            let (reply, answer) = futures::channel::oneshot::channel();
            {
                let mut world = shared.world();
                if !world.is_current(node, boot) {
                    return Err(CoordinationError::Unavailable {
                        reason: "node is down".to_string(),
                    });
                }
                let id = world.nodes[node].id.clone();
                let at = world.now.saturating_add(nanos(latency));
                // The request is on the wire: the store applies it at `at`
                // even if this node crashes or pauses meanwhile.
                world.schedule(
                    at,
                    TimelineEvent::Coordination(Box::new(move |world: &mut World| {
                        let delivery = if !world.reaches_store(node) {
                            let detail = format!("{id} cannot reach the coordination store ({operation})");
                            world.effect(FaultKind::Partition, &detail);
                            Delivery::Lost
                        } else if world.draw(FaultKind::CoordinationTimeout) {
                            // The client times out; the request was lost, or
                            // applied with its answer lost, or is still queued
                            // and applied after the client gave up.
                            let outcome = world.rng.below(3);
                            let detail = format!(
                                "{id} {operation} timed out ({})",
                                ["not applied", "applied, answer lost", "applied after the timeout"][outcome as usize]
                            );
                            world.effect(FaultKind::CoordinationTimeout, &detail);
                            match outcome {
                                1 => {
                                    let _ = apply(world);
                                }
                                2 => {
                                    let timeout = nanos(world.faults.coordination_timeout).max(1);
                                    let late = world.now.saturating_add(timeout + world.rng.in_range(1, timeout));
                                    world.schedule(
                                        late,
                                        TimelineEvent::Coordination(Box::new(move |world: &mut World| {
                                            let _ = apply(world);
                                            world.record("coordination late request applied");
                                        })),
                                    );
                                }
                                _ => {}
                            }
                            Delivery::Lost
                        } else {
                            let result = apply(world);
                            let line = format!("coordination {id} {operation} ok={}", result.is_ok());
                            world.record(&line);
                            Delivery::Answer(result)
                        };
                        let _ = reply.send(delivery);
                    })),
                );
            }
            let Ok(delivery) = answer.await else {
                return Err(CoordinationError::Unavailable {
                    reason: "simulation ended".to_string(),
                });
            };
            match delivery {
                Delivery::Answer(result) => {
                    virtual_delay(&shared, latency).await;
                    result
                }
                Delivery::Lost => {
                    virtual_delay(&shared, timeout.saturating_sub(latency)).await;
                    Err(CoordinationError::Timeout { operation })
                }
            }
        })
    }
}

/// Another writer rewrites the first compared key (same value, same lease),
/// bumping its revisions just before `txn` runs. Counted only when that
/// flips the transaction's outcome.
fn inject_conflict(world: &mut World, txn: &Txn) {
    let Some(compare) = txn.compares.first() else {
        return;
    };
    let now = world.store_now();
    let Ok(Some(existing)) = world.coordination.get(&compare.key, now) else {
        return;
    };
    let mut probe: CoordinationState = world.coordination.clone();
    let would_succeed = probe.txn(txn, now).map(|response| response.succeeded);
    let rewrite = Txn {
        success: vec![TxnOp::Put {
            key: existing.key.clone(),
            value: existing.value.clone(),
            lease: existing.lease,
        }],
        ..Txn::default()
    };
    if world.coordination.txn(&rewrite, now).is_err() {
        return;
    }
    let mut probe = world.coordination.clone();
    let now_succeeds = probe.txn(txn, now).map(|response| response.succeeded);
    if would_succeed == Ok(true) && now_succeeds == Ok(false) {
        let detail = format!("concurrent write to {}", existing.key);
        world.effect(FaultKind::ConcurrentConflict, &detail);
    }
}

impl CoordinationStore for SimCoordination {
    fn get(&self, key: &str) -> BoxFuture<'_, Result<Option<KeyValue>, CoordinationError>> {
        let key = key.to_string();
        self.request("get", move |world| {
            let now = world.store_now();
            world.coordination.get(&key, now)
        })
    }

    fn range(&self, prefix: &str) -> BoxFuture<'_, Result<Vec<KeyValue>, CoordinationError>> {
        let prefix = prefix.to_string();
        self.request("range", move |world| {
            let now = world.store_now();
            world.coordination.range(&prefix, now)
        })
    }

    fn txn(&self, txn: Txn) -> BoxFuture<'_, Result<TxnResponse, CoordinationError>> {
        self.request("txn", move |world| {
            if world.draw(FaultKind::ConcurrentConflict) {
                inject_conflict(world, &txn);
            }
            let now = world.store_now();
            world.coordination.txn(&txn, now)
        })
    }

    fn lease_grant(&self, ttl: Duration) -> BoxFuture<'_, Result<LeaseGrant, CoordinationError>> {
        self.request("lease_grant", move |world| {
            let now = world.store_now();
            world.coordination.lease_grant(ttl, now)
        })
    }

    fn lease_keep_alive(&self, lease: LeaseId) -> BoxFuture<'_, Result<Duration, CoordinationError>> {
        self.request("lease_keep_alive", move |world| {
            let now = world.store_now();
            world.coordination.lease_keep_alive(lease, now)
        })
    }

    fn lease_revoke(&self, lease: LeaseId) -> BoxFuture<'_, Result<(), CoordinationError>> {
        self.request("lease_revoke", move |world| {
            let now = world.store_now();
            world.coordination.lease_revoke(lease, now)
        })
    }
}
