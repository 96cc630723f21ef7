//! The HTTP plumbing the real providers share: one POST of a JSON body,
//! with every failure mapped onto [`LlmError`].

use std::time::Duration;

use crate::error::truncate_body;
use crate::LlmError;

/// A reqwest client with `timeout` on the whole exchange.
pub(crate) fn client(timeout: Duration) -> Result<reqwest::Client, LlmError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|err| LlmError::Transport {
            reason: format!("could not build the HTTP client: {}", error_chain(&err)),
        })
}

/// `base_url` without trailing slashes, checked to be an http(s) URL.
pub(crate) fn normalise_base_url(base_url: &str, setting: &str) -> Result<String, LlmError> {
    let trimmed = base_url.trim().trim_end_matches('/');
    if trimmed.is_empty() {
        return Err(LlmError::not_configured(format!(
            "{setting} is empty: set it to the provider's URL"
        )));
    }
    if !(trimmed.starts_with("http://") || trimmed.starts_with("https://")) {
        return Err(LlmError::not_configured(format!(
            "{setting} must start with http:// or https://, got {trimmed:?}"
        )));
    }
    Ok(trimmed.to_owned())
}

/// Sends `request`, returns the body of a 2xx answer as JSON.
pub(crate) async fn send_json(
    request: reqwest::RequestBuilder,
    url: &str,
    timeout: Duration,
) -> Result<serde_json::Value, LlmError> {
    let response = request.send().await.map_err(|err| transport(&err, url, timeout))?;
    let status = response.status();
    let body = response.bytes().await.map_err(|err| transport(&err, url, timeout))?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body);
        tracing::debug!(%url, status = status.as_u16(), "LLM provider answered an error");
        return Err(LlmError::Http {
            status: status.as_u16(),
            body: truncate_body(&text),
        });
    }
    serde_json::from_slice(&body).map_err(|err| {
        let text = String::from_utf8_lossy(&body);
        LlmError::decode(format!(
            "the answer of {url} is not JSON ({err}): {}",
            truncate_body(&text)
        ))
    })
}

fn transport(err: &reqwest::Error, url: &str, timeout: Duration) -> LlmError {
    let reason = if err.is_timeout() {
        format!("{url}: no complete answer within {timeout:?}")
    } else {
        format!("{url}: {}", error_chain(err))
    };
    LlmError::Transport { reason }
}

/// The error and its sources, joined by `: ` (reqwest's own message alone
/// is just "error sending request").
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = inner.source();
    }
    out
}

/// Redacts a secret for `Debug` output.
pub(crate) fn redact(secret: Option<&str>) -> &'static str {
    match secret {
        Some(s) if !s.is_empty() => "<redacted>",
        _ => "<none>",
    }
}
