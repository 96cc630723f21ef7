//! `KelpieHeartbeat` checked exhaustively within its bounds, each heartbeat
//! bug switch caught by name, and the in-memory disk's snapshot and
//! injected error the model relies on.

#[allow(unused_imports)] // Some bug switches compile every check here out.
use kelpie_spec::check;
use kelpie_spec::heartbeat::KelpieHeartbeat;
use kelpie_spec::memdisk::MemDisk;

use kelpie_core::disk::{Disk, DiskError};

#[cfg(not(any(
    feature = "bug-incarnation-no-fsync",
    feature = "bug-heartbeat-accept-stale-incarnation",
    feature = "bug-heartbeat-never-suspect"
)))]
#[test]
fn kelpie_heartbeat_holds_within_bounds() {
    check::holds_within_bounds("KelpieHeartbeat", KelpieHeartbeat::default());
}

#[cfg(not(any(
    feature = "bug-incarnation-no-fsync",
    feature = "bug-heartbeat-accept-stale-incarnation",
    feature = "bug-heartbeat-never-suspect"
)))]
#[test]
fn kelpie_heartbeat_with_disk_errors_holds_within_bounds() {
    check::holds_within_bounds("KelpieHeartbeat (disk errors)", KelpieHeartbeat::with_disk_errors());
}

#[cfg(feature = "bug-incarnation-no-fsync")]
#[test]
fn incarnation_no_fsync_breaks_incarnation_monotonic() {
    check::discovers(KelpieHeartbeat::default(), "IncarnationMonotonic");
}

#[cfg(feature = "bug-heartbeat-accept-stale-incarnation")]
#[test]
fn accept_stale_incarnation_breaks_peer_incarnation_monotonic() {
    check::discovers(KelpieHeartbeat::default(), "PeerIncarnationMonotonic");
}

#[cfg(feature = "bug-heartbeat-never-suspect")]
#[test]
fn never_suspect_breaks_crashed_node_suspected() {
    check::discovers(KelpieHeartbeat::default(), "CrashedNodeSuspected");
}

#[test]
fn memdisk_image_round_trips_and_fail_after_injects_one_error() {
    let disk = MemDisk::new();
    let file = disk.open("f").expect("open");
    file.write(0, b"durable").expect("write");
    file.sync_data().expect("sync");
    file.write(0, b"DUR").expect("write");
    let image = disk.image();
    assert_eq!(image.unsynced(), 1);

    // The copy reads what the original reads and keeps the unsynced write
    // unsynced: a crash of the copy that keeps nothing loses it.
    let copy = MemDisk::from_image(&image);
    assert_eq!(copy.image(), image);
    let copied = copy.open("f").expect("open");
    assert_eq!(copied.read(0, 7).expect("read"), b"DURable");
    copy.kill();
    copy.restart(0);
    assert_eq!(copy.open("f").expect("open").read(0, 7).expect("read"), b"durable");
    assert_eq!(copy.image().unsynced(), 0);

    // One injected error at the second mutating operation: it changes
    // nothing and the disk keeps running.
    let disk = MemDisk::from_image(&image);
    let file = disk.open("f").expect("open");
    disk.fail_after(1);
    file.write(3, b"x").expect("the first operation succeeds");
    assert!(matches!(file.sync_data(), Err(DiskError::Io { .. })));
    assert!(!disk.crashed());
    assert_eq!(disk.image().unsynced(), 2);
    assert_eq!(file.read(0, 7).expect("read"), b"DURxble");
    file.sync_data().expect("only one error is injected");
    assert_eq!(disk.image().unsynced(), 0);
}
