//! Server configuration: flags, then `KELPIE_*` environment variables, then
//! a TOML file, then defaults — the first that sets a value wins.
//!
//! Every option has all three forms: `--llm-base-url`, `KELPIE_LLM_BASE_URL`
//! and `llm_base_url = "..."` in the file given by `--config`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

/// The default port (Letta's).
pub const PORT_DEFAULT: u16 = 8283;
/// The default data directory.
pub const DATA_DIR_DEFAULT: &str = "./kelpie-data";
/// How long in-flight requests may run after a shutdown signal, by default.
pub const DRAIN_TIMEOUT_SECS_DEFAULT: u64 = 10;
/// Agent loop steps per message, by default (Letta's).
pub const MAX_STEPS_DEFAULT: u32 = 50;
/// The largest accepted `max_steps`.
pub const MAX_STEPS_MAX: u32 = 1_000;
/// Timeout of one LLM request, by default.
pub const LLM_TIMEOUT_SECS_DEFAULT: u64 = 120;
/// The largest accepted config file.
const CONFIG_FILE_BYTES_MAX: u64 = 1024 * 1024;

/// `kelpie-server`: a Letta-compatible agent server on the Kelpie actor
/// runtime. Data lives in an embedded store in `--data-dir`; nothing else
/// needs to be installed.
#[derive(Clone, Debug, Default, Parser)]
#[command(name = "kelpie-server", version, about)]
pub struct Args {
    /// TOML file with any of the options below (keys as the long flag with
    /// `_` for `-`, e.g. `llm_base_url`).
    #[arg(long, env = "KELPIE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1].
    #[arg(long, env = "KELPIE_BIND")]
    pub bind: Option<IpAddr>,
    /// Port to listen on; 0 picks a free one [default: 8283].
    #[arg(long, env = "KELPIE_PORT")]
    pub port: Option<u16>,
    /// Directory of the embedded store; created if missing, locked while
    /// the server runs [default: ./kelpie-data].
    #[arg(long, env = "KELPIE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// LLM provider: `openai` (any OpenAI-compatible server: OpenAI, vLLM,
    /// llama.cpp, Ollama), `anthropic`, `scripted` (a deterministic echo
    /// model, for tests and benchmarks) or `none`. Default: `openai` when a
    /// base URL or API key is set, else `none`.
    #[arg(long, env = "KELPIE_LLM_PROVIDER")]
    pub llm_provider: Option<String>,
    /// Base URL of the LLM API, e.g. `https://api.openai.com/v1` or
    /// `http://127.0.0.1:8080/v1` [default: the provider's public API].
    #[arg(long, env = "KELPIE_LLM_BASE_URL")]
    pub llm_base_url: Option<String>,
    /// API key of the LLM provider.
    #[arg(long, env = "KELPIE_LLM_API_KEY", hide_env_values = true)]
    pub llm_api_key: Option<String>,
    /// Model name sent to the provider [default: gpt-4o-mini for openai,
    /// claude-3-5-haiku-latest for anthropic].
    #[arg(long, env = "KELPIE_LLM_MODEL")]
    pub llm_model: Option<String>,
    /// Timeout of one LLM request, in seconds [default: 120].
    #[arg(long, env = "KELPIE_LLM_TIMEOUT_SECS")]
    pub llm_timeout_secs: Option<u64>,
    /// Base URL of an OpenAI-compatible embeddings API for archival memory
    /// (e.g. `https://api.openai.com/v1`). Default: a deterministic local
    /// hashing embedder, no service needed.
    #[arg(long, env = "KELPIE_EMBEDDING_BASE_URL")]
    pub embedding_base_url: Option<String>,
    /// API key of the embeddings API.
    #[arg(long, env = "KELPIE_EMBEDDING_API_KEY", hide_env_values = true)]
    pub embedding_api_key: Option<String>,
    /// Embedding model [default: text-embedding-3-small].
    #[arg(long, env = "KELPIE_EMBEDDING_MODEL")]
    pub embedding_model: Option<String>,
    /// Dimensions of the embedding model's vectors [default: 1536].
    #[arg(long, env = "KELPIE_EMBEDDING_DIMENSIONS")]
    pub embedding_dimensions: Option<usize>,
    /// Agent loop steps per message [default: 50, at most 1000].
    #[arg(long, env = "KELPIE_MAX_STEPS")]
    pub max_steps: Option<u32>,
    /// Seconds in-flight requests may still run after SIGTERM/SIGINT
    /// [default: 10].
    #[arg(long, env = "KELPIE_DRAIN_TIMEOUT_SECS")]
    pub drain_timeout_secs: Option<u64>,
}

/// The options as a config file spells them.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    bind: Option<IpAddr>,
    port: Option<u16>,
    data_dir: Option<PathBuf>,
    llm_provider: Option<String>,
    llm_base_url: Option<String>,
    llm_api_key: Option<String>,
    llm_model: Option<String>,
    llm_timeout_secs: Option<u64>,
    embedding_base_url: Option<String>,
    embedding_api_key: Option<String>,
    embedding_model: Option<String>,
    embedding_dimensions: Option<usize>,
    max_steps: Option<u32>,
    drain_timeout_secs: Option<u64>,
}

/// Which LLM the agent loop calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LlmSettings {
    /// None configured: sending a message fails with an error naming the
    /// settings to set; everything else works.
    None,
    /// An OpenAI-compatible chat-completions API.
    OpenAi {
        /// Base URL, ending before `/chat/completions`.
        base_url: String,
        /// API key, if the server needs one.
        api_key: Option<String>,
        /// Model name.
        model: String,
    },
    /// Anthropic's messages API.
    Anthropic {
        /// Base URL.
        base_url: String,
        /// API key.
        api_key: String,
        /// Model name.
        model: String,
    },
    /// The deterministic echo model.
    Scripted,
}

/// An OpenAI-compatible embeddings API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmbeddingSettings {
    /// Base URL, ending before `/embeddings`.
    pub base_url: String,
    /// API key, if needed.
    pub api_key: Option<String>,
    /// Model name.
    pub model: String,
    /// Vector size.
    pub dimensions: usize,
}

/// A complete, validated server configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The embedded store's directory.
    pub data_dir: PathBuf,
    /// The LLM.
    pub llm: LlmSettings,
    /// Timeout of one LLM request.
    pub llm_timeout: Duration,
    /// The archival embedder (`None`: the local hashing embedder).
    pub embedding: Option<EmbeddingSettings>,
    /// Agent loop steps per message.
    pub max_steps: u32,
    /// How long in-flight requests may run after a shutdown signal.
    pub drain_timeout: Duration,
}

/// A configuration that cannot be used; the message names the option.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// An option has a value that is not allowed.
    #[error("invalid {option}: {reason}")]
    Invalid {
        /// The option (flag name).
        option: &'static str,
        /// What is allowed.
        reason: String,
    },
}

impl ServerConfig {
    /// The defaults with a data directory (for tests and embedding).
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], PORT_DEFAULT)),
            data_dir: data_dir.into(),
            llm: LlmSettings::None,
            llm_timeout: Duration::from_secs(LLM_TIMEOUT_SECS_DEFAULT),
            embedding: None,
            max_steps: MAX_STEPS_DEFAULT,
            drain_timeout: Duration::from_secs(DRAIN_TIMEOUT_SECS_DEFAULT),
        }
    }

    /// Merges flags and environment (already in `args`) over the file named
    /// by `args.config`, over the defaults, and validates the result.
    pub fn resolve(args: Args) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let bind = args.bind.or(file.bind).unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let port = args.port.or(file.port).unwrap_or(PORT_DEFAULT);
        let data_dir = args
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DATA_DIR_DEFAULT));
        if data_dir.as_os_str().is_empty() {
            return Err(ConfigError::Invalid {
                option: "--data-dir",
                reason: "must not be empty".to_string(),
            });
        }
        let max_steps = args.max_steps.or(file.max_steps).unwrap_or(MAX_STEPS_DEFAULT);
        if !(1..=MAX_STEPS_MAX).contains(&max_steps) {
            return Err(ConfigError::Invalid {
                option: "--max-steps",
                reason: format!("{max_steps} is outside 1..={MAX_STEPS_MAX}"),
            });
        }
        let drain = args
            .drain_timeout_secs
            .or(file.drain_timeout_secs)
            .unwrap_or(DRAIN_TIMEOUT_SECS_DEFAULT);
        if drain > 3600 {
            return Err(ConfigError::Invalid {
                option: "--drain-timeout-secs",
                reason: format!("{drain} is over 3600"),
            });
        }
        let llm_timeout = args
            .llm_timeout_secs
            .or(file.llm_timeout_secs)
            .unwrap_or(LLM_TIMEOUT_SECS_DEFAULT);
        if !(1..=3600).contains(&llm_timeout) {
            return Err(ConfigError::Invalid {
                option: "--llm-timeout-secs",
                reason: format!("{llm_timeout} is outside 1..=3600"),
            });
        }
        let llm = llm_settings(
            args.llm_provider.or(file.llm_provider),
            args.llm_base_url.or(file.llm_base_url),
            args.llm_api_key.or(file.llm_api_key),
            args.llm_model.or(file.llm_model),
        )?;
        let embedding = match args.embedding_base_url.or(file.embedding_base_url) {
            None => None,
            Some(base_url) => {
                if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
                    return Err(ConfigError::Invalid {
                        option: "--embedding-base-url",
                        reason: format!("{base_url:?} must start with http:// or https://"),
                    });
                }
                let dimensions = args.embedding_dimensions.or(file.embedding_dimensions).unwrap_or(1536);
                if !(1..=65_536).contains(&dimensions) {
                    return Err(ConfigError::Invalid {
                        option: "--embedding-dimensions",
                        reason: format!("{dimensions} is outside 1..=65536"),
                    });
                }
                Some(EmbeddingSettings {
                    base_url: base_url.trim_end_matches('/').to_string(),
                    api_key: args.embedding_api_key.or(file.embedding_api_key),
                    model: args
                        .embedding_model
                        .or(file.embedding_model)
                        .unwrap_or_else(|| "text-embedding-3-small".to_string()),
                    dimensions,
                })
            }
        };
        Ok(Self {
            embedding,
            listen: SocketAddr::new(bind, port),
            data_dir,
            llm,
            llm_timeout: Duration::from_secs(llm_timeout),
            max_steps,
            drain_timeout: Duration::from_secs(drain),
        })
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let failed = |reason: String| ConfigError::File {
        path: path.display().to_string(),
        reason,
    };
    let size = std::fs::metadata(path)
        .map_err(|error| failed(error.to_string()))?
        .len();
    if size > CONFIG_FILE_BYTES_MAX {
        return Err(failed(format!(
            "{size} bytes, over the limit of {CONFIG_FILE_BYTES_MAX}"
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|error| failed(error.to_string()))?;
    toml::from_str(&text).map_err(|error| failed(error.to_string()))
}

fn llm_settings(
    provider: Option<String>,
    base_url: Option<String>,
    api_key: Option<String>,
    model: Option<String>,
) -> Result<LlmSettings, ConfigError> {
    let provider = match provider {
        Some(provider) => provider.to_ascii_lowercase(),
        None if base_url.is_some() || api_key.is_some() => "openai".to_string(),
        None => "none".to_string(),
    };
    if let Some(url) = &base_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ConfigError::Invalid {
                option: "--llm-base-url",
                reason: format!("{url:?} must start with http:// or https://"),
            });
        }
    }
    let trim = |url: String| url.trim_end_matches('/').to_string();
    match provider.as_str() {
        "none" => Ok(LlmSettings::None),
        "scripted" => Ok(LlmSettings::Scripted),
        "openai" => Ok(LlmSettings::OpenAi {
            base_url: trim(base_url.unwrap_or_else(|| "https://api.openai.com/v1".to_string())),
            api_key,
            model: model.unwrap_or_else(|| "gpt-4o-mini".to_string()),
        }),
        "anthropic" => Ok(LlmSettings::Anthropic {
            base_url: trim(base_url.unwrap_or_else(|| "https://api.anthropic.com".to_string())),
            api_key: api_key.ok_or(ConfigError::Invalid {
                option: "--llm-api-key",
                reason: "the anthropic provider needs an API key (KELPIE_LLM_API_KEY)".to_string(),
            })?,
            model: model.unwrap_or_else(|| "claude-3-5-haiku-latest".to_string()),
        }),
        other => Err(ConfigError::Invalid {
            option: "--llm-provider",
            reason: format!("{other:?} is not one of openai, anthropic, scripted, none"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Args {
        let mut argv = vec!["kelpie-server"];
        argv.extend_from_slice(list);
        Args::try_parse_from(argv).expect("parse")
    }

    #[test]
    fn defaults_listen_on_letta_port_with_no_llm() {
        let config = ServerConfig::resolve(Args::default()).expect("valid");
        assert_eq!(config.listen, "127.0.0.1:8283".parse().expect("addr"));
        assert_eq!(config.data_dir, PathBuf::from("./kelpie-data"));
        assert_eq!(config.llm, LlmSettings::None);
        assert_eq!(config.max_steps, 50);
    }

    #[test]
    fn a_base_url_selects_openai_and_flags_override_the_file() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("kelpie.toml");
        std::fs::write(&path, "port = 9000\nllm_model = \"from-file\"\nmax_steps = 7\n").expect("write");
        let config = ServerConfig::resolve(args(&[
            "--config",
            path.to_str().expect("utf-8"),
            "--port",
            "9100",
            "--llm-base-url",
            "http://127.0.0.1:1/v1/",
        ]))
        .expect("valid");
        assert_eq!(config.listen.port(), 9100);
        assert_eq!(config.max_steps, 7);
        assert_eq!(
            config.llm,
            LlmSettings::OpenAi {
                base_url: "http://127.0.0.1:1/v1".to_string(),
                api_key: None,
                model: "from-file".to_string(),
            }
        );
    }

    #[test]
    fn bad_values_name_the_option() {
        let error = ServerConfig::resolve(args(&["--max-steps", "0"])).expect_err("invalid");
        assert!(
            matches!(
                error,
                ConfigError::Invalid {
                    option: "--max-steps",
                    ..
                }
            ),
            "{error}"
        );
        let error = ServerConfig::resolve(args(&["--llm-provider", "gemini"])).expect_err("invalid");
        assert!(
            matches!(
                error,
                ConfigError::Invalid {
                    option: "--llm-provider",
                    ..
                }
            ),
            "{error}"
        );
        let error = ServerConfig::resolve(args(&["--llm-base-url", "ftp://x"])).expect_err("invalid");
        assert!(
            matches!(
                error,
                ConfigError::Invalid {
                    option: "--llm-base-url",
                    ..
                }
            ),
            "{error}"
        );
        let error = ServerConfig::resolve(args(&["--llm-provider", "anthropic"])).expect_err("invalid");
        assert!(
            matches!(
                error,
                ConfigError::Invalid {
                    option: "--llm-api-key",
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn an_embedding_base_url_selects_the_remote_embedder() {
        let config = ServerConfig::resolve(args(&[
            "--embedding-base-url",
            "http://127.0.0.1:9/v1/",
            "--embedding-dimensions",
            "64",
        ]))
        .expect("valid");
        assert_eq!(
            config.embedding,
            Some(EmbeddingSettings {
                base_url: "http://127.0.0.1:9/v1".to_string(),
                api_key: None,
                model: "text-embedding-3-small".to_string(),
                dimensions: 64,
            })
        );
        let error = ServerConfig::resolve(args(&["--embedding-base-url", "x", "--embedding-dimensions", "0"]))
            .expect_err("invalid");
        assert!(
            matches!(
                error,
                ConfigError::Invalid {
                    option: "--embedding-base-url",
                    ..
                }
            ),
            "{error}"
        );
        let error = ServerConfig::resolve(args(&[
            "--embedding-base-url",
            "http://x",
            "--embedding-dimensions",
            "0",
        ]))
        .expect_err("invalid");
        assert!(
            matches!(
                error,
                ConfigError::Invalid {
                    option: "--embedding-dimensions",
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn an_unknown_file_key_is_an_error() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("kelpie.toml");
        std::fs::write(&path, "prot = 1\n").expect("write");
        let error = ServerConfig::resolve(args(&["--config", path.to_str().expect("utf-8")])).expect_err("invalid");
        assert!(matches!(error, ConfigError::File { .. }), "{error}");
        assert!(error.to_string().contains("prot"), "{error}");
    }
}
