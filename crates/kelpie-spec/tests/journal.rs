//! `KelpieJournal` on the production journal and store: effects exactly
//! once, atomic with their completion, durable once acknowledged.

#[allow(unused_imports)] // Some bug switches compile every test here out.
use kelpie_spec::check;
use kelpie_spec::journal::KelpieJournal;

#[cfg(not(any(feature = "bug-journal-replay-completed", feature = "bug-storage-nonatomic-apply")))]
#[test]
fn kelpie_journal_holds_within_bounds() {
    check::holds_within_bounds("KelpieJournal", KelpieJournal::default());
}

#[cfg(feature = "bug-journal-replay-completed")]
#[test]
fn replay_completed_breaks_replay_idempotent() {
    check::discovers(KelpieJournal::default(), "ReplayIdempotent");
}

#[cfg(feature = "bug-storage-nonatomic-apply")]
#[test]
fn nonatomic_apply_breaks_atomic_visibility() {
    check::discovers(KelpieJournal::default(), "AtomicVisibility");
}
