//! The crate-level error.
//!
//! Each module has its own error enum naming exactly what went wrong
//! ([`IdError`], [`ConfigError`]). [`KelpieError`] wraps them so a caller at
//! the top level (the CLI, a server's startup path) can use `?` across
//! modules and still match on the precise cause.

use crate::config::ConfigError;
use crate::id::IdError;

/// Any error from `kelpie-core`, by the module it came from.
///
/// Match on the variant, then on the inner error for the precise cause.
/// New modules add variants, so downstream matches need a wildcard arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KelpieError {
    /// An actor or node id was not valid.
    #[error(transparent)]
    Id(#[from] IdError),
    /// The configuration could not be read or is not valid.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::IdField;
    use crate::NodeId;

    #[test]
    fn module_errors_convert_with_question_mark() {
        fn parse(text: &str) -> Result<NodeId, KelpieError> {
            Ok(text.parse::<NodeId>()?)
        }
        let err = parse("").expect_err("empty id");
        assert!(matches!(
            err,
            KelpieError::Id(IdError::Empty { field: IdField::NodeId })
        ));
        assert_eq!(err.to_string(), "node id must not be empty");
    }

    #[test]
    fn config_errors_keep_their_message() {
        let err = KelpieError::from(ConfigError::UnknownEnvVar {
            name: "KELPIE_X".to_string(),
        });
        assert!(matches!(
            &err,
            KelpieError::Config(ConfigError::UnknownEnvVar { name }) if name == "KELPIE_X"
        ));
    }
}
