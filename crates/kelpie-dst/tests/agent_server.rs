//! The agent server on 3 nodes sharing one store, clients creating agents
//! with memory blocks under idempotency keys and retrying across crashes,
//! pauses, clock faults, partitions and store faults: `AgentCreateAtomic`
//! and `IdempotentCreate` after every event, then every client served again
//! once the faults stop (`CreateEventuallySucceeds`).
//! `DST_SEEDS=k` for more seeds, `DST_SEED=n` to replay one.

use kelpie_dst::scenarios::agent_server::{AgentServerScenario, AGENT_CREATE_ATOMIC, IDEMPOTENT_CREATE};
use kelpie_dst::{seeds_from_env, FaultCounters, FaultKind, SeedGuard};

#[test]
fn agent_server_creates_are_atomic_and_idempotent_and_every_client_is_served_after_faults_stop() {
    let seeds = seeds_from_env(30_000, 100).expect("valid DST_* variables");
    let scenario = AgentServerScenario::default();
    let mut faults = FaultCounters::default();
    let (mut requests, mut acknowledged, mut after_retry, mut after_crash, mut after_deadline, mut agents) =
        (0, 0, 0, 0, 0, 0);
    for seed in &seeds {
        let _guard = SeedGuard::new(*seed);
        let (report, coverage) = scenario.run(*seed).unwrap_or_else(|failure| panic!("{failure}"));
        faults.merge(&report.faults);
        for name in [AGENT_CREATE_ATOMIC, IDEMPOTENT_CREATE] {
            assert_eq!(
                report.invariant_evaluations.get(name).copied(),
                Some(report.steps + 1),
                "seed {seed}: {name} not evaluated after every event"
            );
        }
        assert_eq!(coverage.served_after_quiet, scenario.clients, "seed {seed}");
        // Every request is valid: nothing may be refused for good.
        assert_eq!(coverage.rejected, 0, "seed {seed}: {:?}", coverage.rejections);
        // Every acknowledged request is one committed agent.
        assert!(
            coverage.agents_committed as u64 >= coverage.acknowledged,
            "seed {seed}: {coverage:?}"
        );
        requests += coverage.requests;
        acknowledged += coverage.acknowledged;
        after_retry += coverage.acknowledged_after_retry;
        after_crash += coverage.retried_after_crash;
        after_deadline += coverage.retried_after_deadline;
        agents += coverage.agents_committed;
    }
    println!(
        "{} seeds: {requests} create requests, {acknowledged} acknowledged ({after_retry} after a retry), \
         {after_crash} attempts lost to crashes, {after_deadline} timed out, {agents} agents committed; \
         fault effects: {faults}",
        seeds.len()
    );
    if seeds.len() >= 20 {
        assert!(after_retry > 0, "no request needed a retry");
        assert!(after_crash > 0, "no attempt was lost to a crash");
        for kind in [
            FaultKind::NodeCrash,
            FaultKind::NodePause,
            FaultKind::DiskWriteError,
            FaultKind::CoordinationTimeout,
        ] {
            assert!(faults.get(kind) > 0, "{kind} never had an effect");
        }
    }
}

#[test]
fn agent_server_same_seed_same_trace_hash() {
    let seeds = seeds_from_env(42, 1).expect("valid DST_* variables");
    let scenario = AgentServerScenario {
        keep_trace: true,
        ..AgentServerScenario::default()
    };
    for seed in seeds {
        let _guard = SeedGuard::new(seed);
        let (first, first_coverage) = scenario.run(seed).unwrap_or_else(|failure| panic!("{failure}"));
        let (second, second_coverage) = scenario.run(seed).unwrap_or_else(|failure| panic!("{failure}"));
        println!(
            "agent-server seed {seed}: trace hash {} ({} steps)",
            first.trace_hash, first.steps
        );
        assert_eq!(
            first.trace_hash, second.trace_hash,
            "seed {seed} produced two different runs"
        );
        assert_eq!(first.steps, second.steps);
        assert_eq!(first_coverage, second_coverage);
        let hash = first.trace_hash.clone();
        let (first, second) = (first.trace.expect("kept"), second.trace.expect("kept"));
        if let Some(index) = first.iter().zip(&second).position(|(a, b)| a != b) {
            panic!(
                "runs diverge at event {index}: {:?} vs {:?}",
                first[index], second[index]
            );
        }
        assert!(first.len() > 1_000, "workload too small: {} events", first.len());
        let (other, _) = scenario
            .run(seed.wrapping_add(1))
            .unwrap_or_else(|failure| panic!("{failure}"));
        assert_ne!(
            hash,
            other.trace_hash,
            "seeds {seed} and {} gave the same run",
            seed.wrapping_add(1)
        );
    }
}
