//! Single activation under pauses past the lease, skew, jumps, crashes,
//! partitions and coordination faults, over many seeds, then a quiet phase
//! in which every actor must become servable again.
//! `DST_SEEDS=k` for more seeds, `DST_SEED=n` to replay one.

use kelpie_dst::scenarios::ownership::{
    OwnershipScenario, FENCING_TOKEN_MONOTONIC, LEASE_UNIQUENESS, LINEARIZABLE, NO_ZOMBIE_WRITE, SINGLE_ACTIVATION,
};
use kelpie_dst::{seeds_from_env, FaultCounters, FaultKind, SeedGuard};

#[test]
fn single_activation_holds_and_actors_come_back_after_faults_stop() {
    let seeds = seeds_from_env(9_000, 50).expect("valid DST_* variables");
    let scenario = OwnershipScenario::default();
    let mut faults = FaultCounters::default();
    let mut commits = 0;
    for seed in &seeds {
        let _guard = SeedGuard::new(*seed);
        let (report, coverage) = scenario.run(*seed).unwrap_or_else(|failure| panic!("{failure}"));
        faults.merge(&report.faults);
        commits += coverage.commits;
        for name in [
            SINGLE_ACTIVATION,
            LEASE_UNIQUENESS,
            FENCING_TOKEN_MONOTONIC,
            NO_ZOMBIE_WRITE,
            LINEARIZABLE,
        ] {
            assert_eq!(
                report.invariant_evaluations.get(name).copied(),
                Some(report.steps + 1),
                "{name}"
            );
        }
        // Liveness: after faults stop (+ 2 TTL), every actor is served again.
        assert_eq!(
            coverage.successes_after_quiet.len(),
            3,
            "seed {seed}: actors served after the quiet phase began: {:?}",
            coverage.successes_after_quiet
        );
    }
    println!("{} seeds, {commits} commits; fault effects: {faults}", seeds.len());
    for kind in [
        FaultKind::NodePause,
        FaultKind::ClockSkew,
        FaultKind::NodeCrash,
        FaultKind::CoordinationTimeout,
    ] {
        assert!(faults.get(kind) > 0, "{kind} never had an effect");
    }
}

mod zombie {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use bytes::Bytes;
    use kelpie_core::ActorId;
    use kelpie_dst::{FaultAction, Simulation};
    use kelpie_runtime::driver::{install_fence, OwnershipDriver};
    use kelpie_runtime::ownership::OwnershipConfig;
    use kelpie_storage::{MemoryEngine, StorageError, Store};

    type Slot<T> = Arc<Mutex<Option<T>>>;

    fn get<T: Clone>(slot: &Slot<T>) -> Option<T> {
        slot.lock().expect("not poisoned").clone()
    }

    #[test]
    fn a_paused_owner_that_wakes_after_a_takeover_cannot_commit() {
        let actor: ActorId = "register/r0".parse().expect("valid");
        let store: Slot<Store> = Arc::default();
        let zombie_result: Slot<Result<u64, StorageError>> = Arc::default();
        let tokens: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
        let config = OwnershipConfig::new(
            Duration::from_secs(1),
            Duration::from_millis(250),
            Duration::from_millis(100),
        )
        .expect("valid");
        let (boot_store, boot_result, boot_tokens, boot_actor) =
            (store.clone(), zombie_result.clone(), tokens.clone(), actor.clone());
        Simulation::<OwnershipDriver>::new(1)
            .harness("store", {
                let store = store.clone();
                move |env| {
                    Box::pin(async move {
                        *store.lock().expect("not poisoned") =
                            Some(Store::new(Arc::new(MemoryEngine::new()), env.spawner.clone()));
                    })
                }
            })
            .nodes(2, move |env| {
                let driver = OwnershipDriver::start(env.clone(), config);
                let (store, result, tokens, actor) = (
                    boot_store.clone(),
                    boot_result.clone(),
                    boot_tokens.clone(),
                    boot_actor.clone(),
                );
                let me = driver.clone();
                let _script = env.spawner.clone().spawn(
                    "script",
                    Box::pin(async move {
                        let is_a = env.node_id.as_str() == "node-0";
                        // B waits until A's lease has long expired at the store.
                        let start = if is_a { 1 } else { 1_500 };
                        env.clock.sleep(Duration::from_millis(start)).await;
                        let store = get(&store).expect("store created");
                        let token = me.claim(&actor).await.expect("claim succeeds");
                        tokens
                            .lock()
                            .expect("not poisoned")
                            .push((env.node_id.to_string(), token.0));
                        install_fence(&store, &actor, token).await.expect("fence installed");
                        let mut txn = store.begin().expect("begin");
                        let value = if is_a { "written by A" } else { "written by B" };
                        txn.put(&actor, b"value", Bytes::from_static(value.as_bytes()))
                            .expect("put");
                        txn.require_fence(&actor, token.to_bytes());
                        if is_a {
                            // A is paused (by the schedule below) in the middle of its work.
                            env.clock.sleep(Duration::from_millis(200)).await;
                            let outcome = txn.commit().await.map(|info| info.version);
                            *result.lock().expect("not poisoned") = Some(outcome);
                        } else {
                            txn.commit().await.expect("B commits");
                        }
                    }),
                );
                driver
            })
            .schedule_fault(
                Duration::from_millis(100),
                FaultAction::Pause {
                    node: 0,
                    duration: Duration::from_secs(3),
                },
            )
            .max_virtual_time(Duration::from_secs(5))
            .run()
            .expect("runs");
        let tokens = tokens.lock().expect("not poisoned").clone();
        assert_eq!(tokens.len(), 2, "{tokens:?}");
        let (a_token, b_token) = (tokens[0].1, tokens[1].1);
        assert_eq!((tokens[0].0.as_str(), tokens[1].0.as_str()), ("node-0", "node-1"));
        assert!(b_token > a_token);
        assert_eq!(
            get(&zombie_result),
            Some(Err(StorageError::FencingRejected {
                key: "fregister/r0\\x00".into(),
                expected: a_token.to_be_bytes().to_vec(),
                found: Some(b_token.to_be_bytes().to_vec()),
            }))
        );
        let store = get(&store).expect("store");
        let mut check = store.begin().expect("begin");
        assert_eq!(
            check.get(&actor, b"value"),
            Ok(Some(Bytes::from_static(b"written by B")))
        );
    }
}
