//! `KelpieDurability`: the production store over the embedded engine over
//! an in-memory disk whose crash loses unsynced writes; every acknowledged
//! commit survives a crash at any disk operation.

#[allow(unused_imports)] // Some bug switches compile every test here out.
use kelpie_spec::check;
use kelpie_spec::durability::KelpieDurability;

#[cfg(not(feature = "bug-storage-ack-before-sync"))]
#[test]
fn kelpie_durability_holds_within_bounds() {
    check::holds_within_bounds("KelpieDurability", KelpieDurability::default());
}

#[cfg(feature = "bug-storage-ack-before-sync")]
#[test]
fn ack_before_sync_breaks_durability() {
    check::discovers(KelpieDurability::default(), "Durability");
}
