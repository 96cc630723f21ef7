//! `KelpieTransaction` on the production store: committed transactions are
//! serializable in commit order; without the OCC check they are not.

// Under `bug-storage-nonatomic-apply` every commit goes through the store's
// committer task, which this model's store (over `NoSpawner`) never runs;
// the switch is checked by the `KelpieJournal` model, which drives it.
#![cfg(not(feature = "bug-storage-nonatomic-apply"))]

#[allow(unused_imports)] // Some bug switches compile every test here out.
use kelpie_spec::check;
use kelpie_spec::transaction::KelpieTransaction;

#[cfg(not(feature = "bug-storage-skip-occ-check"))]
#[test]
fn kelpie_transaction_holds_within_bounds() {
    check::holds_within_bounds("KelpieTransaction", KelpieTransaction::default());
}

#[cfg(feature = "bug-storage-skip-occ-check")]
#[test]
fn skip_occ_check_breaks_serializable_isolation() {
    check::discovers(KelpieTransaction::default(), "SerializableIsolation");
}
