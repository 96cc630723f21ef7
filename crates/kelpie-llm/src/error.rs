//! The one error type of every provider.

/// Largest provider error body kept in [`LlmError::Http`], in bytes.
pub const MAX_ERROR_BODY_BYTES: usize = 2048;

/// Why a completion or an embedding failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LlmError {
    /// The provider is missing a setting or has an invalid one.
    #[error("LLM provider not configured: {what}")]
    NotConfigured {
        /// Which settings to set, and how.
        what: String,
    },
    /// The provider answered with a non-2xx HTTP status.
    #[error("LLM provider answered HTTP {status}: {body}")]
    Http {
        /// The HTTP status code.
        status: u16,
        /// The body of the answer, truncated to [`MAX_ERROR_BODY_BYTES`].
        body: String,
    },
    /// The provider could not be reached, or the exchange broke off
    /// (connection refused or reset, timeout, TLS failure).
    #[error("could not reach the LLM provider: {reason}")]
    Transport {
        /// What went wrong.
        reason: String,
    },
    /// The provider answered 2xx with something that is not what its API
    /// promises (not JSON, missing fields, wrong embedding sizes).
    #[error("could not decode the LLM provider's answer: {reason}")]
    Decode {
        /// What was wrong with the answer.
        reason: String,
    },
    /// A [`ScriptedProvider`](crate::ScriptedProvider) ran out of steps (strict
    /// mode) or was told to fail.
    #[error("scripted LLM provider: {reason}")]
    Scripted {
        /// Why.
        reason: String,
    },
}

impl LlmError {
    /// Whether trying the same request again later may succeed: HTTP 429 and
    /// 5xx, and transport failures.
    pub fn is_retryable(&self) -> bool {
        match self {
            LlmError::Http { status, .. } => *status == 429 || (500..=599).contains(status),
            LlmError::Transport { .. } => true,
            LlmError::NotConfigured { .. } | LlmError::Decode { .. } | LlmError::Scripted { .. } => false,
        }
    }

    pub(crate) fn decode(reason: impl Into<String>) -> Self {
        LlmError::Decode { reason: reason.into() }
    }

    pub(crate) fn not_configured(what: impl Into<String>) -> Self {
        LlmError::NotConfigured { what: what.into() }
    }
}

/// `body` cut to at most [`MAX_ERROR_BODY_BYTES`] bytes, on a char boundary.
pub(crate) fn truncate_body(body: &str) -> String {
    if body.len() <= MAX_ERROR_BODY_BYTES {
        return body.to_owned();
    }
    let mut end = MAX_ERROR_BODY_BYTES;
    while end > 0 && !body.is_char_boundary(end) {
        end -= 1;
    }
    body[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_short_bodies_and_cuts_on_a_char_boundary() {
        assert_eq!(truncate_body("short"), "short");
        // "a" then 3-byte chars: byte 2048 falls inside a char.
        let body = format!("a{}", "€".repeat(1000));
        let cut = truncate_body(&body);
        assert_eq!(cut.len(), 2047);
        assert_eq!(cut, format!("a{}", "€".repeat(682)));
    }
}
