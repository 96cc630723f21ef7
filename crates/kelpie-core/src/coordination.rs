//! The coordination-store seam, shaped like etcd v3.
//!
//! A linearizable key-value store with a global revision counter, leases with
//! a TTL, and transactions that compare on a key's value or revisions and
//! then apply one of two lists of operations, atomically. Every ownership
//! operation in Kelpie is one such transaction (compare-and-set), never a read
//! in one request and a write in another.
//!
//! [`CoordinationState`] is the semantics as a pure state machine (no I/O, no
//! clock reads: time is an input). [`MemoryCoordinationStore`] serves it to
//! one process; the simulator wraps the same state machine with latency and
//! faults; the etcd adapter (cluster layer) speaks the real protocol.
//!
//! A [`CoordinationError::Timeout`] means the outcome is unknown: the request
//! may or may not have been applied. Callers must be written for both.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;

use crate::clock::{MonotonicInstant, SharedClock};

/// Bound on operations (compares plus puts/deletes/gets) in one transaction.
pub const COORDINATION_TXN_OPS_MAX: usize = 128;
/// Bound on a coordination key, in bytes.
pub const COORDINATION_KEY_BYTES_MAX: usize = 1024;
/// Bound on a coordination value, in bytes.
pub const COORDINATION_VALUE_BYTES_MAX: usize = 64 * 1024;
/// Bound on keys returned by one prefix read.
pub const COORDINATION_RANGE_KEYS_MAX: usize = 10_000;

/// A lease id, as granted by the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LeaseId(pub i64);

/// A stored key with its revisions (etcd's `mvccpb.KeyValue`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value.
    pub value: Bytes,
    /// Revision of the transaction that created the key.
    pub create_revision: i64,
    /// Revision of the last transaction that modified the key.
    pub mod_revision: i64,
    /// Number of modifications since creation (1 after create).
    pub version: i64,
    /// The lease the key is attached to, if any.
    pub lease: Option<LeaseId>,
}

/// How a compare relates the stored and given values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CompareOp {
    /// Stored == given.
    Equal,
    /// Stored != given.
    NotEqual,
    /// Stored > given.
    Greater,
    /// Stored < given.
    Less,
}

/// What a compare looks at. For a missing key, revisions and version are 0
/// and a value compare is false.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CompareTarget {
    /// The key's value.
    Value(Bytes),
    /// The key's version.
    Version(i64),
    /// The key's create revision.
    CreateRevision(i64),
    /// The key's mod revision.
    ModRevision(i64),
}

/// One guard of a transaction.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Compare {
    /// The key compared.
    pub key: String,
    /// The relation.
    pub op: CompareOp,
    /// The target and the given value.
    pub target: CompareTarget,
}

impl Compare {
    /// Guard: `key` does not exist.
    pub fn missing(key: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            op: CompareOp::Equal,
            target: CompareTarget::CreateRevision(0),
        }
    }

    /// Guard: `key` was last modified at `revision`.
    pub fn mod_revision_is(key: impl Into<String>, revision: i64) -> Self {
        Self {
            key: key.into(),
            op: CompareOp::Equal,
            target: CompareTarget::ModRevision(revision),
        }
    }

    /// Guard: `key` holds exactly `value`.
    pub fn value_is(key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        Self {
            key: key.into(),
            op: CompareOp::Equal,
            target: CompareTarget::Value(value.into()),
        }
    }
}

/// One operation of a transaction branch.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TxnOp {
    /// Write `value` at `key`, attached to `lease` if given.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: Bytes,
        /// The lease to attach the key to.
        lease: Option<LeaseId>,
    },
    /// Delete `key` (no-op if missing).
    Delete {
        /// The key.
        key: String,
    },
    /// Read `key`.
    Get {
        /// The key.
        key: String,
    },
}

/// The result of one [`TxnOp`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TxnOpResult {
    /// A put was applied.
    Put,
    /// A delete was applied; whether a key existed.
    Delete {
        /// Whether the key existed.
        existed: bool,
    },
    /// The key as read (inside the transaction, after earlier ops).
    Get(Option<KeyValue>),
}

/// An etcd-style transaction: if every compare holds, apply `success`,
/// otherwise apply `failure`, atomically.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Txn {
    /// Guards, all of which must hold.
    pub compares: Vec<Compare>,
    /// Applied when every guard holds.
    pub success: Vec<TxnOp>,
    /// Applied otherwise.
    pub failure: Vec<TxnOp>,
}

/// What a transaction did.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TxnResponse {
    /// Whether the compares held (so `success` was applied).
    pub succeeded: bool,
    /// The store revision after the transaction.
    pub revision: i64,
    /// One result per applied operation, in order.
    pub results: Vec<TxnOpResult>,
}

/// A granted lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LeaseGrant {
    /// The lease id.
    pub id: LeaseId,
    /// The TTL the store will enforce.
    pub ttl: Duration,
}

/// A coordination request failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CoordinationError {
    /// No answer in time: the request may or may not have been applied.
    #[error("coordination request {operation} timed out; it may or may not have been applied")]
    Timeout {
        /// The request: `get`, `range`, `txn`, `lease_grant`, `lease_keep_alive`, `lease_revoke`.
        operation: &'static str,
    },
    /// The store refused the request without applying it (no quorum, closed).
    #[error("coordination store unavailable: {reason}")]
    Unavailable {
        /// Why.
        reason: String,
    },
    /// The lease does not exist (never granted, revoked or expired).
    #[error("lease {} not found (expired or revoked)", .lease.0)]
    LeaseNotFound {
        /// The lease.
        lease: LeaseId,
    },
    /// The request is malformed or over a limit; nothing was applied.
    #[error("invalid coordination request: {reason}")]
    InvalidRequest {
        /// What is wrong.
        reason: String,
    },
}

/// A linearizable, etcd-shaped key-value store.
///
/// Cancellation: dropping any returned future leaves the request's outcome
/// unknown, exactly like a [`CoordinationError::Timeout`].
pub trait CoordinationStore: Send + Sync + 'static {
    /// Reads one key.
    fn get(&self, key: &str) -> BoxFuture<'_, Result<Option<KeyValue>, CoordinationError>>;

    /// Reads every key starting with `prefix`, in key order.
    fn range(&self, prefix: &str) -> BoxFuture<'_, Result<Vec<KeyValue>, CoordinationError>>;

    /// Runs a transaction atomically.
    fn txn(&self, txn: Txn) -> BoxFuture<'_, Result<TxnResponse, CoordinationError>>;

    /// Grants a lease with `ttl`.
    fn lease_grant(&self, ttl: Duration) -> BoxFuture<'_, Result<LeaseGrant, CoordinationError>>;

    /// Renews `lease` to its full TTL; returns the TTL.
    fn lease_keep_alive(&self, lease: LeaseId) -> BoxFuture<'_, Result<Duration, CoordinationError>>;

    /// Revokes `lease`, deleting every key attached to it.
    fn lease_revoke(&self, lease: LeaseId) -> BoxFuture<'_, Result<(), CoordinationError>>;
}

/// A shared coordination store handle.
pub type SharedCoordination = Arc<dyn CoordinationStore>;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct LeaseState {
    ttl: Duration,
    expires_at: MonotonicInstant,
}

/// etcd's semantics as a pure state machine: every method takes the store's
/// current time as an input and performs no I/O.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CoordinationState {
    revision: i64,
    next_lease: i64,
    keys: BTreeMap<String, KeyValue>,
    leases: BTreeMap<LeaseId, LeaseState>,
}

impl Default for CoordinationState {
    fn default() -> Self {
        Self {
            revision: 1,
            next_lease: 1,
            keys: BTreeMap::new(),
            leases: BTreeMap::new(),
        }
    }
}

fn invalid(reason: String) -> CoordinationError {
    CoordinationError::InvalidRequest { reason }
}

fn check_key(key: &str) -> Result<(), CoordinationError> {
    if key.is_empty() {
        return Err(invalid("empty key".to_string()));
    }
    if key.len() > COORDINATION_KEY_BYTES_MAX {
        return Err(invalid(format!(
            "key of {} bytes exceeds {COORDINATION_KEY_BYTES_MAX}",
            key.len()
        )));
    }
    Ok(())
}

impl CoordinationState {
    /// An empty store at revision 1.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store whose revisions continue after `revision` (at least 1):
    /// a single-node store restarted in memory keeps issuing revisions —
    /// and so fencing tokens — above every one it issued before, given the
    /// highest one persisted elsewhere.
    pub fn starting_after(revision: i64) -> Self {
        Self {
            revision: revision.max(1),
            ..Self::default()
        }
    }

    /// The current revision.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// Expires every lease whose deadline is at or before `now`, deleting its
    /// keys. Returns the expired leases.
    pub fn expire_leases(&mut self, now: MonotonicInstant) -> Vec<LeaseId> {
        let expired: Vec<LeaseId> = self
            .leases
            .iter()
            .filter(|(_, lease)| lease.expires_at <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in &expired {
            self.remove_lease(*id);
        }
        expired
    }

    fn remove_lease(&mut self, id: LeaseId) {
        self.leases.remove(&id);
        let before = self.keys.len();
        self.keys.retain(|_, kv| kv.lease != Some(id));
        if self.keys.len() != before {
            self.revision += 1;
        }
    }

    /// Reads one key as of `now`.
    pub fn get(&mut self, key: &str, now: MonotonicInstant) -> Result<Option<KeyValue>, CoordinationError> {
        check_key(key)?;
        self.expire_leases(now);
        Ok(self.keys.get(key).cloned())
    }

    /// Reads every key with `prefix`, in order, as of `now`.
    pub fn range(&mut self, prefix: &str, now: MonotonicInstant) -> Result<Vec<KeyValue>, CoordinationError> {
        self.expire_leases(now);
        let found: Vec<KeyValue> = self
            .keys
            .range(prefix.to_string()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .take(COORDINATION_RANGE_KEYS_MAX + 1)
            .map(|(_, kv)| kv.clone())
            .collect();
        if found.len() > COORDINATION_RANGE_KEYS_MAX {
            return Err(invalid(format!(
                "prefix {prefix:?} matches more than {COORDINATION_RANGE_KEYS_MAX} keys"
            )));
        }
        Ok(found)
    }

    fn compare_holds(&self, compare: &Compare) -> bool {
        let stored = self.keys.get(&compare.key);
        let ordering = match (&compare.target, stored) {
            (CompareTarget::Value(_), None) => return false,
            (CompareTarget::Value(given), Some(kv)) => kv.value.as_ref().cmp(given.as_ref()),
            (CompareTarget::Version(given), kv) => kv.map_or(0, |kv| kv.version).cmp(given),
            (CompareTarget::CreateRevision(given), kv) => kv.map_or(0, |kv| kv.create_revision).cmp(given),
            (CompareTarget::ModRevision(given), kv) => kv.map_or(0, |kv| kv.mod_revision).cmp(given),
        };
        match compare.op {
            CompareOp::Equal => ordering.is_eq(),
            CompareOp::NotEqual => ordering.is_ne(),
            CompareOp::Greater => ordering.is_gt(),
            CompareOp::Less => ordering.is_lt(),
        }
    }

    fn validate(&self, txn: &Txn) -> Result<(), CoordinationError> {
        let ops = txn.compares.len() + txn.success.len() + txn.failure.len();
        if ops > COORDINATION_TXN_OPS_MAX {
            return Err(invalid(format!(
                "transaction has {ops} operations, more than {COORDINATION_TXN_OPS_MAX}"
            )));
        }
        for compare in &txn.compares {
            check_key(&compare.key)?;
        }
        for op in txn.success.iter().chain(&txn.failure) {
            match op {
                TxnOp::Put { key, value, .. } => {
                    check_key(key)?;
                    if value.len() > COORDINATION_VALUE_BYTES_MAX {
                        return Err(invalid(format!(
                            "value for {key:?} of {} bytes exceeds {COORDINATION_VALUE_BYTES_MAX}",
                            value.len()
                        )));
                    }
                }
                TxnOp::Delete { key } | TxnOp::Get { key } => check_key(key)?,
            }
        }
        Ok(())
    }

    /// Checks the branch about to run, as etcd does: leases must exist, and
    /// no key may be written twice.
    fn validate_branch(&self, ops: &[TxnOp]) -> Result<(), CoordinationError> {
        let mut written = std::collections::BTreeSet::new();
        for op in ops {
            match op {
                TxnOp::Put { key, .. } | TxnOp::Delete { key } if !written.insert(key.as_str()) => {
                    return Err(invalid(format!("duplicate key {key:?} given in txn request")));
                }
                _ => {}
            }
            match op {
                TxnOp::Put { lease: Some(lease), .. } if !self.leases.contains_key(lease) => {
                    return Err(CoordinationError::LeaseNotFound { lease: *lease });
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Runs `txn` atomically as of `now`. On error nothing was applied.
    pub fn txn(&mut self, txn: &Txn, now: MonotonicInstant) -> Result<TxnResponse, CoordinationError> {
        self.expire_leases(now);
        self.validate(txn)?;
        let succeeded = txn.compares.iter().all(|compare| self.compare_holds(compare));
        let ops = if succeeded { &txn.success } else { &txn.failure };
        self.validate_branch(ops)?;
        // Only real changes advance the revision (deleting a missing key does not).
        let writes = ops.iter().any(|op| match op {
            TxnOp::Put { .. } => true,
            TxnOp::Delete { key } => self.keys.contains_key(key),
            TxnOp::Get { .. } => false,
        });
        let write_revision = self.revision + 1;
        let mut results = Vec::with_capacity(ops.len());
        for op in ops {
            match op {
                TxnOp::Put { key, value, lease } => {
                    let (create_revision, version) = match self.keys.get(key) {
                        Some(kv) => (kv.create_revision, kv.version + 1),
                        None => (write_revision, 1),
                    };
                    self.keys.insert(
                        key.clone(),
                        KeyValue {
                            key: key.clone(),
                            value: value.clone(),
                            create_revision,
                            mod_revision: write_revision,
                            version,
                            lease: *lease,
                        },
                    );
                    results.push(TxnOpResult::Put);
                }
                TxnOp::Delete { key } => {
                    let existed = self.keys.remove(key).is_some();
                    results.push(TxnOpResult::Delete { existed });
                }
                TxnOp::Get { key } => results.push(TxnOpResult::Get(self.keys.get(key).cloned())),
            }
        }
        if writes {
            self.revision = write_revision;
        }
        Ok(TxnResponse {
            succeeded,
            revision: self.revision,
            results,
        })
    }

    /// Grants a lease of `ttl` starting at `now`.
    pub fn lease_grant(&mut self, ttl: Duration, now: MonotonicInstant) -> Result<LeaseGrant, CoordinationError> {
        if ttl.is_zero() {
            return Err(invalid("lease TTL must be greater than zero".to_string()));
        }
        self.expire_leases(now);
        let id = LeaseId(self.next_lease);
        self.next_lease += 1;
        self.leases.insert(
            id,
            LeaseState {
                ttl,
                expires_at: now.saturating_add(ttl),
            },
        );
        Ok(LeaseGrant { id, ttl })
    }

    /// Renews `lease` to a full TTL from `now`.
    pub fn lease_keep_alive(&mut self, lease: LeaseId, now: MonotonicInstant) -> Result<Duration, CoordinationError> {
        self.expire_leases(now);
        let state = self
            .leases
            .get_mut(&lease)
            .ok_or(CoordinationError::LeaseNotFound { lease })?;
        state.expires_at = now.saturating_add(state.ttl);
        Ok(state.ttl)
    }

    /// Revokes `lease` and deletes its keys.
    pub fn lease_revoke(&mut self, lease: LeaseId, now: MonotonicInstant) -> Result<(), CoordinationError> {
        self.expire_leases(now);
        if !self.leases.contains_key(&lease) {
            return Err(CoordinationError::LeaseNotFound { lease });
        }
        self.remove_lease(lease);
        Ok(())
    }

    /// Whether `lease` is alive as of the last operation.
    pub fn lease_alive(&self, lease: LeaseId) -> bool {
        self.leases.contains_key(&lease)
    }

    /// Every lease alive as of the last operation, with its deadline (for
    /// model checkers: expiry is not applied).
    pub fn lease_deadlines(&self) -> Vec<(LeaseId, MonotonicInstant)> {
        self.leases.iter().map(|(id, lease)| (*id, lease.expires_at)).collect()
    }

    /// `key` as of the last operation, without expiring leases (for model
    /// checkers and audits).
    pub fn peek(&self, key: &str) -> Option<&KeyValue> {
        self.keys.get(key)
    }
}

/// [`CoordinationState`] served to one process, with lease time from a
/// [`Clock`](crate::Clock). Linearizable because every request runs under
/// one lock, which is never held across an `.await`.
pub struct MemoryCoordinationStore {
    clock: SharedClock,
    state: Mutex<CoordinationState>,
}

impl std::fmt::Debug for MemoryCoordinationStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryCoordinationStore").finish_non_exhaustive()
    }
}

impl MemoryCoordinationStore {
    /// An empty store whose leases run on `clock`.
    pub fn new(clock: SharedClock) -> Self {
        Self::starting_after(clock, 1)
    }

    /// An empty store whose revisions continue after `revision` (see
    /// [`CoordinationState::starting_after`]).
    pub fn starting_after(clock: SharedClock, revision: i64) -> Self {
        Self {
            clock,
            state: Mutex::new(CoordinationState::starting_after(revision)),
        }
    }

    fn with_state<T>(&self, apply: impl FnOnce(&mut CoordinationState, MonotonicInstant) -> T) -> T {
        let now = self.clock.now_monotonic();
        // A poisoned lock means a panic inside a pure state-machine call,
        // which leaves no partial state (every method validates first).
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        apply(&mut state, now)
    }
}

impl CoordinationStore for MemoryCoordinationStore {
    fn get(&self, key: &str) -> BoxFuture<'_, Result<Option<KeyValue>, CoordinationError>> {
        let result = self.with_state(|state, now| state.get(key, now));
        Box::pin(async move { result })
    }

    fn range(&self, prefix: &str) -> BoxFuture<'_, Result<Vec<KeyValue>, CoordinationError>> {
        let result = self.with_state(|state, now| state.range(prefix, now));
        Box::pin(async move { result })
    }

    fn txn(&self, txn: Txn) -> BoxFuture<'_, Result<TxnResponse, CoordinationError>> {
        let result = self.with_state(|state, now| state.txn(&txn, now));
        Box::pin(async move { result })
    }

    fn lease_grant(&self, ttl: Duration) -> BoxFuture<'_, Result<LeaseGrant, CoordinationError>> {
        let result = self.with_state(|state, now| state.lease_grant(ttl, now));
        Box::pin(async move { result })
    }

    fn lease_keep_alive(&self, lease: LeaseId) -> BoxFuture<'_, Result<Duration, CoordinationError>> {
        let result = self.with_state(|state, now| state.lease_keep_alive(lease, now));
        Box::pin(async move { result })
    }

    fn lease_revoke(&self, lease: LeaseId) -> BoxFuture<'_, Result<(), CoordinationError>> {
        let result = self.with_state(|state, now| state.lease_revoke(lease, now));
        Box::pin(async move { result })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> MonotonicInstant {
        MonotonicInstant::from_nanos(ms * 1_000_000)
    }

    fn put(key: &str, value: &'static str, lease: Option<LeaseId>) -> TxnOp {
        TxnOp::Put {
            key: key.into(),
            value: Bytes::from_static(value.as_bytes()),
            lease,
        }
    }

    #[test]
    fn compare_and_set_on_missing_key_claims_once() {
        let mut store = CoordinationState::new();
        let claim = |owner: &'static str| Txn {
            compares: vec![Compare::missing("owner/a")],
            success: vec![put("owner/a", owner, None)],
            failure: vec![TxnOp::Get { key: "owner/a".into() }],
        };
        let first = store.txn(&claim("n1"), at(0)).expect("txn");
        assert!(first.succeeded);
        assert_eq!(first.revision, 2);
        let second = store.txn(&claim("n2"), at(0)).expect("txn");
        assert!(!second.succeeded);
        assert_eq!(second.revision, 2, "a failed compare with only reads writes nothing");
        match &second.results[..] {
            [TxnOpResult::Get(Some(kv))] => {
                assert_eq!(kv.value, Bytes::from_static(b"n1"));
                assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 2, 1));
            }
            other => panic!("unexpected results {other:?}"),
        }
    }

    #[test]
    fn leases_expire_with_their_keys_and_bump_the_revision() {
        let mut store = CoordinationState::new();
        let grant = store.lease_grant(Duration::from_millis(100), at(0)).expect("grant");
        assert_eq!(grant.id, LeaseId(1));
        store
            .txn(
                &Txn {
                    success: vec![put("members/n1", "1", Some(grant.id))],
                    ..Txn::default()
                },
                at(10),
            )
            .expect("put");
        assert_eq!(store.lease_keep_alive(grant.id, at(90)), Ok(Duration::from_millis(100)));
        assert_eq!(
            store.get("members/n1", at(189)).expect("get").map(|kv| kv.version),
            Some(1)
        );
        assert_eq!(store.get("members/n1", at(190)), Ok(None));
        assert_eq!(store.revision(), 3);
        assert_eq!(
            store.lease_keep_alive(grant.id, at(191)),
            Err(CoordinationError::LeaseNotFound { lease: grant.id })
        );
        let put_on_dead_lease = Txn {
            success: vec![put("x", "1", Some(grant.id))],
            ..Txn::default()
        };
        assert_eq!(
            store.txn(&put_on_dead_lease, at(200)),
            Err(CoordinationError::LeaseNotFound { lease: grant.id })
        );
        assert_eq!(store.get("x", at(200)), Ok(None), "a refused txn applies nothing");
    }

    #[test]
    fn etcd_details_lease_check_on_taken_branch_no_revision_for_noop_delete_no_duplicate_keys() {
        let mut store = CoordinationState::new();
        let dead = LeaseId(99);
        let guarded = Txn {
            compares: vec![Compare::value_is("missing", Bytes::from_static(b"x"))],
            success: vec![put("k", "v", Some(dead))],
            failure: vec![TxnOp::Delete { key: "nothing".into() }],
        };
        let response = store
            .txn(&guarded, at(0))
            .expect("the dead lease is in the branch not taken");
        assert!(!response.succeeded);
        assert_eq!(response.revision, 1, "deleting a missing key changes nothing");
        assert_eq!(response.results, vec![TxnOpResult::Delete { existed: false }]);
        let twice = Txn {
            success: vec![put("k", "1", None), put("k", "2", None)],
            ..Txn::default()
        };
        assert_eq!(
            store.txn(&twice, at(0)),
            Err(CoordinationError::InvalidRequest {
                reason: "duplicate key \"k\" given in txn request".into()
            })
        );
        assert_eq!(store.get("k", at(0)), Ok(None));
    }

    #[test]
    fn range_reads_a_prefix_in_order_and_limits_are_enforced() {
        let mut store = CoordinationState::new();
        let txn = Txn {
            success: vec![put("m/b", "2", None), put("m/a", "1", None), put("n/a", "3", None)],
            ..Txn::default()
        };
        assert_eq!(store.txn(&txn, at(0)).map(|r| r.revision), Ok(2));
        let keys: Vec<String> = store
            .range("m/", at(0))
            .expect("range")
            .into_iter()
            .map(|kv| kv.key)
            .collect();
        assert_eq!(keys, vec!["m/a".to_string(), "m/b".to_string()]);
        let too_big = Txn {
            success: vec![put("", "1", None)],
            ..Txn::default()
        };
        assert_eq!(
            store.txn(&too_big, at(0)),
            Err(CoordinationError::InvalidRequest {
                reason: "empty key".into()
            })
        );
    }
}
