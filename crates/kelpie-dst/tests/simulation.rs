//! The simulator's own contract: bounds enforced, failures reported with
//! invariant, seed, step and trace tail; crashes drop a node's tasks and
//! restarts rerun its boot code; scheduling is drawn from the seed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kelpie_core::spawn::TaskExit;
use kelpie_core::NodeEnv;
use kelpie_dst::{FailureKind, FaultAction, NodeLife, Simulation, StopReason};

/// A node that counts in a loop, one tick per `period` of its clock.
struct Counter {
    ticks: AtomicU64,
}

impl Counter {
    fn start(env: NodeEnv, period: Duration) -> Arc<Counter> {
        let counter = Arc::new(Counter {
            ticks: AtomicU64::new(0),
        });
        let me = counter.clone();
        let _task = env.spawner.clone().spawn(
            "counter",
            Box::pin(async move {
                loop {
                    env.clock.sleep(period).await;
                    me.ticks.fetch_add(1, Ordering::SeqCst);
                }
            }),
        );
        counter
    }

    fn ticks(&self) -> u64 {
        self.ticks.load(Ordering::SeqCst)
    }
}

#[test]
fn max_steps_is_enforced() {
    let report = Simulation::new(1)
        .nodes(2, |env| Counter::start(env, Duration::from_millis(1)))
        .max_steps(500)
        .run()
        .expect("runs");
    assert_eq!(report.stop, StopReason::StepLimit);
    assert_eq!(report.steps, 500);
}

#[test]
fn max_virtual_time_is_enforced() {
    let report = Simulation::new(1)
        .nodes(1, |env| Counter::start(env, Duration::from_millis(10)))
        .max_virtual_time(Duration::from_secs(1))
        .run()
        .expect("runs");
    assert_eq!(report.stop, StopReason::TimeLimit);
    assert_eq!(report.virtual_time, Duration::from_secs(1));
}

#[test]
fn a_run_with_nothing_left_to_do_is_quiescent() {
    let report = Simulation::<()>::new(1)
        .nodes(2, |env| {
            let _task = env.spawner.spawn("once", Box::pin(async {}));
            Arc::new(())
        })
        .run()
        .expect("runs");
    assert_eq!(report.stop, StopReason::Quiescent);
}

fn violating_run(seed: u64) -> Box<kelpie_dst::SimFailure> {
    Simulation::new(seed)
        .nodes(3, |env| Counter::start(env, Duration::from_millis(7)))
        .invariant("TicksBelowFifty", |view| {
            for node in view.nodes {
                let ticks = node.state.as_ref().map_or(0, |c| c.ticks());
                if ticks >= 50 {
                    return Err(format!("{} reached {ticks} ticks", node.id));
                }
            }
            Ok(())
        })
        .run()
        .expect_err("the invariant must fail")
}

#[test]
fn an_invariant_violation_names_invariant_seed_step_and_recent_events() {
    let failure = violating_run(77);
    assert_eq!(failure.invariant(), Some("TicksBelowFifty"));
    assert_eq!(failure.seed, 77);
    assert!(failure.step > 0);
    assert_eq!(failure.trace_tail.len(), kelpie_dst::simulation::TRACE_TAIL_EVENTS);
    let text = failure.to_string();
    assert!(text.contains("invariant TicksBelowFifty violated at step"), "{text}");
    assert!(text.contains("seed 77"), "{text}");
    assert!(text.contains("DST_SEED=77"), "{text}");
    assert!(text.contains("reached 50 ticks"), "{text}");
    let again = violating_run(77);
    assert_eq!(
        (again.step, again.trace_hash.clone()),
        (failure.step, failure.trace_hash.clone())
    );
}

#[test]
fn a_panicking_task_fails_the_run_by_default_and_can_be_tolerated() {
    let boot = |env: NodeEnv| {
        let _task = env.spawner.spawn("doomed", Box::pin(async { panic!("handler bug") }));
        Arc::new(())
    };
    let failure = Simulation::<()>::new(2).nodes(1, boot).run().expect_err("panics fail");
    assert_eq!(
        failure.kind,
        FailureKind::TaskPanicked {
            task: "#1 doomed@node-0".to_string(),
            message: "handler bug".to_string()
        }
    );
    let report = Simulation::<()>::new(2)
        .nodes(1, boot)
        .fail_on_task_panic(false)
        .run()
        .expect("tolerated");
    assert_eq!(report.task_panics, 1);
}

#[test]
fn join_reports_how_a_task_ended() {
    let exits = Arc::new(Mutex::new(Vec::new()));
    let sink = exits.clone();
    Simulation::<()>::new(4)
        .harness("supervisor", move |env| {
            Box::pin(async move {
                let ok = env.spawner.spawn("ok", Box::pin(async {}));
                let boom = env.spawner.spawn("boom", Box::pin(async { panic!("boom") }));
                let stuck = env.spawner.spawn("stuck", Box::pin(futures::future::pending()));
                stuck.abort();
                let results = vec![ok.join().await, boom.join().await, stuck.join().await];
                *sink.lock().expect("not poisoned") = results;
            })
        })
        .fail_on_task_panic(false)
        .run()
        .expect("runs");
    assert_eq!(
        *exits.lock().expect("not poisoned"),
        vec![
            TaskExit::Completed,
            TaskExit::Panicked {
                message: "boom".to_string()
            },
            TaskExit::Aborted
        ]
    );
}

#[test]
fn a_crash_drops_the_nodes_tasks_and_a_restart_reruns_its_boot_code() {
    let boots = Arc::new(AtomicU64::new(0));
    let counted = boots.clone();
    let samples = Arc::new(Mutex::new(Vec::new()));
    let sink = samples.clone();
    let report = Simulation::new(9)
        .nodes(2, move |env| {
            counted.fetch_add(1, Ordering::SeqCst);
            Counter::start(env, Duration::from_millis(10))
        })
        .schedule_fault(
            Duration::from_millis(205),
            FaultAction::Crash {
                node: 1,
                downtime: Duration::from_millis(300),
            },
        )
        .max_virtual_time(Duration::from_secs(1))
        .observer(move |view| {
            let node = &view.nodes[1];
            sink.lock().expect("not poisoned").push((
                view.now,
                node.life,
                node.boot,
                node.state.as_ref().map(|c| c.ticks()),
            ));
            Ok(())
        })
        .run()
        .expect("runs");
    assert_eq!(boots.load(Ordering::SeqCst), 3, "two first boots and one restart");
    assert_eq!(report.faults.get(kelpie_dst::FaultKind::NodeCrash), 1);
    let samples = samples.lock().expect("not poisoned").clone();
    let down: Vec<_> = samples
        .iter()
        .filter(|s| matches!(s.1, NodeLife::Down { .. }))
        .collect();
    assert!(!down.is_empty());
    assert!(down.iter().all(|s| s.3.is_none()), "volatile state is gone while down");
    let last = samples.last().expect("samples");
    assert_eq!(last.2, 2, "second boot");
    // Restarted at 505 ms with a fresh counter: about 49 ticks by 1 s.
    assert_eq!(last.3, Some(49));
}

#[test]
fn scheduling_among_ready_tasks_comes_from_the_seed() {
    let order_for = |seed: u64| {
        let order = Arc::new(Mutex::new(Vec::new()));
        let sink = order.clone();
        Simulation::<()>::new(seed)
            .harness("spawner", move |env| {
                Box::pin(async move {
                    for name in ["a", "b", "c", "d"] {
                        let sink = sink.clone();
                        let _task = env.spawner.spawn(
                            name,
                            Box::pin(async move { sink.lock().expect("not poisoned").push(name) }),
                        );
                    }
                })
            })
            .run()
            .expect("runs");
        let result = order.lock().expect("not poisoned").clone();
        result
    };
    assert_eq!(order_for(5), order_for(5));
    let distinct: std::collections::BTreeSet<Vec<&str>> = (0..20).map(order_for).collect();
    assert!(distinct.len() > 5, "only {} orders over 20 seeds", distinct.len());
}

#[test]
fn two_receivers_on_one_node_each_get_a_message() {
    let received = Arc::new(AtomicU64::new(0));
    let sink = received.clone();
    let report = Simulation::<()>::new(6)
        .nodes(2, move |env| {
            if env.node_id == kelpie_core::NodeId::from_index(0) {
                for _ in 0..2 {
                    let env = env.clone();
                    let sink = sink.clone();
                    let _task = env.spawner.clone().spawn(
                        "receiver",
                        Box::pin(async move {
                            if env.transport.recv().await.is_ok() {
                                sink.fetch_add(1, Ordering::SeqCst);
                            }
                        }),
                    );
                }
            } else {
                let _task = env.spawner.clone().spawn(
                    "sender",
                    Box::pin(async move {
                        env.clock.sleep(Duration::from_millis(5)).await;
                        for payload in [&b"one"[..], &b"two"[..]] {
                            let to = kelpie_core::NodeId::from_index(0);
                            env.transport
                                .send(&to, bytes::Bytes::from_static(payload))
                                .expect("sent");
                        }
                    }),
                );
            }
            Arc::new(())
        })
        .run()
        .expect("runs");
    assert_eq!(report.stop, StopReason::Quiescent);
    assert_eq!(received.load(Ordering::SeqCst), 2);
}

/// Counts drops of the futures a crashed node was running.
struct DropCounter(Arc<AtomicU64>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_crash_drops_every_task_of_the_node_and_its_handles_go_dead() {
    let dropped = Arc::new(AtomicU64::new(0));
    let sink = dropped.clone();
    let spawned_after_crash = Arc::new(AtomicU64::new(0));
    let late = spawned_after_crash.clone();
    let envs = Arc::new(Mutex::new(Vec::new()));
    let keep = envs.clone();
    Simulation::<()>::new(8)
        .nodes(1, move |env| {
            keep.lock().expect("not poisoned").push(env.clone());
            for _ in 0..3 {
                let guard = DropCounter(sink.clone());
                let _task = env.spawner.spawn(
                    "forever",
                    Box::pin(async move {
                        let _guard = guard;
                        futures::future::pending::<()>().await;
                    }),
                );
            }
            Arc::new(())
        })
        .schedule_fault(
            Duration::from_millis(10),
            FaultAction::Crash {
                node: 0,
                downtime: Duration::from_secs(10),
            },
        )
        .harness("zombie-check", move |env| {
            Box::pin(async move {
                env.clock.sleep(Duration::from_millis(20)).await;
                let first = envs.lock().expect("not poisoned")[0].clone();
                let late = late.clone();
                let handle = first.spawner.spawn(
                    "zombie",
                    Box::pin(async move {
                        late.fetch_add(1, Ordering::SeqCst);
                    }),
                );
                assert_eq!(handle.join().await, TaskExit::Aborted);
                assert!(matches!(
                    first
                        .transport
                        .send(&kelpie_core::NodeId::from_index(0), bytes::Bytes::new()),
                    Err(kelpie_core::transport::TransportError::Closed)
                ));
                assert!(matches!(
                    first.disk.open("x"),
                    Err(kelpie_core::disk::DiskError::Io { .. })
                ));
            })
        })
        .max_virtual_time(Duration::from_secs(1))
        .run()
        .expect("runs");
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        3,
        "all three tasks dropped at the crash"
    );
    assert_eq!(
        spawned_after_crash.load(Ordering::SeqCst),
        0,
        "a crashed incarnation cannot start work"
    );
}
