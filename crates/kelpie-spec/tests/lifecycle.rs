//! `KelpieActorLifecycle`: the production lifecycle core in its
//! environment; no accepted message is lost, no activation serves a stale
//! state.

use kelpie_spec::check;
use kelpie_spec::lifecycle::{KelpieActorLifecycle, LAction};

#[cfg(not(feature = "bug-runtime-drop-on-deactivate"))]
#[test]
fn kelpie_actor_lifecycle_holds_within_bounds() {
    check::holds_within_bounds("KelpieActorLifecycle", KelpieActorLifecycle::default());
}

#[cfg(feature = "bug-runtime-drop-on-deactivate")]
#[test]
fn drop_on_deactivate_breaks_graceful_deactivation() {
    let path = check::discovers_shortest(KelpieActorLifecycle::default(), "GracefulDeactivation");
    assert_eq!(path.last(), Some(&LAction::Deactivate));
    assert!(path.contains(&LAction::Bounce), "{path:?}");
}

/// The witnesses are reachable, each by a shortest path (BFS) whose
/// length and last step pin down the core's answers: a closed mailbox
/// refuses at once after a failed activation; a graceful drain handles what
/// was accepted; a drain that lost the actor answers with an error; a new
/// activation loads what another node wrote.
#[cfg(not(feature = "bug-runtime-drop-on-deactivate"))]
#[test]
fn the_interesting_states_are_reached_by_the_expected_paths() {
    use LAction::*;
    let model = KelpieActorLifecycle::default();
    let cases: [(&'static str, usize, LAction); 4] = [
        ("BusyWhileDraining", 3, Deliver(1)),
        ("DrainHandles", 4, Handle),
        ("DrainBounces", 3, Bounce),
        ("ReactivatedAfterRemote", 3, Activate),
    ];
    for (property, length, last) in cases {
        let path = check::discovers_shortest(model.clone(), property);
        assert_eq!(path.len(), length, "{property}: {path:?}");
        assert_eq!(
            std::mem::discriminant(path.last().expect("a path")),
            std::mem::discriminant(&last),
            "{property}: {path:?}"
        );
    }
}
