//! Text embeddings: the OpenAI-compatible `/embeddings` endpoint and a
//! deterministic local hashing embedder.

use std::fmt;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use serde_json::{json, Value};

use crate::http;
use crate::LlmError;

/// Turns texts into vectors of a fixed size.
pub trait EmbeddingProvider: Send + Sync {
    /// The size of every vector.
    fn dimensions(&self) -> usize;

    /// One vector per text, in order.
    fn embed<'a>(&'a self, texts: &'a [String]) -> BoxFuture<'a, Result<Vec<Vec<f32>>, LlmError>>;
}

/// Embeddings from an OpenAI-compatible server: `POST {base_url}/embeddings`
/// with `{"model", "input": [texts]}`.
///
/// Checks that the answer has one vector per text and that every vector has
/// exactly `dimensions` entries ([`LlmError::Decode`] otherwise). The
/// `dimensions` request parameter is not sent (older models and local servers
/// reject it): pick the model's native size.
pub struct OpenAiEmbeddings {
    client: reqwest::Client,
    url: String,
    api_key: Option<String>,
    model: String,
    dimensions: usize,
    timeout: Duration,
}

impl fmt::Debug for OpenAiEmbeddings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiEmbeddings")
            .field("url", &self.url)
            .field("api_key", &http::redact(self.api_key.as_deref()))
            .field("model", &self.model)
            .field("dimensions", &self.dimensions)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl OpenAiEmbeddings {
    /// An embedder of `model` at `base_url` (ending in `/v1`), producing
    /// `dimensions`-sized vectors; `NotConfigured` when the URL is not
    /// http(s), the model is empty or `dimensions` is 0. An empty key counts
    /// as no key.
    pub fn new(
        base_url: impl Into<String>,
        api_key: Option<String>,
        model: impl Into<String>,
        dimensions: usize,
        timeout: Duration,
    ) -> Result<Self, LlmError> {
        let base = http::normalise_base_url(&base_url.into(), "embeddings base_url")?;
        let model = model.into();
        if model.trim().is_empty() {
            return Err(LlmError::not_configured(
                "embeddings model is empty: set the model name (e.g. text-embedding-3-small)",
            ));
        }
        if dimensions == 0 {
            return Err(LlmError::not_configured(
                "embeddings dimensions is 0: set the model's vector size (e.g. 1536)",
            ));
        }
        Ok(OpenAiEmbeddings {
            client: http::client(timeout)?,
            url: format!("{base}/embeddings"),
            api_key: api_key.filter(|key| !key.is_empty()),
            model,
            dimensions,
            timeout,
        })
    }

    /// The model name.
    pub fn model(&self) -> &str {
        &self.model
    }

    async fn embed_inner(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, LlmError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let body = json!({ "model": self.model, "input": texts });
        let mut builder = self.client.post(&self.url).json(&body);
        if let Some(key) = &self.api_key {
            builder = builder.bearer_auth(key);
        }
        let answer = http::send_json(builder, &self.url, self.timeout).await?;
        parse_embeddings(&answer, texts.len(), self.dimensions)
    }
}

impl EmbeddingProvider for OpenAiEmbeddings {
    fn dimensions(&self) -> usize {
        self.dimensions
    }

    fn embed<'a>(&'a self, texts: &'a [String]) -> BoxFuture<'a, Result<Vec<Vec<f32>>, LlmError>> {
        self.embed_inner(texts).boxed()
    }
}

fn parse_embeddings(answer: &Value, expected: usize, dimensions: usize) -> Result<Vec<Vec<f32>>, LlmError> {
    let data = answer
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| LlmError::decode("the embeddings answer has no `data` array"))?;
    if data.len() != expected {
        return Err(LlmError::decode(format!(
            "asked for {expected} embeddings, got {}",
            data.len()
        )));
    }
    let mut slots: Vec<Option<Vec<f32>>> = vec![None; expected];
    for (position, item) in data.iter().enumerate() {
        let index = match item.get("index") {
            None | Some(Value::Null) => position,
            Some(index) => index
                .as_u64()
                .and_then(|i| usize::try_from(i).ok())
                .filter(|i| *i < expected)
                .ok_or_else(|| {
                    LlmError::decode(format!("embedding {position} has index {index}, outside 0..{expected}"))
                })?,
        };
        let values = item
            .get("embedding")
            .and_then(Value::as_array)
            .ok_or_else(|| LlmError::decode(format!("embedding {index} has no `embedding` array")))?;
        if values.len() != dimensions {
            return Err(LlmError::decode(format!(
                "embedding {index} has {} dimensions, expected {dimensions}",
                values.len()
            )));
        }
        let vector = values
            .iter()
            .map(|v| v.as_f64().map(|f| f as f32))
            .collect::<Option<Vec<f32>>>()
            .ok_or_else(|| LlmError::decode(format!("embedding {index} has a non-number entry")))?;
        let slot = &mut slots[index];
        if slot.is_some() {
            return Err(LlmError::decode(format!("embedding index {index} appears twice")));
        }
        *slot = Some(vector);
    }
    // Every slot is filled: `expected` distinct in-range indexes were seen.
    Ok(slots.into_iter().flatten().collect())
}

/// A deterministic local embedder, for tests and benchmarks: every
/// lowercased alphanumeric token is hashed (FNV-1a) into one of `dimensions`
/// buckets with a sign, and the vector is L2-normalised (all zeros for a text
/// without tokens). Texts sharing words get similar vectors. The fake
/// server's `/v1/embeddings` uses the same function.
#[derive(Clone, Debug)]
pub struct HashingEmbeddings {
    dimensions: usize,
}

impl HashingEmbeddings {
    /// An embedder of `dimensions`-sized vectors (at least 1).
    pub fn new(dimensions: usize) -> Self {
        HashingEmbeddings {
            dimensions: dimensions.max(1),
        }
    }

    /// The vector of `text`.
    pub fn embed_one(&self, text: &str) -> Vec<f32> {
        hash_embedding(text, self.dimensions)
    }
}

impl EmbeddingProvider for HashingEmbeddings {
    fn dimensions(&self) -> usize {
        self.dimensions
    }

    fn embed<'a>(&'a self, texts: &'a [String]) -> BoxFuture<'a, Result<Vec<Vec<f32>>, LlmError>> {
        let vectors = texts.iter().map(|t| self.embed_one(t)).collect();
        futures::future::ready(Ok(vectors)).boxed()
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// See [`HashingEmbeddings`].
pub(crate) fn hash_embedding(text: &str, dimensions: usize) -> Vec<f32> {
    let dimensions = dimensions.max(1);
    let mut vector = vec![0f32; dimensions];
    let lowered = text.to_lowercase();
    for token in lowered.split(|c: char| !c.is_alphanumeric()).filter(|t| !t.is_empty()) {
        let hash = fnv1a(token.as_bytes());
        // dimensions fits in u64 on every supported target; the remainder fits back.
        let bucket = usize::try_from(hash % dimensions as u64).unwrap_or(0);
        let sign = if hash >> 63 == 0 { 1.0 } else { -1.0 };
        vector[bucket] += sign;
    }
    let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        for v in &mut vector {
            *v /= norm;
        }
    }
    vector
}
