//! Per-node clocks: skew both ways, jumps, and pauses, each observed by
//! production-style code through the `Clock` seam.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kelpie_core::{MonotonicInstant, NodeEnv, WallTime};
use kelpie_dst::{FaultAction, FaultKind, NodeLife, Simulation};

/// A node that reads its clock every `period` and keeps the readings.
struct Ticker {
    readings: Mutex<Vec<(MonotonicInstant, WallTime)>>,
}

impl Ticker {
    fn start(env: NodeEnv, period: Duration) -> Arc<Ticker> {
        let ticker = Arc::new(Ticker {
            readings: Mutex::new(Vec::new()),
        });
        let me = ticker.clone();
        let _task = env.spawner.clone().spawn(
            "ticker",
            Box::pin(async move {
                loop {
                    env.clock.sleep(period).await;
                    let reading = (env.clock.now_monotonic(), env.clock.now_wall());
                    me.readings.lock().expect("not poisoned").push(reading);
                }
            }),
        );
        ticker
    }

    fn readings(&self) -> Vec<(MonotonicInstant, WallTime)> {
        self.readings.lock().expect("not poisoned").clone()
    }
}

type Samples = Arc<Mutex<Vec<(Duration, Vec<usize>, Vec<NodeLife>)>>>;

fn sampled(sim: Simulation<Ticker>) -> (Simulation<Ticker>, Samples) {
    let samples: Samples = Arc::new(Mutex::new(Vec::new()));
    let sink = samples.clone();
    let sim = sim.observer(move |view| {
        let counts = view
            .nodes
            .iter()
            .map(|node| node.state.as_ref().map_or(0, |t| t.readings().len()))
            .collect();
        let lives = view.nodes.iter().map(|node| node.life).collect();
        sink.lock().expect("not poisoned").push((view.now, counts, lives));
        Ok(())
    });
    (sim, samples)
}

#[test]
fn paused_node_observes_no_time_pass_while_others_do() {
    let period = Duration::from_millis(10);
    let pause_at = Duration::from_millis(100);
    let pause_for = Duration::from_secs(1);
    let (sim, samples) = sampled(
        Simulation::new(3)
            .nodes(2, move |env| Ticker::start(env, period))
            .schedule_fault(
                pause_at,
                FaultAction::Pause {
                    node: 0,
                    duration: pause_for,
                },
            )
            .max_virtual_time(Duration::from_secs(2)),
    );
    let report = sim.run().expect("no invariants to violate");
    assert_eq!(report.faults.get(FaultKind::NodePause), 1);

    let samples = samples.lock().expect("not poisoned").clone();
    let during: Vec<_> = samples
        .iter()
        .filter(|(now, _, _)| *now > pause_at && *now < pause_at + pause_for)
        .collect();
    assert!(during.len() > 50, "the pause window saw {} steps", during.len());
    let paused_counts: Vec<usize> = during.iter().map(|(_, counts, _)| counts[0]).collect();
    let running_counts: Vec<usize> = during.iter().map(|(_, counts, _)| counts[1]).collect();
    assert!(
        paused_counts.windows(2).all(|pair| pair[0] == pair[1]),
        "the paused node made observations during its pause"
    );
    let observed_by_running = running_counts.last().copied().unwrap_or(0) - running_counts[0];
    assert!(
        (95..=100).contains(&observed_by_running),
        "the running node ticked {observed_by_running} times in 1 s of 10 ms ticks"
    );
    assert!(during
        .iter()
        .all(|(_, _, lives)| matches!(lives[0], NodeLife::Paused { .. })));

    // After waking, the paused node's clock shows the whole pause at once:
    // time ran on while it could not look.
    let readings = samples.last().map(|(_, counts, _)| counts.clone()).expect("samples");
    assert!(readings[0] > 10, "paused node resumed ticking");
}

#[test]
fn resumed_node_sees_the_pause_as_one_gap() {
    let sim = Simulation::new(5)
        .nodes(1, |env| Ticker::start(env, Duration::from_millis(10)))
        .schedule_fault(
            Duration::from_millis(55),
            FaultAction::Pause {
                node: 0,
                duration: Duration::from_millis(500),
            },
        )
        .max_virtual_time(Duration::from_secs(1));
    let readings = Arc::new(Mutex::new(Vec::new()));
    let sink = readings.clone();
    let report = sim
        .observer(move |view| {
            if let Some(ticker) = &view.nodes[0].state {
                *sink.lock().expect("not poisoned") = ticker.readings();
            }
            Ok(())
        })
        .run()
        .expect("runs");
    assert_eq!(report.faults.get(FaultKind::NodePause), 1);
    let readings = readings.lock().expect("not poisoned").clone();
    let gaps: Vec<u64> = readings
        .windows(2)
        .map(|pair| pair[1].0.saturating_duration_since(pair[0].0).as_millis() as u64)
        .collect();
    let long_gaps: Vec<u64> = gaps.iter().copied().filter(|gap| *gap > 10).collect();
    assert_eq!(long_gaps.len(), 1, "gaps: {gaps:?}");
    assert!((500..=510).contains(&long_gaps[0]), "gap {}", long_gaps[0]);
}

#[test]
fn clocks_skew_both_faster_and_slower_than_real_time() {
    let final_readings = Arc::new(Mutex::new(Vec::new()));
    let sink = final_readings.clone();
    let report = Simulation::new(11)
        .nodes(3, |env| Ticker::start(env, Duration::from_millis(100)))
        .schedule_fault(
            Duration::ZERO,
            FaultAction::ClockRate {
                node: 0,
                rate_ppm: 50_000,
            },
        )
        .schedule_fault(
            Duration::ZERO,
            FaultAction::ClockRate {
                node: 1,
                rate_ppm: -50_000,
            },
        )
        // Half a tick of slack: each sleep rounds its deadline up by < 1 ns.
        .max_virtual_time(Duration::from_millis(10_050))
        .observer(move |view| {
            *sink.lock().expect("not poisoned") = view
                .nodes
                .iter()
                .map(|node| node.state.as_ref().map(|t| t.readings()).unwrap_or_default())
                .collect::<Vec<_>>();
            Ok(())
        })
        .run()
        .expect("runs");
    assert_eq!(report.faults.get(FaultKind::ClockSkew), 2);
    let readings = final_readings.lock().expect("not poisoned").clone();
    let span = |node: usize| {
        let series = &readings[node];
        let first = series.first().expect("ticked").0;
        let last = series.last().expect("ticked").0;
        (series.len(), last.saturating_duration_since(first))
    };
    // Every node ticks every 100 ms of its own time: the fast node ticks
    // more often in real time, the slow one less.
    let (fast_ticks, fast_span) = span(0);
    let (slow_ticks, slow_span) = span(1);
    let (true_ticks, _) = span(2);
    assert_eq!(true_ticks, 100);
    assert_eq!(fast_ticks, 105, "fast node, own span {fast_span:?}");
    assert_eq!(slow_ticks, 95, "slow node, own span {slow_span:?}");
}

#[test]
fn wall_clock_jumps_back_while_monotonic_never_does() {
    let readings = Arc::new(Mutex::new(Vec::new()));
    let sink = readings.clone();
    let report = Simulation::new(13)
        .nodes(1, |env| Ticker::start(env, Duration::from_millis(10)))
        .schedule_fault(
            Duration::from_millis(505),
            FaultAction::ClockJump {
                node: 0,
                wall_delta_ms: -2_000,
                monotonic_forward: Duration::from_millis(30),
            },
        )
        .max_virtual_time(Duration::from_secs(1))
        .observer(move |view| {
            if let Some(ticker) = &view.nodes[0].state {
                *sink.lock().expect("not poisoned") = ticker.readings();
            }
            Ok(())
        })
        .run()
        .expect("runs");
    assert_eq!(report.faults.get(FaultKind::ClockJump), 1);
    let readings = readings.lock().expect("not poisoned").clone();
    assert!(
        readings.windows(2).all(|pair| pair[1].0 > pair[0].0),
        "monotonic went back"
    );
    let wall_steps: Vec<i64> = readings
        .windows(2)
        .map(|pair| pair[1].1.as_unix_ms() - pair[0].1.as_unix_ms())
        .collect();
    let backwards: Vec<i64> = wall_steps.iter().copied().filter(|step| *step < 0).collect();
    assert_eq!(backwards.len(), 1, "wall steps {wall_steps:?}");
    assert!((-1_980..=-1_960).contains(&backwards[0]), "wall step {}", backwards[0]);
}

/// A node that sleeps once for `duration` and records its clock when it wakes.
struct Sleeper {
    woke: Mutex<Option<(Duration, MonotonicInstant)>>,
}

fn sleeper_run(action: FaultAction) -> (MonotonicInstant, MonotonicInstant, Duration) {
    let woke = Arc::new(Mutex::new(None));
    let sink = woke.clone();
    let start = Arc::new(Mutex::new(None));
    let start_sink = start.clone();
    Simulation::new(21)
        .nodes(1, move |env| {
            let sleeper = Arc::new(Sleeper { woke: Mutex::new(None) });
            let me = sleeper.clone();
            let start_sink = start_sink.clone();
            let _task = env.spawner.clone().spawn(
                "sleeper",
                Box::pin(async move {
                    *start_sink.lock().expect("not poisoned") = Some(env.clock.now_monotonic());
                    env.clock.sleep(Duration::from_secs(1)).await;
                    *me.woke.lock().expect("not poisoned") = Some((Duration::ZERO, env.clock.now_monotonic()));
                }),
            );
            sleeper
        })
        .schedule_fault(Duration::from_millis(100), action)
        .max_virtual_time(Duration::from_secs(2))
        .observer(move |view| {
            if let Some(sleeper) = &view.nodes[0].state {
                let mut sink = sink.lock().expect("not poisoned");
                if sink.is_none() {
                    if let Some((_, at)) = *sleeper.woke.lock().expect("not poisoned") {
                        *sink = Some((view.now, at));
                    }
                }
            }
            Ok(())
        })
        .run()
        .expect("runs");
    let start = start.lock().expect("not poisoned").expect("started");
    let (virtual_woke, local_woke) = woke.lock().expect("not poisoned").expect("woke");
    (start, local_woke, virtual_woke)
}

#[test]
fn a_running_sleep_ends_early_in_real_time_when_the_clock_jumps_forward() {
    let (start, woke, virtual_woke) = sleeper_run(FaultAction::ClockJump {
        node: 0,
        wall_delta_ms: 0,
        monotonic_forward: Duration::from_millis(500),
    });
    // One second of the node's own time, of which 500 ms were the jump.
    assert_eq!(woke.saturating_duration_since(start), Duration::from_secs(1));
    assert_eq!(virtual_woke, Duration::from_millis(500));
}

#[test]
fn a_running_sleep_follows_a_clock_that_speeds_up() {
    let (start, woke, virtual_woke) = sleeper_run(FaultAction::ClockRate {
        node: 0,
        rate_ppm: 250_000,
    });
    assert_eq!(woke.saturating_duration_since(start), Duration::from_secs(1));
    // 100 ms at rate 1, then 900 ms of node time at 1.25x = 720 ms.
    assert_eq!(virtual_woke, Duration::from_millis(820));
}

#[test]
fn every_node_starts_with_the_same_wall_clock() {
    let walls = Arc::new(Mutex::new(Vec::new()));
    let sink = walls.clone();
    Simulation::new(1)
        .nodes(3, move |env| {
            sink.lock()
                .expect("not poisoned")
                .push(env.clock.now_wall().as_unix_ms());
            Arc::new(())
        })
        .run()
        .expect("runs");
    let walls = walls.lock().expect("not poisoned").clone();
    assert_eq!(walls, vec![1_767_225_600_000; 3], "2026-01-01T00:00:00Z on every node");
}
