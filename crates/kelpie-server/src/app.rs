//! The server's state: the runtimes of its actors over one store, request
//! admission (draining), idempotency, and reads from committed state.

use std::collections::BTreeSet;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kelpie_core::coordination::MemoryCoordinationStore;
use kelpie_core::{ActorId, NodeEnv, NodeId};
use kelpie_llm::{AnthropicConfig, AnthropicProvider, LlmProvider, OpenAiConfig, OpenAiProvider, ScriptedProvider};
use kelpie_runtime::driver::OwnershipDriver;
use kelpie_runtime::ownership::OwnershipConfig;
use kelpie_runtime::runtime::{Actor, InvokeError, InvokeOptions, Runtime, RuntimeConfig, SharedSpace, STATE_KEY};
use kelpie_storage::{EmbeddedEngine, StorageError, Store, Transaction};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::agent::{AgentActor, ArchivalEmbedder, BlockActor, Envelope, Failure, Reply, ToolActor};
use crate::config::{LlmSettings, ServerConfig};
use crate::metrics::Metrics;
use crate::records::{AgentRecord, AgentSlot, AGENT_NAMESPACE, BLOCK_NAMESPACE, TOOL_NAMESPACE};
use crate::render::LlmInfo;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory is in use by another process.
    #[error("data directory {dir} is locked by another kelpie-server (or kelpie process); stop it or use another --data-dir")]
    Locked {
        /// The directory.
        dir: String,
    },
    /// The store could not be opened.
    #[error("cannot open the store in {dir}: {source}")]
    Store {
        /// The directory.
        dir: String,
        /// Why.
        source: StorageError,
    },
    /// Anything else at start-up.
    #[error("{0}")]
    Other(String),
}

/// A request's identity for idempotency: what a retry must repeat.
#[derive(Clone, Debug)]
pub struct RequestMeta {
    /// SHA-256 of method, path and body (hex).
    pub fingerprint: String,
    /// The runtime idempotency key derived from the client's
    /// `Idempotency-Key`, scoped by method and path (hex), if it sent one.
    pub key: Option<String>,
}

impl RequestMeta {
    /// The identity of `method path` with `body` and the client's key.
    pub fn new(method: &str, path: &str, body: &[u8], client_key: Option<&str>) -> Self {
        let mut fingerprint = Sha256::new();
        for part in [method.as_bytes(), path.as_bytes(), body] {
            fingerprint.update((part.len() as u64).to_be_bytes());
            fingerprint.update(part);
        }
        let key = client_key.map(|key| {
            let mut scoped = Sha256::new();
            for part in [key.as_bytes(), method.as_bytes(), path.as_bytes()] {
                scoped.update((part.len() as u64).to_be_bytes());
                scoped.update(part);
            }
            hex::encode(&scoped.finalize()[..16])
        });
        Self {
            fingerprint: hex::encode(fingerprint.finalize()),
            key,
        }
    }
}

/// Why a request failed, as an HTTP status and detail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// The `detail` text.
    pub detail: String,
    /// Seconds for `Retry-After` (503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with `status`.
    pub fn new(status: u16, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// 404 for `what`.
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(404, format!("{what} not found"))
    }

    /// 503, retry after a second.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(503, detail)
        }
    }
}

impl From<Failure> for ApiError {
    fn from(failure: Failure) -> Self {
        ApiError::new(failure.status, failure.detail)
    }
}

impl From<StorageError> for ApiError {
    fn from(error: StorageError) -> Self {
        if error.is_retryable() {
            ApiError::unavailable(format!("storage: {error}"))
        } else {
            ApiError::new(500, format!("storage: {error}"))
        }
    }
}

fn invoke_error(error: InvokeError) -> ApiError {
    if error.is_retryable() {
        ApiError::unavailable(error.to_string())
    } else {
        ApiError::new(500, error.to_string())
    }
}

/// Attempts of an invocation that failed retryably (a transaction conflict
/// with a concurrent request, an actor that was deactivating).
const INVOKE_ATTEMPTS: u32 = 5;

/// The server: one node, its store and its actors.
pub struct App {
    /// The node's seams.
    pub env: NodeEnv,
    /// The store.
    pub store: Store,
    agents: Runtime<AgentActor>,
    blocks: Runtime<BlockActor>,
    tools: Runtime<ToolActor>,
    /// The archival embedder.
    pub embedder: ArchivalEmbedder,
    /// Whether an LLM is configured.
    pub llm_configured: bool,
    /// The LLM, as agents report it.
    pub llm_info: LlmInfo,
    /// Agent loop steps per message.
    pub max_steps: u32,
    /// How long in-flight requests may run after a shutdown signal.
    pub drain_timeout: Duration,
    /// How long one invocation may take (an agent step waits for its LLM).
    invoke_deadline: Duration,
    draining: AtomicBool,
    in_flight: AtomicU64,
    running_keys: Mutex<BTreeSet<String>>,
    runs: Mutex<std::collections::BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Prometheus metrics.
    pub metrics: Metrics,
}

/// An admitted request: counted in flight until dropped.
pub struct Admission {
    app: Arc<App>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.app.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Holds an agent's run; the next waiting run starts when dropped.
pub struct RunGuard {
    app: Arc<App>,
    agent_id: String,
    lock: Arc<tokio::sync::Mutex<()>>,
    held: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        self.held.take();
        let mut runs = self.app.runs.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Only the map and this guard know the lock: nobody waits, forget it.
        if Arc::strong_count(&self.lock) == 2 {
            runs.remove(&self.agent_id);
        }
    }
}

/// Holds an idempotency key as running; released when dropped.
pub struct KeyGuard {
    app: Arc<App>,
    key: String,
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        self.app.keys().remove(&self.key);
    }
}

fn llm_from(settings: &LlmSettings, timeout: Duration) -> Result<(Option<Arc<dyn LlmProvider>>, LlmInfo), StartError> {
    let other = |error: kelpie_llm::LlmError| StartError::Other(format!("LLM provider: {error}"));
    Ok(match settings {
        LlmSettings::None => (
            None,
            LlmInfo {
                model: "none".to_string(),
                endpoint_type: "openai".to_string(),
                endpoint: None,
                context_window: 8192,
            },
        ),
        LlmSettings::Scripted => (
            Some(Arc::new(ScriptedProvider::echo())),
            LlmInfo {
                model: kelpie_llm::SCRIPTED_MODEL.to_string(),
                endpoint_type: "openai".to_string(),
                endpoint: None,
                context_window: 8192,
            },
        ),
        LlmSettings::OpenAi {
            base_url,
            api_key,
            model,
        } => {
            let mut config = OpenAiConfig::new(base_url.clone(), model.clone());
            if let Some(key) = api_key {
                config = config.with_api_key(key.clone());
            }
            config.timeout = timeout;
            (
                Some(Arc::new(OpenAiProvider::new(config).map_err(other)?)),
                LlmInfo {
                    model: model.clone(),
                    endpoint_type: "openai".to_string(),
                    endpoint: Some(base_url.clone()),
                    context_window: 128_000,
                },
            )
        }
        LlmSettings::Anthropic {
            base_url,
            api_key,
            model,
        } => {
            let mut config = AnthropicConfig::new(api_key.clone(), model.clone()).with_base_url(base_url.clone());
            config.timeout = timeout;
            (
                Some(Arc::new(AnthropicProvider::new(config).map_err(other)?)),
                LlmInfo {
                    model: model.clone(),
                    endpoint_type: "anthropic".to_string(),
                    endpoint: Some(base_url.clone()),
                    context_window: 200_000,
                },
            )
        }
    })
}

impl App {
    /// Opens the store in `config.data_dir` (creating it; failing at once if
    /// another process holds it) and starts the actors. Must run inside a
    /// tokio runtime.
    pub fn start(config: &ServerConfig) -> Result<Arc<App>, StartError> {
        let dir = config.data_dir.display().to_string();
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|error| StartError::Other(format!("cannot create data directory {dir}: {error}")))?;
        let engine = EmbeddedEngine::open_dir(&config.data_dir).map_err(|source| match source {
            StorageError::Locked { .. } => StartError::Locked { dir: dir.clone() },
            source => StartError::Store {
                dir: dir.clone(),
                source,
            },
        })?;
        let (llm, llm_info) = llm_from(&config.llm, config.llm_timeout)?;
        let embedder = match &config.embedding {
            None => ArchivalEmbedder::default(),
            Some(settings) => ArchivalEmbedder::Remote {
                provider: Arc::new(
                    kelpie_llm::OpenAiEmbeddings::new(
                        settings.base_url.clone(),
                        settings.api_key.clone(),
                        settings.model.clone(),
                        settings.dimensions,
                        config.llm_timeout,
                    )
                    .map_err(|error| StartError::Other(format!("embedding provider: {error}")))?,
                ),
                model: settings.model.clone(),
            },
        };
        Self::with_engine(Arc::new(engine), &config.data_dir, llm, llm_info, embedder, config)
    }

    /// The server over `engine`, with `llm` (for tests: a scripted model).
    pub fn with_engine(
        engine: Arc<dyn kelpie_storage::Engine>,
        data_dir: &Path,
        llm: Option<Arc<dyn LlmProvider>>,
        llm_info: LlmInfo,
        embedder: ArchivalEmbedder,
        config: &ServerConfig,
    ) -> Result<Arc<App>, StartError> {
        let mut env = NodeEnv::production(NodeId::from_index(0), data_dir)
            .map_err(|error| StartError::Other(error.to_string()))?;
        let store = Store::new(engine, env.spawner.clone());
        // Continue revisions above every fencing token already installed, so
        // a restarted node never issues a token that is stale or reused.
        let highest = store
            .begin()
            .and_then(|mut txn| txn.highest_fence_token())
            .map_err(|source| StartError::Store {
                dir: data_dir.display().to_string(),
                source,
            })?;
        env.coordination = Arc::new(MemoryCoordinationStore::starting_after(
            env.clock.clone(),
            i64::try_from(highest).unwrap_or(i64::MAX),
        ));
        let ownership_config = OwnershipConfig::new(
            Duration::from_millis(kelpie_core::limits::LEASE_TTL_MS_DEFAULT),
            Duration::from_millis(kelpie_core::limits::LEASE_RENEW_INTERVAL_MS_DEFAULT),
            Duration::from_millis(kelpie_core::limits::CLOCK_DRIFT_MS_DEFAULT),
        )
        .map_err(|error| StartError::Other(error.to_string()))?;
        let ownership = OwnershipDriver::start(env.clone(), ownership_config);
        Ok(Self::over(env, store, ownership, llm, llm_info, embedder, config))
    }

    /// The server's actors on a node given by its seams, over `store` and
    /// `ownership` (the simulator builds these for simulated nodes).
    pub fn over(
        env: NodeEnv,
        store: Store,
        ownership: Arc<OwnershipDriver>,
        llm: Option<Arc<dyn LlmProvider>>,
        llm_info: LlmInfo,
        embedder: ArchivalEmbedder,
        config: &ServerConfig,
    ) -> Arc<App> {
        let runtime_config = |namespace: &str| RuntimeConfig::new(namespace);
        let llm_configured = llm.is_some();
        Arc::new(App {
            agents: Runtime::new(
                env.clone(),
                AgentActor::new(llm, llm_info.clone(), embedder.clone()),
                store.clone(),
                ownership.clone(),
                runtime_config(AGENT_NAMESPACE),
            ),
            blocks: Runtime::new(
                env.clone(),
                BlockActor,
                store.clone(),
                ownership.clone(),
                runtime_config(BLOCK_NAMESPACE),
            ),
            tools: Runtime::new(
                env.clone(),
                ToolActor,
                store.clone(),
                ownership,
                runtime_config(TOOL_NAMESPACE),
            ),
            env,
            store,
            embedder,
            llm_configured,
            llm_info,
            max_steps: config.max_steps,
            drain_timeout: config.drain_timeout,
            invoke_deadline: config.llm_timeout.saturating_add(Duration::from_secs(60)),
            draining: AtomicBool::new(false),
            in_flight: AtomicU64::new(0),
            running_keys: Mutex::new(BTreeSet::new()),
            runs: Mutex::new(std::collections::BTreeMap::new()),
            metrics: Metrics::new(),
        })
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.running_keys
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Admits a request unless the server is draining. The count goes up
    /// before the check, so [`App::drain`] never misses a request that
    /// passed it.
    pub fn admit(self: &Arc<Self>) -> Option<Admission> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let admission = Admission { app: self.clone() };
        if self.draining.load(Ordering::SeqCst) {
            return None;
        }
        Some(admission)
    }

    /// Requests admitted and not finished.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Whether the server is draining.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Switches to draining (new requests get 503), waits for in-flight
    /// requests up to the drain timeout, then stops the actors and closes
    /// the store. Requests still running after the timeout never commit:
    /// their transactions are dropped with the process.
    pub async fn drain(&self) -> bool {
        self.draining.store(true, Ordering::SeqCst);
        let clock = self.env.clock.clone();
        let deadline = clock.now_monotonic().saturating_add(self.drain_timeout);
        let mut finished = true;
        while self.in_flight() > 0 {
            if clock.now_monotonic() >= deadline {
                tracing::warn!(
                    in_flight = self.in_flight(),
                    "drain timeout: abandoning in-flight requests"
                );
                finished = false;
                break;
            }
            clock.sleep(Duration::from_millis(5)).await;
        }
        if finished {
            // Deactivate every actor; bounded too: an invocation whose
            // request was abandoned may still be running.
            let remaining = deadline.saturating_duration_since(clock.now_monotonic());
            let stopped = kelpie_core::clock::timeout(clock.as_ref(), remaining, async {
                self.agents.shutdown().await;
                self.blocks.shutdown().await;
                self.tools.shutdown().await;
            })
            .await;
            finished = stopped.is_ok();
        }
        self.store.close();
        finished
    }

    /// Waits until agent `agent_id` runs no other message, then holds it:
    /// one message at a time per agent, so two runs' steps never
    /// interleave. A run that was waiting when the server began draining
    /// is refused (503), not started.
    pub async fn hold_run(self: &Arc<Self>, agent_id: &str) -> Result<RunGuard, ApiError> {
        let lock = self
            .runs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(agent_id.to_string())
            .or_default()
            .clone();
        let held = lock.clone().lock_owned().await;
        let guard = RunGuard {
            app: self.clone(),
            agent_id: agent_id.to_string(),
            lock,
            held: Some(held),
        };
        if self.is_draining() {
            return Err(ApiError::unavailable(
                "server is shutting down; retry on another node or after restart",
            ));
        }
        Ok(guard)
    }

    /// Marks `meta`'s idempotency key as running; `Err(409)` if a request
    /// with it is running now.
    pub fn hold_key(self: &Arc<Self>, meta: &RequestMeta) -> Result<Option<KeyGuard>, ApiError> {
        let Some(key) = &meta.key else {
            return Ok(None);
        };
        if !self.keys().insert(key.clone()) {
            return Err(ApiError::new(
                409,
                "a request with this Idempotency-Key is still running; retry when it has finished",
            ));
        }
        Ok(Some(KeyGuard {
            app: self.clone(),
            key: key.clone(),
        }))
    }

    async fn invoke_on<A>(
        &self,
        runtime: &Runtime<A>,
        actor: &ActorId,
        command: A::Message,
        meta: &RequestMeta,
        key_suffix: &str,
    ) -> Result<serde_json::Value, ApiError>
    where
        A: Actor<Reply = Reply>,
        A::Message: Clone,
    {
        let options = InvokeOptions {
            deadline: Some(self.invoke_deadline),
            idempotency_key: meta.key.as_ref().map(|key| format!("{key}{key_suffix}")),
        };
        let mut attempt = 0;
        let reply = loop {
            attempt += 1;
            match runtime.invoke(actor, command.clone(), options.clone()).await {
                Ok(reply) => break reply,
                // Retried only when nothing was applied, or under an
                // idempotency key (the journal answers a repeat).
                Err(error @ InvokeError::Unavailable { .. }) | Err(error @ InvokeError::Overloaded { .. })
                    if attempt < INVOKE_ATTEMPTS && (options.idempotency_key.is_some() || !error.outcome_unknown()) =>
                {
                    tracing::debug!(%actor, %error, attempt, "retrying invocation");
                    self.env
                        .clock
                        .sleep(Duration::from_millis(2 * u64::from(attempt)))
                        .await;
                }
                Err(error) => return Err(invoke_error(error)),
            }
        };
        if reply.fingerprint != meta.fingerprint {
            return Err(ApiError::new(
                422,
                "Idempotency-Key was already used with a different request (method, path or body)",
            ));
        }
        reply.result.map_err(ApiError::from)
    }

    /// Invokes the agent actor `agent_id`.
    pub async fn invoke_agent(
        &self,
        agent_id: &str,
        command: crate::agent::AgentCommand,
        meta: &RequestMeta,
        key_suffix: &str,
    ) -> Result<serde_json::Value, ApiError> {
        let actor = actor_id(AGENT_NAMESPACE, agent_id)?;
        let envelope = Envelope {
            fingerprint: meta.fingerprint.clone(),
            now_ms: self.now_ms(),
            command,
        };
        self.invoke_on(&self.agents, &actor, envelope, meta, key_suffix).await
    }

    /// Invokes the block actor `block_id`.
    pub async fn invoke_block(
        &self,
        block_id: &str,
        command: crate::agent::BlockCommand,
        meta: &RequestMeta,
    ) -> Result<serde_json::Value, ApiError> {
        let actor = actor_id(BLOCK_NAMESPACE, block_id)?;
        let envelope = Envelope {
            fingerprint: meta.fingerprint.clone(),
            now_ms: self.now_ms(),
            command,
        };
        self.invoke_on(&self.blocks, &actor, envelope, meta, "").await
    }

    /// Invokes the tool actor `tool_id`.
    pub async fn invoke_tool(
        &self,
        tool_id: &str,
        command: crate::agent::ToolCommand,
        meta: &RequestMeta,
    ) -> Result<serde_json::Value, ApiError> {
        let actor = actor_id(TOOL_NAMESPACE, tool_id)?;
        let envelope = Envelope {
            fingerprint: meta.fingerprint.clone(),
            now_ms: self.now_ms(),
            command,
        };
        self.invoke_on(&self.tools, &actor, envelope, meta, "").await
    }

    /// Wall-clock now, Unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        self.env.clock.now_wall().as_unix_ms()
    }

    /// 64 random bits.
    pub fn random(&self) -> u64 {
        self.env.rng.next_u64()
    }

    /// A read-only snapshot of committed state.
    pub fn snapshot(&self) -> Result<Transaction, ApiError> {
        Ok(self.store.begin()?)
    }

    /// Counts of each runtime: (active actors, handled invocations, replayed journal entries, in flight).
    pub fn runtime_stats(&self) -> [(&'static str, usize, kelpie_runtime::runtime::RuntimeStats); 3] {
        [
            ("agent", self.agents.active().len(), self.agents.stats()),
            ("block", self.blocks.active().len(), self.blocks.stats()),
            ("tool", self.tools.active().len(), self.tools.stats()),
        ]
    }
}

/// The actor id `namespace:key`, or 404 if `key` cannot be one.
pub fn actor_id(namespace: &str, key: &str) -> Result<ActorId, ApiError> {
    ActorId::new(namespace, key).map_err(|_| ApiError::not_found(format!("{namespace} {key}")))
}

/// Decodes one stored record; `what` names it in the error ("block").
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|error| ApiError::new(500, format!("stored {what} is not valid JSON: {error}")))
}

/// Decodes the values of scanned entries; `what` names them in the error.
pub fn decode_all<T: DeserializeOwned>(entries: &[(Bytes, Bytes)], what: &str) -> Result<Vec<T>, ApiError> {
    entries.iter().map(|(_, bytes)| decode_json(bytes, what)).collect()
}

/// Reads and decodes `key` of `actor` (or of a shared space) in `txn`.
pub fn read_json<T: DeserializeOwned>(
    txn: &mut Transaction,
    actor: &ActorId,
    key: &[u8],
) -> Result<Option<T>, ApiError> {
    match txn.get(actor, key)? {
        Some(bytes) => decode_json(&bytes, "record").map(Some),
        None => Ok(None),
    }
}

/// The agent `id`, as committed, or 404.
pub fn read_agent(txn: &mut Transaction, id: &str) -> Result<AgentRecord, ApiError> {
    let missing = || ApiError::not_found(format!("Agent {id}"));
    if !crate::ids::is_valid("agent", id) {
        return Err(missing());
    }
    let actor = actor_id(AGENT_NAMESPACE, id)?;
    let slot: Option<AgentSlot> = read_json(txn, &actor, STATE_KEY)?;
    slot.and_then(|slot| slot.agent).ok_or_else(missing)
}

/// Every key of a shared space (or an actor's keys in a range), in order,
/// page by page.
pub fn scan_all(
    txn: &mut Transaction,
    actor: &ActorId,
    start: &[u8],
    end: Option<&[u8]>,
) -> Result<Vec<(Bytes, Bytes)>, ApiError> {
    let page = kelpie_core::limits::SCAN_PAGE_ENTRIES_MAX;
    let mut all: Vec<(Bytes, Bytes)> = Vec::new();
    let mut from = start.to_vec();
    let mut inclusive = true;
    loop {
        let lower = if inclusive {
            Bound::Included(from.as_slice())
        } else {
            Bound::Excluded(from.as_slice())
        };
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        let entries = txn.scan(actor, lower, upper, page)?;
        let full = entries.len() == page;
        if let Some((last, _)) = entries.last() {
            from = last.to_vec();
            inclusive = false;
        }
        all.extend(entries);
        if !full {
            return Ok(all);
        }
    }
}

/// A shared space's id.
pub fn space(space: &SharedSpace) -> &ActorId {
    space.id()
}
