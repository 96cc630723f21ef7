//! Validated node configuration.
//!
//! A [`KelpieConfig`] is built in three steps: read a TOML file (optional),
//! apply `KELPIE_*` environment variables on top, then validate everything at
//! once. Every part of a `KelpieConfig` is checked when it is built, so a
//! value of the type is always valid: an etcd backend always has at least one
//! well-formed endpoint, a lease always outlives its renewal interval plus
//! the clock drift bound.
//!
//! # File
//!
//! See `kelpie.example.toml` at the workspace root. Every section and key is
//! optional except where noted; missing ones take the defaults of
//! [`KelpieConfig::default`]. A `[backend]` table, when present, must set
//! `kind`, plus `data_dir` for `embedded` and `endpoints` for `etcd`. Unknown
//! keys, and keys that belong to another backend kind, are errors.
//!
//! # Environment
//!
//! `KELPIE_<SECTION>__<KEY>` (upper case, double underscore between section
//! and key) overrides `<section>.<key>` from the file, e.g.
//! `KELPIE_LEASE__TTL_MS=5000` or `KELPIE_NODE__ID=node-3`. The text is read
//! as the type the key expects; lists such as `KELPIE_BACKEND__ENDPOINTS`
//! are comma-separated. If `KELPIE_BACKEND__KIND` names a different kind than
//! the file, the file's other `[backend]` keys are dropped, since they
//! described the other backend.
//!
//! Any other variable starting with `KELPIE_` is an error, so a typo is not
//! silently ignored, except those in [`ENV_VARS_NOT_CONFIG`], which other
//! parts of Kelpie own:
//!
//! - `KELPIE_CONFIG`: the CLI's default for the config file path.
//! - `KELPIE_LOG`: the log filter (tracing `EnvFilter` syntax).

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Serialize, Serializer};
use toml::{Table, Value};

use crate::id::NodeId;
use crate::limits::{
    ACTOR_IDLE_TIMEOUT_MS_DEFAULT, ACTOR_IDLE_TIMEOUT_MS_MAX, CLOCK_DRIFT_MS_DEFAULT, CLOCK_DRIFT_MS_MAX,
    CONFIG_FILE_BYTES_MAX, CONFIG_PATH_BYTES_MAX, ETCD_ENDPOINTS_MAX, ETCD_ENDPOINT_BYTES_MAX, ETCD_PREFIX_BYTES_MAX,
    LEASE_RENEW_INTERVAL_MS_DEFAULT, LEASE_TTL_MS_DEFAULT, LEASE_TTL_MS_MAX, LEASE_TTL_MS_MIN, MAILBOX_DEPTH_DEFAULT,
    MAILBOX_DEPTH_MAX,
};

/// Prefix of the environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "KELPIE_";

/// Variables that start with [`ENV_PREFIX`] but are not configuration keys;
/// other parts of Kelpie read them, so configuration loading ignores them.
pub const ENV_VARS_NOT_CONFIG: &[&str] = &["KELPIE_CONFIG", "KELPIE_LOG"];

/// Data directory of the embedded backend unless configured.
pub const DATA_DIR_DEFAULT: &str = "./kelpie-data";

/// Key prefix in etcd unless configured.
pub const ETCD_PREFIX_DEFAULT: &str = "/kelpie";

/// Values longer than this are shortened in error messages.
const ERROR_VALUE_CHARS_MAX: usize = 80;

/// Why a configuration could not be loaded. Each variant names the offending
/// key as a dotted path (`lease.ttl_ms`, `backend.endpoints[1]`) and says
/// what is allowed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is larger than [`CONFIG_FILE_BYTES_MAX`].
    #[error("config file {} is {bytes} bytes; the maximum is {max}", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size, in bytes (at least this many if it grew while read).
        bytes: u64,
        /// The limit, in bytes.
        max: u64,
    },
    /// The file is not UTF-8 text.
    #[error("config file {} is not UTF-8 text (bad byte at offset {byte_offset})", path.display())]
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// Offset of the first byte that is not valid UTF-8.
        byte_offset: usize,
    },
    /// The text is not valid TOML.
    #[error("config is not valid TOML at line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based line of the error (0 if the parser gave no position).
        line: usize,
        /// 1-based column of the error, in characters (0 if unknown).
        column: usize,
        /// The parser's description.
        message: String,
    },
    /// The file has a key Kelpie does not know.
    #[error("unknown config key `{key}`; allowed here: {}", allowed.join(", "))]
    UnknownKey {
        /// The dotted path of the key.
        key: String,
        /// The keys allowed at that level.
        allowed: Vec<&'static str>,
    },
    /// A `KELPIE_*` environment variable that is not a configuration key.
    #[error(
        "unknown environment variable {name}: config keys are set as KELPIE_<SECTION>__<KEY>, \
         e.g. KELPIE_LEASE__TTL_MS; unset it or fix its name"
    )]
    UnknownEnvVar {
        /// The variable's name.
        name: String,
    },
    /// A key the rest of the configuration requires is absent.
    #[error("missing config key `{field}`: {reason}")]
    MissingField {
        /// The dotted path of the key.
        field: String,
        /// What requires it and what to set.
        reason: String,
    },
    /// A key has a value outside what it allows.
    #[error("invalid value `{value}` for `{field}`: {reason}")]
    InvalidValue {
        /// The dotted path of the key.
        field: String,
        /// The value as given (shortened if long).
        value: String,
        /// What is allowed.
        reason: String,
    },
    /// Keys that are valid one by one but not together.
    #[error("config keys {} do not fit together: {reason}", fields.join(", "))]
    InvalidCombination {
        /// The dotted paths of the keys involved.
        fields: Vec<String>,
        /// The rule they break and how to fix it.
        reason: String,
    },
}

fn invalid(field: impl Into<String>, value: &str, reason: impl Into<String>) -> ConfigError {
    let value = if value.chars().count() > ERROR_VALUE_CHARS_MAX {
        let head: String = value.chars().take(ERROR_VALUE_CHARS_MAX).collect();
        format!("{head}...")
    } else {
        value.to_string()
    };
    ConfigError::InvalidValue {
        field: field.into(),
        value,
        reason: reason.into(),
    }
}

/// A TOML value as a person would type it; strings without quotes.
fn render(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// An integer key's allowed range, shared by file parsing and constructors
/// so both report the same field and reason.
struct Bound {
    field: &'static str,
    min: u64,
    max: u64,
    unit: &'static str,
}

impl Bound {
    fn reason(&self) -> String {
        format!("must be an integer from {} to {} ({})", self.min, self.max, self.unit)
    }

    fn check(&self, value: u64) -> Result<u64, ConfigError> {
        if (self.min..=self.max).contains(&value) {
            Ok(value)
        } else {
            Err(invalid(self.field, &value.to_string(), self.reason()))
        }
    }
}

const LEASE_TTL: Bound = Bound {
    field: "lease.ttl_ms",
    min: LEASE_TTL_MS_MIN,
    max: LEASE_TTL_MS_MAX,
    unit: "milliseconds",
};
const LEASE_RENEW_INTERVAL: Bound = Bound {
    field: "lease.renew_interval_ms",
    min: 1,
    max: LEASE_TTL_MS_MAX,
    unit: "milliseconds",
};
const LEASE_CLOCK_DRIFT: Bound = Bound {
    field: "lease.max_clock_drift_ms",
    min: 0,
    max: CLOCK_DRIFT_MS_MAX,
    unit: "milliseconds",
};
const ACTOR_IDLE_TIMEOUT: Bound = Bound {
    field: "actor.idle_timeout_ms",
    min: 1,
    max: ACTOR_IDLE_TIMEOUT_MS_MAX,
    unit: "milliseconds",
};
const ACTOR_MAILBOX_DEPTH: Bound = Bound {
    field: "actor.mailbox_depth",
    min: 1,
    max: MAILBOX_DEPTH_MAX as u64,
    unit: "messages",
};

/// The complete, validated configuration of one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KelpieConfig {
    node: NodeConfig,
    backend: BackendConfig,
    lease: LeaseConfig,
    actor: ActorConfig,
}

impl KelpieConfig {
    /// Assembles a configuration from parts, each already validated.
    pub fn new(node: NodeConfig, backend: BackendConfig, lease: LeaseConfig, actor: ActorConfig) -> Self {
        KelpieConfig {
            node,
            backend,
            lease,
            actor,
        }
    }

    /// Reads the TOML file at `path` (or nothing, for `None`), applies the
    /// `KELPIE_*` variables in `env` and validates the result. Variables not
    /// starting with `KELPIE_` are ignored, so the whole process environment
    /// may be passed.
    pub fn load<I>(path: Option<&Path>, env: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        match path {
            None => Self::from_toml_str("", env),
            Some(path) => Self::from_toml_str(&read_config_file(path)?, env),
        }
    }

    /// [`KelpieConfig::load`] with the process environment.
    pub fn load_from_process_env(path: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load(path, process_env()?)
    }

    /// Parses TOML `text`, applies the `KELPIE_*` variables in `env` and
    /// validates the result. The text is not size-checked here; [`load`]
    /// bounds files by [`CONFIG_FILE_BYTES_MAX`].
    ///
    /// ```
    /// use kelpie_core::config::{ConfigError, KelpieConfig};
    ///
    /// let text = "[backend]\nkind = \"memory\"\n[lease]\nttl_ms = 5000";
    /// let env = [("KELPIE_NODE__ID".to_string(), "node-3".to_string())];
    /// let config = KelpieConfig::from_toml_str(text, env)?;
    /// assert_eq!(config.node().id().as_str(), "node-3");
    /// assert_eq!(config.lease().ttl().as_millis(), 5000);
    ///
    /// let err = KelpieConfig::from_toml_str("[lease]\nttl_ms = -5", []).unwrap_err();
    /// assert!(matches!(err, ConfigError::InvalidValue { ref field, .. } if field == "lease.ttl_ms"));
    /// # Ok::<(), ConfigError>(())
    /// ```
    ///
    /// [`load`]: KelpieConfig::load
    pub fn from_toml_str<I>(text: &str, env: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let mut root: Table = text.parse().map_err(|err| syntax_error(text, &err))?;
        let overrides = env_overrides(env)?;
        apply_env_overrides(&mut root, &overrides)?;
        from_table(root).map_err(|err| attribute_to_env(err, &overrides))
    }

    /// This node's settings.
    pub fn node(&self) -> &NodeConfig {
        &self.node
    }

    /// Where actor state and coordination live.
    pub fn backend(&self) -> &BackendConfig {
        &self.backend
    }

    /// Actor ownership lease timing.
    pub fn lease(&self) -> &LeaseConfig {
        &self.lease
    }

    /// Per-actor runtime settings.
    pub fn actor(&self) -> &ActorConfig {
        &self.actor
    }
}

impl Default for KelpieConfig {
    /// A single node, `node-0`, with the embedded backend in
    /// [`DATA_DIR_DEFAULT`] and default lease and actor settings.
    fn default() -> Self {
        KelpieConfig {
            node: NodeConfig::new(NodeId::from_index(0)),
            backend: BackendConfig::Embedded {
                data_dir: DataDir::default(),
            },
            lease: LeaseConfig::default(),
            actor: ActorConfig::default(),
        }
    }
}

/// Writes the configuration as TOML that [`KelpieConfig::from_toml_str`]
/// reads back to an equal value (a non-UTF-8 `data_dir` is shown lossily).
impl fmt::Display for KelpieConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let quote = |text: &str| Value::String(text.to_string());
        writeln!(f, "[node]")?;
        writeln!(f, "id = {}", quote(self.node.id.as_str()))?;
        writeln!(f)?;
        writeln!(f, "[backend]")?;
        writeln!(f, "kind = {}", quote(self.backend.kind()))?;
        match &self.backend {
            BackendConfig::Memory => {}
            BackendConfig::Embedded { data_dir } => {
                let path = data_dir.as_path().to_string_lossy();
                writeln!(f, "data_dir = {}", quote(&path))?;
            }
            BackendConfig::Etcd { endpoints, prefix } => {
                let list: Vec<Value> = endpoints
                    .as_slice()
                    .iter()
                    .map(|endpoint| quote(&endpoint.to_string()))
                    .collect();
                writeln!(f, "endpoints = {}", Value::Array(list))?;
                writeln!(f, "prefix = {}", quote(prefix.as_str()))?;
            }
        }
        writeln!(f)?;
        writeln!(f, "[lease]")?;
        writeln!(f, "ttl_ms = {}", self.lease.ttl_ms)?;
        writeln!(f, "renew_interval_ms = {}", self.lease.renew_interval_ms)?;
        writeln!(f, "max_clock_drift_ms = {}", self.lease.max_clock_drift_ms)?;
        writeln!(f)?;
        writeln!(f, "[actor]")?;
        writeln!(f, "idle_timeout_ms = {}", self.actor.idle_timeout_ms)?;
        writeln!(f, "mailbox_depth = {}", self.actor.mailbox_depth)
    }
}

/// This node's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeConfig {
    id: NodeId,
}

impl NodeConfig {
    /// Settings for the node named `id`.
    pub fn new(id: NodeId) -> Self {
        NodeConfig { id }
    }

    /// The node's id.
    pub fn id(&self) -> &NodeId {
        &self.id
    }
}

/// Where actor state and coordination live. Each variant holds exactly the
/// settings its kind needs, already validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum BackendConfig {
    /// In process memory: lost when the process exits. For tests and trials.
    Memory,
    /// A durable store in a local directory: the single-node default.
    Embedded {
        /// The directory holding the store.
        data_dir: DataDir,
    },
    /// An etcd cluster shared by all nodes.
    Etcd {
        /// The etcd members to connect to.
        endpoints: NonEmptyEndpoints,
        /// Prefix of every key Kelpie writes, so clusters can share an etcd.
        prefix: EtcdPrefix,
    },
}

impl BackendConfig {
    /// The allowed values of `backend.kind`.
    pub const KINDS: [&'static str; 3] = ["memory", "embedded", "etcd"];

    /// The value of `backend.kind` for this backend.
    pub fn kind(&self) -> &'static str {
        match self {
            BackendConfig::Memory => "memory",
            BackendConfig::Embedded { .. } => "embedded",
            BackendConfig::Etcd { .. } => "etcd",
        }
    }
}

/// The embedded backend's directory: a non-empty path of at most
/// [`CONFIG_PATH_BYTES_MAX`] bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct DataDir(PathBuf);

impl DataDir {
    /// Checks `path` for use as `backend.data_dir`.
    pub fn new(path: impl Into<PathBuf>) -> Result<Self, ConfigError> {
        const FIELD: &str = "backend.data_dir";
        let path = path.into();
        let len = path.as_os_str().len();
        if len == 0 {
            return Err(invalid(FIELD, "", "must be a non-empty directory path"));
        }
        if len > CONFIG_PATH_BYTES_MAX {
            return Err(invalid(
                FIELD,
                &path.to_string_lossy(),
                format!("must be at most {CONFIG_PATH_BYTES_MAX} bytes long; it is {len}"),
            ));
        }
        Ok(DataDir(path))
    }

    /// The directory.
    pub fn as_path(&self) -> &Path {
        &self.0
    }
}

impl Default for DataDir {
    /// [`DATA_DIR_DEFAULT`].
    fn default() -> Self {
        DataDir(PathBuf::from(DATA_DIR_DEFAULT))
    }
}

/// The key prefix in etcd: `/` followed by segments of `A-Z a-z 0-9 _ . -`
/// separated by single `/`, at most [`ETCD_PREFIX_BYTES_MAX`] bytes, e.g.
/// `/kelpie` or `/prod/kelpie`. No trailing `/`, so `{prefix}/...` joins
/// cleanly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct EtcdPrefix(String);

impl EtcdPrefix {
    /// Checks `prefix` for use as `backend.prefix`.
    pub fn new(prefix: impl Into<String>) -> Result<Self, ConfigError> {
        let prefix = prefix.into();
        let reason = format!(
            "must be `/` followed by segments of A-Z a-z 0-9 _ . - separated by single `/`, \
             without a trailing `/`, at most {ETCD_PREFIX_BYTES_MAX} bytes (e.g. {ETCD_PREFIX_DEFAULT})"
        );
        let well_formed = prefix.len() <= ETCD_PREFIX_BYTES_MAX
            && prefix.strip_prefix('/').is_some_and(|rest| {
                rest.split('/').all(|segment| {
                    !segment.is_empty()
                        && segment
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
                })
            });
        if well_formed {
            Ok(EtcdPrefix(prefix))
        } else {
            Err(invalid("backend.prefix", &prefix, reason))
        }
    }

    /// The prefix.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for EtcdPrefix {
    /// [`ETCD_PREFIX_DEFAULT`].
    fn default() -> Self {
        EtcdPrefix(ETCD_PREFIX_DEFAULT.to_string())
    }
}

/// 1 to [`ETCD_ENDPOINTS_MAX`] etcd endpoints. The only constructor checks
/// them, so an etcd backend without endpoints cannot exist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct NonEmptyEndpoints(Vec<Endpoint>);

impl NonEmptyEndpoints {
    /// Parses each of `endpoints` as `http(s)://host:port`. Errors name
    /// `backend.endpoints[i]` for the first bad one.
    pub fn new<I, S>(endpoints: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        const FIELD: &str = "backend.endpoints";
        // Take one past the limit, so an over-long list is neither parsed nor
        // stored in full.
        let texts: Vec<S> = endpoints.into_iter().take(ETCD_ENDPOINTS_MAX + 1).collect();
        if texts.is_empty() {
            return Err(invalid(
                FIELD,
                "[]",
                "must list at least one endpoint, e.g. [\"http://127.0.0.1:2379\"]",
            ));
        }
        if texts.len() > ETCD_ENDPOINTS_MAX {
            return Err(invalid(
                FIELD,
                &format!("more than {ETCD_ENDPOINTS_MAX} endpoints"),
                format!("must list at most {ETCD_ENDPOINTS_MAX} endpoints"),
            ));
        }
        let parsed = texts
            .iter()
            .enumerate()
            .map(|(index, text)| {
                Endpoint::parse(text.as_ref())
                    .map_err(|reason| invalid(format!("{FIELD}[{index}]"), text.as_ref(), reason))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(NonEmptyEndpoints(parsed))
    }

    /// The endpoints, in configured order (never empty).
    pub fn as_slice(&self) -> &[Endpoint] {
        &self.0
    }

    /// The first endpoint.
    pub fn first(&self) -> &Endpoint {
        // The constructor refuses an empty list.
        &self.0[0]
    }
}

/// The scheme of an [`Endpoint`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointScheme {
    /// Plain `http://`.
    Http,
    /// TLS, `https://`.
    Https,
}

/// One etcd endpoint, `http(s)://host:port`: the host a DNS name, an IPv4
/// address or a bracketed IPv6 address, the port 1 to 65535, and no path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    scheme: EndpointScheme,
    host: String,
    port: u16,
}

impl Endpoint {
    /// Parses `text`; the error is a reason a person can act on.
    fn parse(text: &str) -> Result<Endpoint, String> {
        const FORM: &str = "expected http://host:port or https://host:port";
        if text.is_empty() {
            return Err(format!("must not be empty; {FORM}"));
        }
        if text.len() > ETCD_ENDPOINT_BYTES_MAX {
            return Err(format!(
                "must be at most {ETCD_ENDPOINT_BYTES_MAX} bytes; it is {}",
                text.len()
            ));
        }
        let (scheme, authority) = if let Some(rest) = text.strip_prefix("http://") {
            (EndpointScheme::Http, rest)
        } else if let Some(rest) = text.strip_prefix("https://") {
            (EndpointScheme::Https, rest)
        } else {
            return Err(format!("has no http:// or https:// scheme; {FORM}"));
        };
        if authority.contains(['/', '?', '#']) {
            return Err(format!("must not have a path or query; {FORM}"));
        }
        let (host, port) = authority
            .rsplit_once(':')
            .ok_or_else(|| format!("has no port; {FORM}"))?;
        let host_ok = if let Some(inner) = host.strip_prefix('[') {
            inner.strip_suffix(']').is_some_and(|address| {
                !address.is_empty()
                    && address
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'))
            })
        } else {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
        };
        if !host_ok {
            return Err(format!(
                "has an invalid host `{host}`; {FORM}, the host a name, IPv4 or [IPv6] address"
            ));
        }
        // Digits only: `u16::from_str` would also take a leading `+`.
        let port = Some(port)
            .filter(|port| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|port| port.parse::<u16>().ok())
            .filter(|&port| port != 0)
            .ok_or_else(|| format!("has an invalid port `{port}`; it must be 1 to 65535"))?;
        Ok(Endpoint {
            scheme,
            host: host.to_string(),
            port,
        })
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> EndpointScheme {
        self.scheme
    }

    /// The host; IPv6 addresses keep their brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            EndpointScheme::Http => "http",
            EndpointScheme::Https => "https",
        };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

impl Serialize for Endpoint {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Actor ownership lease timing. Always `ttl > renew_interval +
/// max_clock_drift`, so a live owner renews before any node, even one whose
/// clock drifted by the bound, can consider the lease expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LeaseConfig {
    ttl_ms: u64,
    renew_interval_ms: u64,
    max_clock_drift_ms: u64,
}

impl LeaseConfig {
    /// Checks each value against its bounds in [`crate::limits`], then the
    /// rule between them.
    pub fn new(ttl_ms: u64, renew_interval_ms: u64, max_clock_drift_ms: u64) -> Result<Self, ConfigError> {
        let ttl_ms = LEASE_TTL.check(ttl_ms)?;
        let renew_interval_ms = LEASE_RENEW_INTERVAL.check(renew_interval_ms)?;
        let max_clock_drift_ms = LEASE_CLOCK_DRIFT.check(max_clock_drift_ms)?;
        // Bounded above, so the sum cannot overflow.
        let needed_ms = renew_interval_ms + max_clock_drift_ms;
        if ttl_ms <= needed_ms {
            return Err(ConfigError::InvalidCombination {
                fields: vec![
                    LEASE_TTL.field.to_string(),
                    LEASE_RENEW_INTERVAL.field.to_string(),
                    LEASE_CLOCK_DRIFT.field.to_string(),
                ],
                reason: format!(
                    "lease.ttl_ms ({ttl_ms}) must be greater than lease.renew_interval_ms \
                     ({renew_interval_ms}) + lease.max_clock_drift_ms ({max_clock_drift_ms}) \
                     = {needed_ms}, so an owner renews before any node considers its lease \
                     expired; raise ttl_ms or lower the others"
                ),
            });
        }
        Ok(LeaseConfig {
            ttl_ms,
            renew_interval_ms,
            max_clock_drift_ms,
        })
    }

    /// How long a lease lasts without renewal, in milliseconds.
    pub fn ttl_ms(&self) -> u64 {
        self.ttl_ms
    }

    /// How long a lease lasts without renewal.
    pub fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_ms)
    }

    /// How often an owner renews its leases, in milliseconds.
    pub fn renew_interval_ms(&self) -> u64 {
        self.renew_interval_ms
    }

    /// How often an owner renews its leases.
    pub fn renew_interval(&self) -> Duration {
        Duration::from_millis(self.renew_interval_ms)
    }

    /// The most any two nodes' clocks may disagree, in milliseconds.
    pub fn max_clock_drift_ms(&self) -> u64 {
        self.max_clock_drift_ms
    }

    /// The most any two nodes' clocks may disagree.
    pub fn max_clock_drift(&self) -> Duration {
        Duration::from_millis(self.max_clock_drift_ms)
    }
}

impl Default for LeaseConfig {
    /// The `*_DEFAULT` lease values of [`crate::limits`].
    fn default() -> Self {
        LeaseConfig {
            ttl_ms: LEASE_TTL_MS_DEFAULT,
            renew_interval_ms: LEASE_RENEW_INTERVAL_MS_DEFAULT,
            max_clock_drift_ms: CLOCK_DRIFT_MS_DEFAULT,
        }
    }
}

/// Per-actor runtime settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ActorConfig {
    idle_timeout_ms: u64,
    mailbox_depth: usize,
}

impl ActorConfig {
    /// Checks each value against its bounds in [`crate::limits`].
    pub fn new(idle_timeout_ms: u64, mailbox_depth: usize) -> Result<Self, ConfigError> {
        let idle_timeout_ms = ACTOR_IDLE_TIMEOUT.check(idle_timeout_ms)?;
        ACTOR_MAILBOX_DEPTH.check(u64::try_from(mailbox_depth).unwrap_or(u64::MAX))?;
        Ok(ActorConfig {
            idle_timeout_ms,
            mailbox_depth,
        })
    }

    /// How long an actor stays active without messages, in milliseconds.
    pub fn idle_timeout_ms(&self) -> u64 {
        self.idle_timeout_ms
    }

    /// How long an actor stays active without messages.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }

    /// How many messages may wait for one actor before senders are refused.
    pub fn mailbox_depth(&self) -> usize {
        self.mailbox_depth
    }
}

impl Default for ActorConfig {
    /// [`ACTOR_IDLE_TIMEOUT_MS_DEFAULT`] and [`MAILBOX_DEPTH_DEFAULT`].
    fn default() -> Self {
        ActorConfig {
            idle_timeout_ms: ACTOR_IDLE_TIMEOUT_MS_DEFAULT,
            mailbox_depth: MAILBOX_DEPTH_DEFAULT,
        }
    }
}

// --- Reading the file --------------------------------------------------------

fn read_config_file(path: &Path) -> Result<String, ConfigError> {
    let io = |source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    };
    let too_large = |bytes| ConfigError::TooLarge {
        path: path.to_path_buf(),
        bytes,
        max: CONFIG_FILE_BYTES_MAX as u64,
    };
    let file = File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    if len > CONFIG_FILE_BYTES_MAX as u64 {
        return Err(too_large(len));
    }
    // The file may grow after the size check; read at most one byte more.
    let mut bytes = Vec::new();
    file.take(CONFIG_FILE_BYTES_MAX as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() > CONFIG_FILE_BYTES_MAX {
        return Err(too_large(bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|err| ConfigError::NotUtf8 {
        path: path.to_path_buf(),
        byte_offset: err.utf8_error().valid_up_to(),
    })
}

fn syntax_error(text: &str, err: &toml::de::Error) -> ConfigError {
    let (line, column) = match err.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
            let line = before.matches('\n').count() + 1;
            (line, before[line_start..].chars().count() + 1)
        }
        None => (0, 0),
    };
    ConfigError::Syntax {
        line,
        column,
        message: err.message().trim().to_string(),
    }
}

// --- Keys and the environment ------------------------------------------------

/// How an environment variable's text becomes a TOML value.
#[derive(Debug, Clone, Copy)]
enum EnvType {
    Text,
    Integer,
    List,
}

/// Every configuration key: the one list that file parsing, error messages
/// and the environment mapping all read.
const KEYS: &[(&str, &str, EnvType)] = &[
    ("node", "id", EnvType::Text),
    ("backend", "kind", EnvType::Text),
    ("backend", "data_dir", EnvType::Text),
    ("backend", "endpoints", EnvType::List),
    ("backend", "prefix", EnvType::Text),
    ("lease", "ttl_ms", EnvType::Integer),
    ("lease", "renew_interval_ms", EnvType::Integer),
    ("lease", "max_clock_drift_ms", EnvType::Integer),
    ("actor", "idle_timeout_ms", EnvType::Integer),
    ("actor", "mailbox_depth", EnvType::Integer),
];

const SECTIONS: [&str; 4] = ["node", "backend", "lease", "actor"];

fn section_keys(section: &str) -> Vec<&'static str> {
    KEYS.iter()
        .filter(|(name, _, _)| *name == section)
        .map(|&(_, key, _)| key)
        .collect()
}

fn env_var_name(section: &str, key: &str) -> String {
    format!(
        "{ENV_PREFIX}{}__{}",
        section.to_ascii_uppercase(),
        key.to_ascii_uppercase()
    )
}

/// One `KELPIE_*` variable, resolved to its key and parsed.
struct EnvOverride {
    name: String,
    section: &'static str,
    key: &'static str,
    value: Value,
}

fn env_overrides<I>(env: I) -> Result<Vec<EnvOverride>, ConfigError>
where
    I: IntoIterator<Item = (String, String)>,
{
    // Sorted, so which error is reported does not depend on environment order.
    let vars: BTreeMap<String, String> = env
        .into_iter()
        .filter(|(name, _)| name.starts_with(ENV_PREFIX) && !ENV_VARS_NOT_CONFIG.contains(&name.as_str()))
        .collect();
    vars.into_iter()
        .map(|(name, text)| {
            let Some(&(section, key, env_type)) =
                KEYS.iter().find(|(section, key, _)| env_var_name(section, key) == name)
            else {
                return Err(ConfigError::UnknownEnvVar { name });
            };
            let value = match env_type {
                EnvType::Text => Value::String(text),
                EnvType::Integer => match text.trim().parse::<i64>() {
                    Ok(number) => Value::Integer(number),
                    Err(_) => {
                        return Err(invalid(
                            format!("{section}.{key}"),
                            &text,
                            format!("{name} must be an integer"),
                        ))
                    }
                },
                EnvType::List if text.trim().is_empty() => Value::Array(Vec::new()),
                EnvType::List => Value::Array(
                    text.split(',')
                        .map(|item| Value::String(item.trim().to_string()))
                        .collect(),
                ),
            };
            Ok(EnvOverride {
                name,
                section,
                key,
                value,
            })
        })
        .collect()
}

fn apply_env_overrides(root: &mut Table, overrides: &[EnvOverride]) -> Result<(), ConfigError> {
    let env_kind = overrides
        .iter()
        .find(|o| (o.section, o.key) == ("backend", "kind"))
        .map(|o| &o.value);
    if let Some(env_kind) = env_kind {
        let file_kind = root.get("backend").and_then(|backend| backend.get("kind"));
        if file_kind != Some(env_kind) {
            root.remove("backend");
        }
    }
    for o in overrides {
        let section = root.entry(o.section).or_insert_with(|| Value::Table(Table::new()));
        let Value::Table(table) = section else {
            return Err(not_a_table(o.section, section));
        };
        table.insert(o.key.to_string(), o.value.clone());
    }
    Ok(())
}

/// Adds which variable set the offending key, since the dotted path alone
/// points at the file.
fn attribute_to_env(err: ConfigError, overrides: &[EnvOverride]) -> ConfigError {
    match err {
        ConfigError::InvalidValue { field, value, reason } => {
            let key = field.split('[').next().unwrap_or(&field);
            let source = overrides.iter().find(|o| format!("{}.{}", o.section, o.key) == key);
            let reason = match source {
                Some(o) => format!("{reason} (set by {})", o.name),
                None => reason,
            };
            ConfigError::InvalidValue { field, value, reason }
        }
        other => other,
    }
}

fn process_env() -> Result<Vec<(String, String)>, ConfigError> {
    // `std::env::vars` panics on non-UTF-8; only our own variables must be text.
    let mut vars = Vec::new();
    for (name, value) in std::env::vars_os() {
        let lossy_name = name.to_string_lossy();
        if !lossy_name.starts_with(ENV_PREFIX) {
            continue;
        }
        let Some(name) = name.to_str() else {
            return Err(ConfigError::UnknownEnvVar {
                name: lossy_name.into_owned(),
            });
        };
        let Some(value) = value.to_str() else {
            return Err(invalid(
                name,
                &value.to_string_lossy(),
                "environment variable is not UTF-8 text",
            ));
        };
        vars.push((name.to_string(), value.to_string()));
    }
    Ok(vars)
}

// --- From TOML to the validated types ----------------------------------------

fn not_a_table(name: &str, value: &Value) -> ConfigError {
    invalid(name, &render(value), format!("must be a table, written [{name}]"))
}

/// One section of the file, taken apart key by key: each read removes its
/// key, so whatever is left was not read.
struct Section {
    name: &'static str,
    table: Table,
}

impl Section {
    /// Removes section `name` from `root`; `None` if the file has none.
    fn take(root: &mut Table, name: &'static str) -> Result<Option<Section>, ConfigError> {
        match root.remove(name) {
            None => Ok(None),
            Some(Value::Table(table)) => Ok(Some(Section { name, table })),
            Some(other) => Err(not_a_table(name, &other)),
        }
    }

    fn take_or_empty(root: &mut Table, name: &'static str) -> Result<Section, ConfigError> {
        Ok(Section::take(root, name)?.unwrap_or(Section {
            name,
            table: Table::new(),
        }))
    }

    fn field(&self, key: &str) -> String {
        format!("{}.{key}", self.name)
    }

    fn reject_unknown_keys(&self) -> Result<(), ConfigError> {
        let allowed = section_keys(self.name);
        match self.table.keys().find(|key| !allowed.contains(&key.as_str())) {
            Some(key) => Err(ConfigError::UnknownKey {
                key: self.field(key),
                allowed,
            }),
            None => Ok(()),
        }
    }

    fn string(&mut self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.table.remove(key) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(other) => Err(invalid(self.field(key), &render(&other), "must be a string")),
        }
    }

    /// Type and sign only; the constructors check the range with `bound`'s
    /// reason, so both errors read the same.
    fn integer(&mut self, key: &str, bound: &Bound) -> Result<Option<u64>, ConfigError> {
        match self.table.remove(key) {
            None => Ok(None),
            Some(Value::Integer(number)) => u64::try_from(number)
                .map(Some)
                .map_err(|_| invalid(bound.field, &number.to_string(), bound.reason())),
            Some(other) => Err(invalid(bound.field, &render(&other), bound.reason())),
        }
    }

    fn string_list(&mut self, key: &str) -> Result<Option<Vec<String>>, ConfigError> {
        let field = self.field(key);
        match self.table.remove(key) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .into_iter()
                .enumerate()
                .map(|(index, item)| match item {
                    Value::String(text) => Ok(text),
                    other => Err(invalid(
                        format!("{field}[{index}]"),
                        &render(&other),
                        "must be a string",
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => Err(invalid(field, &render(&other), "must be a list of strings")),
        }
    }
}

fn from_table(mut root: Table) -> Result<KelpieConfig, ConfigError> {
    if let Some(key) = root.keys().find(|key| !SECTIONS.contains(&key.as_str())) {
        return Err(ConfigError::UnknownKey {
            key: key.clone(),
            allowed: SECTIONS.to_vec(),
        });
    }
    let node = node_from(Section::take_or_empty(&mut root, "node")?)?;
    let backend = match Section::take(&mut root, "backend")? {
        None => KelpieConfig::default().backend,
        Some(section) => backend_from(section)?,
    };
    let lease = lease_from(Section::take_or_empty(&mut root, "lease")?)?;
    let actor = actor_from(Section::take_or_empty(&mut root, "actor")?)?;
    Ok(KelpieConfig::new(node, backend, lease, actor))
}

fn node_from(mut section: Section) -> Result<NodeConfig, ConfigError> {
    section.reject_unknown_keys()?;
    let id = match section.string("id")? {
        None => NodeId::from_index(0),
        Some(text) => NodeId::new(text.as_str()).map_err(|err| invalid(section.field("id"), &text, err.to_string()))?,
    };
    Ok(NodeConfig::new(id))
}

fn backend_from(mut section: Section) -> Result<BackendConfig, ConfigError> {
    section.reject_unknown_keys()?;
    let kinds = BackendConfig::KINDS.join(", ");
    let kind = section.string("kind")?.ok_or_else(|| ConfigError::MissingField {
        field: section.field("kind"),
        reason: format!("a [backend] table must set kind to one of {kinds}"),
    })?;
    let own_keys: &[&str] = match kind.as_str() {
        "memory" => &[],
        "embedded" => &["data_dir"],
        "etcd" => &["endpoints", "prefix"],
        _ => return Err(invalid(section.field("kind"), &kind, format!("must be one of {kinds}"))),
    };
    // Known keys are left only if they belong to another kind.
    if let Some(key) = section.table.keys().find(|key| !own_keys.contains(&key.as_str())) {
        return Err(ConfigError::InvalidCombination {
            fields: vec![section.field("kind"), section.field(key)],
            reason: format!("backend.{key} does not apply to kind = \"{kind}\"; remove it or change the kind"),
        });
    }
    match kind.as_str() {
        "memory" => Ok(BackendConfig::Memory),
        "embedded" => {
            let data_dir = section.string("data_dir")?.ok_or_else(|| ConfigError::MissingField {
                field: section.field("data_dir"),
                reason: format!("kind = \"embedded\" needs a directory, e.g. data_dir = \"{DATA_DIR_DEFAULT}\""),
            })?;
            Ok(BackendConfig::Embedded {
                data_dir: DataDir::new(data_dir)?,
            })
        }
        _ => {
            let endpoints = section
                .string_list("endpoints")?
                .ok_or_else(|| ConfigError::MissingField {
                    field: section.field("endpoints"),
                    reason: "kind = \"etcd\" needs at least one endpoint, \
                             e.g. endpoints = [\"http://127.0.0.1:2379\"]"
                        .to_string(),
                })?;
            let endpoints = NonEmptyEndpoints::new(endpoints)?;
            let prefix = match section.string("prefix")? {
                None => EtcdPrefix::default(),
                Some(prefix) => EtcdPrefix::new(prefix)?,
            };
            Ok(BackendConfig::Etcd { endpoints, prefix })
        }
    }
}

fn lease_from(mut section: Section) -> Result<LeaseConfig, ConfigError> {
    section.reject_unknown_keys()?;
    let defaults = LeaseConfig::default();
    let ttl_ms = section.integer("ttl_ms", &LEASE_TTL)?;
    let renew_interval_ms = section.integer("renew_interval_ms", &LEASE_RENEW_INTERVAL)?;
    let max_clock_drift_ms = section.integer("max_clock_drift_ms", &LEASE_CLOCK_DRIFT)?;
    LeaseConfig::new(
        ttl_ms.unwrap_or(defaults.ttl_ms),
        renew_interval_ms.unwrap_or(defaults.renew_interval_ms),
        max_clock_drift_ms.unwrap_or(defaults.max_clock_drift_ms),
    )
}

fn actor_from(mut section: Section) -> Result<ActorConfig, ConfigError> {
    section.reject_unknown_keys()?;
    let defaults = ActorConfig::default();
    let idle_timeout_ms = section.integer("idle_timeout_ms", &ACTOR_IDLE_TIMEOUT)?;
    let mailbox_depth = match section.integer("mailbox_depth", &ACTOR_MAILBOX_DEPTH)? {
        None => defaults.mailbox_depth,
        // Beyond usize means beyond the bound too; the constructor says so.
        Some(depth) => usize::try_from(depth).unwrap_or(usize::MAX),
    };
    ActorConfig::new(idle_timeout_ms.unwrap_or(defaults.idle_timeout_ms), mailbox_depth)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;

    fn no_env() -> Vec<(String, String)> {
        Vec::new()
    }

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    fn parse(text: &str) -> Result<KelpieConfig, ConfigError> {
        KelpieConfig::from_toml_str(text, no_env())
    }

    fn parse_err(text: &str) -> ConfigError {
        parse(text).expect_err("config must be rejected")
    }

    const ETCD: &str = r#"
        [node]
        id = "node-2"
        [backend]
        kind = "etcd"
        endpoints = ["http://10.0.0.1:2379", "https://etcd-b.internal:2380", "http://[::1]:2379"]
        prefix = "/prod/kelpie"
        [lease]
        ttl_ms = 5000
        renew_interval_ms = 1000
        max_clock_drift_ms = 0
        [actor]
        idle_timeout_ms = 1
        mailbox_depth = 65536
    "#;

    fn assert_invalid_value(err: ConfigError, expected_field: &str, expected_value: &str) {
        match err {
            ConfigError::InvalidValue { field, value, .. } => {
                assert_eq!((field.as_str(), value.as_str()), (expected_field, expected_value));
            }
            other => panic!("expected InvalidValue for {expected_field}, got {other:?}"),
        }
    }

    #[test]
    fn empty_text_gives_the_single_node_defaults() {
        let config = parse("").expect("empty config is valid");
        assert_eq!(config, KelpieConfig::default());
        assert_eq!(config.node().id().as_str(), "node-0");
        assert_eq!(
            config.backend(),
            &BackendConfig::Embedded {
                data_dir: DataDir::new("./kelpie-data").expect("valid dir")
            }
        );
        assert_eq!(config.lease().ttl(), Duration::from_millis(10_000));
        assert_eq!(config.lease().renew_interval(), Duration::from_millis(3_000));
        assert_eq!(config.lease().max_clock_drift(), Duration::from_millis(500));
        assert_eq!(config.actor().idle_timeout(), Duration::from_millis(60_000));
        assert_eq!(config.actor().mailbox_depth(), 1024);
    }

    #[test]
    fn default_parts_pass_their_own_validation() {
        let lease = LeaseConfig::default();
        assert_eq!(
            LeaseConfig::new(lease.ttl_ms(), lease.renew_interval_ms(), lease.max_clock_drift_ms())
                .expect("default lease is valid"),
            lease
        );
        let actor = ActorConfig::default();
        assert_eq!(
            ActorConfig::new(actor.idle_timeout_ms(), actor.mailbox_depth()).expect("default actor settings are valid"),
            actor
        );
    }

    #[test]
    fn example_file_is_valid_and_shows_the_defaults() {
        let text = include_str!("../../../kelpie.example.toml");
        assert_eq!(parse(text).expect("example is valid"), KelpieConfig::default());
    }

    #[test]
    fn etcd_file_is_read_exactly() {
        let config = parse(ETCD).expect("valid etcd config");
        assert_eq!(config.node().id().as_str(), "node-2");
        let BackendConfig::Etcd { endpoints, prefix } = config.backend() else {
            panic!("expected etcd, got {:?}", config.backend());
        };
        let read: Vec<(EndpointScheme, &str, u16)> = endpoints
            .as_slice()
            .iter()
            .map(|e| (e.scheme(), e.host(), e.port()))
            .collect();
        assert_eq!(
            read,
            [
                (EndpointScheme::Http, "10.0.0.1", 2379),
                (EndpointScheme::Https, "etcd-b.internal", 2380),
                (EndpointScheme::Http, "[::1]", 2379),
            ]
        );
        assert_eq!(endpoints.first().to_string(), "http://10.0.0.1:2379");
        assert_eq!(prefix.as_str(), "/prod/kelpie");
        assert_eq!(
            (
                config.lease().ttl_ms(),
                config.lease().renew_interval_ms(),
                config.lease().max_clock_drift_ms()
            ),
            (5000, 1000, 0)
        );
        assert_eq!(
            (config.actor().idle_timeout_ms(), config.actor().mailbox_depth()),
            (1, 65536)
        );
    }

    #[test]
    fn valid_configs_round_trip_through_display_and_serialize() {
        let memory = "[backend]\nkind = \"memory\"\n";
        for text in [ETCD, memory, ""] {
            let config = parse(text).expect("valid config");
            assert_eq!(parse(&config.to_string()).expect("display output is valid"), config);
            let serialized = toml::to_string(&config).expect("serializes");
            assert_eq!(parse(&serialized).expect("serialized output is valid"), config);
        }
    }

    #[test]
    fn display_prints_readable_toml() {
        let config =
            parse("[backend]\nkind = \"etcd\"\nendpoints = [\"http://a:1\", \"http://b:2\"]").expect("valid config");
        assert_eq!(
            config.to_string(),
            "[node]\nid = \"node-0\"\n\n\
             [backend]\nkind = \"etcd\"\nendpoints = [\"http://a:1\", \"http://b:2\"]\nprefix = \"/kelpie\"\n\n\
             [lease]\nttl_ms = 10000\nrenew_interval_ms = 3000\nmax_clock_drift_ms = 500\n\n\
             [actor]\nidle_timeout_ms = 60000\nmailbox_depth = 1024\n"
        );
    }

    #[test]
    fn etcd_without_endpoints_is_missing_a_field() {
        let err = parse_err("[backend]\nkind = \"etcd\"");
        assert!(
            matches!(&err, ConfigError::MissingField { field, .. } if field == "backend.endpoints"),
            "{err:?}"
        );
    }

    #[test]
    fn etcd_with_an_empty_endpoint_list_is_invalid() {
        let err = parse_err("[backend]\nkind = \"etcd\"\nendpoints = []");
        assert_invalid_value(err, "backend.endpoints", "[]");
    }

    #[test]
    fn etcd_with_an_empty_endpoint_names_its_index() {
        let err = parse_err("[backend]\nkind = \"etcd\"\nendpoints = [\"http://a:2379\", \"\"]");
        assert!(
            matches!(
                &err,
                ConfigError::InvalidValue { field, value, reason }
                    if field == "backend.endpoints[1]"
                        && value.is_empty()
                        && reason == "must not be empty; expected http://host:port or https://host:port"
            ),
            "{err:?}"
        );
    }

    #[test]
    fn malformed_endpoints_are_rejected_with_a_reason() {
        let cases = [
            ("127.0.0.1:2379", "has no http:// or https:// scheme; expected http://host:port or https://host:port"),
            ("http://etcd", "has no port; expected http://host:port or https://host:port"),
            ("http://:2379", "has an invalid host ``; expected http://host:port or https://host:port, the host a name, IPv4 or [IPv6] address"),
            ("http://a:0", "has an invalid port `0`; it must be 1 to 65535"),
            ("http://a:65536", "has an invalid port `65536`; it must be 1 to 65535"),
            ("http://a:+80", "has an invalid port `+80`; it must be 1 to 65535"),
            ("http://a:2379/v3", "must not have a path or query; expected http://host:port or https://host:port"),
            ("http://a:2379/", "must not have a path or query; expected http://host:port or https://host:port"),
            ("http://user@a:2379", "has an invalid host `user@a`; expected http://host:port or https://host:port, the host a name, IPv4 or [IPv6] address"),
            ("http://[zz]:2379", "has an invalid host `[zz]`; expected http://host:port or https://host:port, the host a name, IPv4 or [IPv6] address"),
        ];
        for (text, expected) in cases {
            assert_eq!(Endpoint::parse(text), Err(expected.to_string()), "{text}");
        }
        let long = format!("http://{}:2379", "a".repeat(ETCD_ENDPOINT_BYTES_MAX));
        assert_eq!(
            Endpoint::parse(&long),
            Err(format!("must be at most 256 bytes; it is {}", long.len()))
        );
    }

    #[test]
    fn too_many_endpoints_are_rejected() {
        let endpoints = vec!["http://a:1"; ETCD_ENDPOINTS_MAX + 1];
        assert_invalid_value(
            NonEmptyEndpoints::new(endpoints).expect_err("too many"),
            "backend.endpoints",
            "more than 16 endpoints",
        );
    }

    #[test]
    fn unknown_backend_kind_lists_the_allowed_ones() {
        let err = parse_err("[backend]\nkind = \"zookeeper\"");
        assert!(
            matches!(
                &err,
                ConfigError::InvalidValue { field, value, reason }
                    if field == "backend.kind" && value == "zookeeper" && reason == "must be one of memory, embedded, etcd"
            ),
            "{err:?}"
        );
    }

    #[test]
    fn backend_table_without_kind_is_missing_a_field() {
        let err = parse_err("[backend]\ndata_dir = \"/var/lib/kelpie\"");
        assert!(
            matches!(&err, ConfigError::MissingField { field, .. } if field == "backend.kind"),
            "{err:?}"
        );
    }

    #[test]
    fn embedded_without_data_dir_is_missing_a_field() {
        let err = parse_err("[backend]\nkind = \"embedded\"");
        assert!(
            matches!(&err, ConfigError::MissingField { field, .. } if field == "backend.data_dir"),
            "{err:?}"
        );
        assert_invalid_value(
            parse_err("[backend]\nkind = \"embedded\"\ndata_dir = \"\""),
            "backend.data_dir",
            "",
        );
    }

    #[test]
    fn keys_of_another_backend_kind_are_rejected() {
        for (text, key) in [
            ("[backend]\nkind = \"memory\"\ndata_dir = \"/d\"", "backend.data_dir"),
            (
                "[backend]\nkind = \"etcd\"\nendpoints = [\"http://a:1\"]\ndata_dir = \"/d\"",
                "backend.data_dir",
            ),
            (
                "[backend]\nkind = \"embedded\"\ndata_dir = \"/d\"\nprefix = \"/k\"",
                "backend.prefix",
            ),
        ] {
            let err = parse_err(text);
            assert!(
                matches!(
                    &err,
                    ConfigError::InvalidCombination { fields, .. }
                        if fields == &["backend.kind".to_string(), key.to_string()]
                ),
                "{text}: {err:?}"
            );
        }
    }

    #[test]
    fn bad_etcd_prefixes_are_rejected() {
        for prefix in ["", "kelpie", "/", "/kelpie/", "//kelpie", "/a b"] {
            let text = format!("[backend]\nkind = \"etcd\"\nendpoints = [\"http://a:1\"]\nprefix = \"{prefix}\"");
            assert_invalid_value(parse_err(&text), "backend.prefix", prefix);
        }
    }

    #[test]
    fn negative_ttl_names_the_field_and_value() {
        let err = parse_err("[lease]\nttl_ms = -5");
        assert!(
            matches!(
                &err,
                ConfigError::InvalidValue { field, value, reason }
                    if field == "lease.ttl_ms" && value == "-5" && reason == "must be an integer from 100 to 600000 (milliseconds)"
            ),
            "{err:?}"
        );
    }

    #[test]
    fn zero_durations_are_rejected() {
        assert_invalid_value(parse_err("[lease]\nttl_ms = 0"), "lease.ttl_ms", "0");
        assert_invalid_value(
            parse_err("[lease]\nrenew_interval_ms = 0"),
            "lease.renew_interval_ms",
            "0",
        );
        assert_invalid_value(parse_err("[actor]\nidle_timeout_ms = 0"), "actor.idle_timeout_ms", "0");
        assert_invalid_value(parse_err("[actor]\nmailbox_depth = 0"), "actor.mailbox_depth", "0");
    }

    #[test]
    fn values_over_their_limit_are_rejected() {
        assert_invalid_value(parse_err("[lease]\nttl_ms = 600001"), "lease.ttl_ms", "600001");
        assert_invalid_value(
            parse_err("[lease]\nmax_clock_drift_ms = 60001"),
            "lease.max_clock_drift_ms",
            "60001",
        );
        assert_invalid_value(
            parse_err("[actor]\nmailbox_depth = 65537"),
            "actor.mailbox_depth",
            "65537",
        );
    }

    #[test]
    fn ttl_not_above_renew_plus_drift_is_an_invalid_combination() {
        let err = parse_err("[lease]\nttl_ms = 3500\nrenew_interval_ms = 3000\nmax_clock_drift_ms = 500");
        let ConfigError::InvalidCombination { fields, reason } = &err else {
            panic!("expected InvalidCombination, got {err:?}");
        };
        assert_eq!(
            fields,
            &["lease.ttl_ms", "lease.renew_interval_ms", "lease.max_clock_drift_ms"]
        );
        assert!(reason.starts_with("lease.ttl_ms (3500) must be greater than lease.renew_interval_ms (3000) + lease.max_clock_drift_ms (500) = 3500"), "{reason}");
        // One millisecond more is enough.
        let config =
            parse("[lease]\nttl_ms = 3501\nrenew_interval_ms = 3000\nmax_clock_drift_ms = 500").expect("valid lease");
        assert_eq!(config.lease().ttl_ms(), 3501);
    }

    #[test]
    fn wrong_types_name_the_field() {
        assert_invalid_value(parse_err("[lease]\nttl_ms = \"100\""), "lease.ttl_ms", "100");
        assert_invalid_value(parse_err("[lease]\nttl_ms = 1.5"), "lease.ttl_ms", "1.5");
        assert_invalid_value(parse_err("[node]\nid = 3"), "node.id", "3");
        assert_invalid_value(parse_err("node = 3"), "node", "3");
        assert_invalid_value(
            parse_err("[backend]\nkind = \"etcd\"\nendpoints = \"http://a:1\""),
            "backend.endpoints",
            "http://a:1",
        );
        assert_invalid_value(
            parse_err("[backend]\nkind = \"etcd\"\nendpoints = [\"http://a:1\", 2]"),
            "backend.endpoints[1]",
            "2",
        );
    }

    #[test]
    fn invalid_node_id_explains_the_alphabet() {
        let err = parse_err("[node]\nid = \"Node 1\"");
        assert!(
            matches!(
                &err,
                ConfigError::InvalidValue { field, value, reason }
                    if field == "node.id" && value == "Node 1"
                        && reason == "node id has 'N' at byte 0; allowed characters are a-z 0-9 _ -"
            ),
            "{err:?}"
        );
    }

    #[test]
    fn unknown_keys_in_the_file_are_named() {
        let err = parse_err("[lease]\nttl = 5000");
        assert!(
            matches!(
                &err,
                ConfigError::UnknownKey { key, allowed }
                    if key == "lease.ttl" && allowed == &["ttl_ms", "renew_interval_ms", "max_clock_drift_ms"]
            ),
            "{err:?}"
        );
        let err = parse_err("[leese]\nttl_ms = 5000");
        assert!(
            matches!(&err, ConfigError::UnknownKey { key, .. } if key == "leese"),
            "{err:?}"
        );
        let err = parse_err("[backend]\nkind = \"memory\"\npath = \"/x\"");
        assert!(
            matches!(&err, ConfigError::UnknownKey { key, .. } if key == "backend.path"),
            "{err:?}"
        );
    }

    #[test]
    fn syntax_errors_give_line_and_column() {
        let err = parse_err("[lease]\nttl_ms = = 5");
        assert!(
            matches!(
                &err,
                ConfigError::Syntax {
                    line: 2,
                    column: 10,
                    ..
                }
            ),
            "{err:?}"
        );
        let err = parse_err("[lease]\nttl_ms = 1\nttl_ms = 2");
        assert!(matches!(&err, ConfigError::Syntax { line: 3, .. }), "{err:?}");
    }

    #[test]
    fn unknown_env_var_is_named() {
        let err = KelpieConfig::from_toml_str("", env(&[("KELPIE_LEASE__TTL", "5000")])).expect_err("typo in variable");
        assert!(
            matches!(&err, ConfigError::UnknownEnvVar { name } if name == "KELPIE_LEASE__TTL"),
            "{err:?}"
        );
        // Keys are upper case only, so two spellings cannot fight.
        let err =
            KelpieConfig::from_toml_str("", env(&[("KELPIE_lease__ttl_ms", "5000")])).expect_err("lower case variable");
        assert!(
            matches!(&err, ConfigError::UnknownEnvVar { name } if name == "KELPIE_lease__ttl_ms"),
            "{err:?}"
        );
    }

    #[test]
    fn reserved_and_foreign_env_vars_are_ignored() {
        let config = KelpieConfig::from_toml_str(
            "",
            env(&[
                ("KELPIE_LOG", "debug"),
                ("KELPIE_CONFIG", "/etc/kelpie.toml"),
                ("PATH", "/usr/bin"),
                ("DST_SEED", "7"),
            ]),
        )
        .expect("only ignored variables");
        assert_eq!(config, KelpieConfig::default());
    }

    #[test]
    fn env_overrides_win_over_the_file() {
        let config = KelpieConfig::from_toml_str(
            ETCD,
            env(&[
                ("KELPIE_LEASE__TTL_MS", "9000"),
                ("KELPIE_NODE__ID", "node-3"),
                ("KELPIE_BACKEND__ENDPOINTS", "http://a:2379, http://b:2379"),
                ("KELPIE_ACTOR__MAILBOX_DEPTH", " 8 "),
            ]),
        )
        .expect("valid overrides");
        assert_eq!(config.lease().ttl_ms(), 9000);
        assert_eq!(config.lease().renew_interval_ms(), 1000);
        assert_eq!(config.node().id().as_str(), "node-3");
        assert_eq!(config.actor().mailbox_depth(), 8);
        let BackendConfig::Etcd { endpoints, prefix } = config.backend() else {
            panic!("expected etcd, got {:?}", config.backend());
        };
        let urls: Vec<String> = endpoints.as_slice().iter().map(ToString::to_string).collect();
        assert_eq!(urls, ["http://a:2379", "http://b:2379"]);
        assert_eq!(prefix.as_str(), "/prod/kelpie");
    }

    #[test]
    fn env_switching_backend_kind_drops_the_files_backend_keys() {
        let file = "[backend]\nkind = \"embedded\"\ndata_dir = \"/var/lib/kelpie\"";
        let config = KelpieConfig::from_toml_str(
            file,
            env(&[
                ("KELPIE_BACKEND__KIND", "etcd"),
                ("KELPIE_BACKEND__ENDPOINTS", "http://etcd:2379"),
            ]),
        )
        .expect("env selects etcd");
        assert_eq!(config.backend().kind(), "etcd");
        // The same kind keeps the file's keys.
        let config =
            KelpieConfig::from_toml_str(file, env(&[("KELPIE_BACKEND__KIND", "embedded")])).expect("same kind");
        assert_eq!(
            config.backend(),
            &BackendConfig::Embedded {
                data_dir: DataDir::new("/var/lib/kelpie").expect("valid dir")
            }
        );
    }

    #[test]
    fn bad_env_values_name_the_field_and_the_variable() {
        let err = KelpieConfig::from_toml_str("", env(&[("KELPIE_LEASE__TTL_MS", "soon")])).expect_err("not a number");
        assert!(
            matches!(
                &err,
                ConfigError::InvalidValue { field, value, reason }
                    if field == "lease.ttl_ms" && value == "soon" && reason == "KELPIE_LEASE__TTL_MS must be an integer"
            ),
            "{err:?}"
        );
        let err = KelpieConfig::from_toml_str("", env(&[("KELPIE_LEASE__TTL_MS", "-5")])).expect_err("negative");
        assert!(
            matches!(
                &err,
                ConfigError::InvalidValue { field, value, reason }
                    if field == "lease.ttl_ms" && value == "-5"
                        && reason == "must be an integer from 100 to 600000 (milliseconds) (set by KELPIE_LEASE__TTL_MS)"
            ),
            "{err:?}"
        );
        let err = KelpieConfig::from_toml_str(
            "",
            env(&[
                ("KELPIE_BACKEND__KIND", "etcd"),
                ("KELPIE_BACKEND__ENDPOINTS", "http://a:1,,http://b:2"),
            ]),
        )
        .expect_err("empty endpoint");
        assert_invalid_value(err, "backend.endpoints[1]", "");
        let err = KelpieConfig::from_toml_str(
            "",
            env(&[("KELPIE_BACKEND__KIND", "etcd"), ("KELPIE_BACKEND__ENDPOINTS", "")]),
        )
        .expect_err("no endpoints");
        assert_invalid_value(err, "backend.endpoints", "[]");
    }

    #[test]
    fn load_reads_a_file_and_applies_env() {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(ETCD.as_bytes()).expect("write");
        let config = KelpieConfig::load(Some(file.path()), env(&[("KELPIE_NODE__ID", "node-9")])).expect("valid file");
        assert_eq!(config.node().id().as_str(), "node-9");
        assert_eq!(config.backend().kind(), "etcd");
        let config = KelpieConfig::load(None, env(&[("KELPIE_BACKEND__KIND", "memory")])).expect("no file");
        assert_eq!(config.backend(), &BackendConfig::Memory);
    }

    #[test]
    fn missing_file_is_an_io_error_naming_the_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("absent.toml");
        let err = KelpieConfig::load(Some(&path), no_env()).expect_err("no such file");
        assert!(
            matches!(
                &err,
                ConfigError::Io { path: p, source } if p == &path && source.kind() == std::io::ErrorKind::NotFound
            ),
            "{err:?}"
        );
    }

    #[test]
    fn file_over_the_limit_is_too_large() {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        let comment = format!("#{}\n", "x".repeat(CONFIG_FILE_BYTES_MAX));
        file.write_all(comment.as_bytes()).expect("write");
        let err = KelpieConfig::load(Some(file.path()), no_env()).expect_err("too large");
        assert!(
            matches!(
                &err,
                ConfigError::TooLarge { path, bytes, max }
                    if path == file.path() && *bytes == 1_048_578 && *max == 1_048_576
            ),
            "{err:?}"
        );
    }

    #[test]
    fn file_that_is_not_utf8_is_rejected() {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(b"[node]\nid = \"\xff\"").expect("write");
        let err = KelpieConfig::load(Some(file.path()), no_env()).expect_err("not utf-8");
        assert!(matches!(&err, ConfigError::NotUtf8 { byte_offset: 13, .. }), "{err:?}");
    }

    #[test]
    fn long_values_are_shortened_in_errors() {
        let text = format!("[node]\nid = \"{}\"", "N".repeat(1000));
        let err = parse_err(&text);
        assert_invalid_value(err, "node.id", &format!("{}...", "N".repeat(80)));
    }

    #[test]
    fn error_messages_say_what_is_allowed() {
        assert_eq!(
            parse_err("[lease]\nttl_ms = -5").to_string(),
            "invalid value `-5` for `lease.ttl_ms`: must be an integer from 100 to 600000 (milliseconds)"
        );
        assert_eq!(
            parse_err("[lease]\nttl = 1").to_string(),
            "unknown config key `lease.ttl`; allowed here: ttl_ms, renew_interval_ms, max_clock_drift_ms"
        );
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
            let _ = parse(&text);
        }

        #[test]
        fn arbitrary_env_values_never_panic(
            key in prop::sample::select(KEYS.to_vec()),
            value in "\\PC{0,40}",
        ) {
            let name = env_var_name(key.0, key.1);
            let _ = KelpieConfig::from_toml_str("", vec![(name, value)]);
        }

        #[test]
        fn valid_leases_round_trip(
            renew in 1u64..=10_000,
            drift in 0u64..=CLOCK_DRIFT_MS_MAX,
            extra in 1u64..=10_000,
        ) {
            let ttl = (renew + drift + extra).clamp(LEASE_TTL_MS_MIN, LEASE_TTL_MS_MAX);
            let text = format!("[lease]\nttl_ms = {ttl}\nrenew_interval_ms = {renew}\nmax_clock_drift_ms = {drift}");
            let config = parse(&text).expect("valid by construction");
            prop_assert_eq!(
                (config.lease().ttl_ms(), config.lease().renew_interval_ms(), config.lease().max_clock_drift_ms()),
                (ttl, renew, drift)
            );
            prop_assert_eq!(parse(&config.to_string()).expect("round trip"), config);
        }
    }
}
