//! Validated identifiers.
//!
//! An [`ActorId`] is `namespace/key`; a [`NodeId`] is a short name such as
//! `node-3`. Both are checked when built or parsed, so a value of either type
//! is always valid. Neither can contain `/` inside a part, so ids embed
//! safely in storage keys and file paths; both are ASCII, so byte lengths and
//! character counts agree.

use compact_str::CompactString;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::limits::{ACTOR_KEY_BYTES_MAX, ACTOR_NAMESPACE_BYTES_MAX, NODE_ID_BYTES_MAX};

/// Separates the namespace from the key in an [`ActorId`]'s text form.
pub const ACTOR_ID_SEPARATOR: char = '/';

/// Which part of an identifier an [`IdError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdField {
    /// The namespace of an [`ActorId`].
    ActorNamespace,
    /// The key of an [`ActorId`].
    ActorKey,
    /// A [`NodeId`].
    NodeId,
}

impl IdField {
    /// The characters this field accepts, as shown in error messages.
    pub fn allowed(self) -> &'static str {
        match self {
            IdField::ActorNamespace => "a-z 0-9 _ - (starting with a-z)",
            IdField::ActorKey => "A-Z a-z 0-9 _ . : -",
            IdField::NodeId => "a-z 0-9 _ -",
        }
    }

    fn bytes_max(self) -> usize {
        match self {
            IdField::ActorNamespace => ACTOR_NAMESPACE_BYTES_MAX,
            IdField::ActorKey => ACTOR_KEY_BYTES_MAX,
            IdField::NodeId => NODE_ID_BYTES_MAX,
        }
    }

    fn accepts(self, byte: u8) -> bool {
        match self {
            IdField::ActorNamespace | IdField::NodeId => {
                matches!(byte, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-')
            }
            IdField::ActorKey => byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b':' | b'-'),
        }
    }
}

impl fmt::Display for IdField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdField::ActorNamespace => "actor namespace",
            IdField::ActorKey => "actor key",
            IdField::NodeId => "node id",
        })
    }
}

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The field is the empty string.
    #[error("{field} must not be empty")]
    Empty {
        /// The offending field.
        field: IdField,
    },
    /// The field is longer than its limit.
    #[error("{field} is {len} bytes long; the maximum is {max}")]
    TooLong {
        /// The offending field.
        field: IdField,
        /// Its length, in bytes.
        len: usize,
        /// The limit, in bytes.
        max: usize,
    },
    /// The field contains a character it does not accept.
    #[error("{field} has {ch:?} at byte {position}; allowed characters are {}", field.allowed())]
    InvalidChar {
        /// The offending field.
        field: IdField,
        /// The first character not accepted.
        ch: char,
        /// Its byte offset within the field.
        position: usize,
    },
    /// The field starts with a character that is accepted only later on.
    #[error("{field} starts with {ch:?}; it must start with a letter a-z")]
    InvalidStart {
        /// The offending field.
        field: IdField,
        /// The first character.
        ch: char,
    },
    /// The text form of an actor id has no `/` between namespace and key.
    #[error("actor id must have the form namespace/key")]
    MissingSeparator,
}

/// Checks one identifier field against its length limit and alphabet.
fn validate(field: IdField, text: &str) -> Result<(), IdError> {
    let bytes = text.as_bytes();
    let Some(&first) = bytes.first() else {
        return Err(IdError::Empty { field });
    };
    if bytes.len() > field.bytes_max() {
        return Err(IdError::TooLong {
            field,
            len: bytes.len(),
            max: field.bytes_max(),
        });
    }
    // Report whole chars, not bytes, so a multi-byte character reads right.
    if let Some((position, ch)) = text
        .char_indices()
        .find(|&(_, ch)| !ch.is_ascii() || !field.accepts(ch as u8))
    {
        return Err(IdError::InvalidChar { field, ch, position });
    }
    if field == IdField::ActorNamespace && !first.is_ascii_lowercase() {
        return Err(IdError::InvalidStart {
            field,
            ch: char::from(first),
        });
    }
    Ok(())
}

/// The address of an actor: a namespace (its kind, e.g. `agent`) and a key
/// unique within it. Text form `namespace/key`.
///
/// ```
/// use kelpie_core::ActorId;
///
/// let id: ActorId = "agent/user-42".parse()?;
/// assert_eq!(id.namespace(), "agent");
/// assert_eq!(id.key(), "user-42");
/// assert_eq!(id.to_string(), "agent/user-42");
/// # Ok::<(), kelpie_core::id::IdError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ActorId {
    // Field order makes the derived `Ord` sort by namespace, then key. Each
    // part is kept inline up to 24 bytes (no heap allocation to clone, and
    // no pointer to follow to compare or hash); `Ord` and `Hash` are those
    // of the text.
    namespace: CompactString,
    key: CompactString,
}

impl ActorId {
    /// Builds an actor id, checking both parts.
    pub fn new(namespace: impl Into<String>, key: impl Into<String>) -> Result<Self, IdError> {
        let namespace = namespace.into();
        let key = key.into();
        validate(IdField::ActorNamespace, &namespace)?;
        validate(IdField::ActorKey, &key)?;
        Ok(ActorId {
            namespace: CompactString::from(namespace),
            key: CompactString::from(key),
        })
    }

    /// The namespace, e.g. `agent`.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The key within the namespace, e.g. `user-42`.
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl fmt::Display for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{ACTOR_ID_SEPARATOR}{}", self.namespace, self.key)
    }
}

impl FromStr for ActorId {
    type Err = IdError;

    fn from_str(text: &str) -> Result<Self, IdError> {
        let (namespace, key) = text.split_once(ACTOR_ID_SEPARATOR).ok_or(IdError::MissingSeparator)?;
        ActorId::new(namespace, key)
    }
}

impl Serialize for ActorId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ActorId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The name of a node in a cluster, e.g. `node-3`: 1 to
/// [`NODE_ID_BYTES_MAX`] bytes of `a-z 0-9 _ -`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(String);

impl NodeId {
    /// Builds a node id, checking it.
    pub fn new(name: impl Into<String>) -> Result<Self, IdError> {
        let name = name.into();
        validate(IdField::NodeId, &name)?;
        Ok(NodeId(name))
    }

    /// The id `node-<index>`, as the simulator and the default configuration
    /// name nodes.
    pub fn from_index(index: u32) -> Self {
        let name = format!("node-{index}");
        debug_assert_eq!(validate(IdField::NodeId, &name), Ok(()));
        NodeId(name)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for NodeId {
    type Err = IdError;

    fn from_str(text: &str) -> Result<Self, IdError> {
        NodeId::new(text)
    }
}

impl Serialize for NodeId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        NodeId::new(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn actor_id_parts_and_text_form() {
        let id = ActorId::new("agent", "User_42.v1:x-y").expect("valid id");
        assert_eq!(id.namespace(), "agent");
        assert_eq!(id.key(), "User_42.v1:x-y");
        assert_eq!(id.to_string(), "agent/User_42.v1:x-y");
        assert_eq!("agent/User_42.v1:x-y".parse::<ActorId>(), Ok(id));
    }

    #[test]
    fn actor_id_at_length_limits_is_accepted() {
        let namespace = format!("a{}", "b".repeat(ACTOR_NAMESPACE_BYTES_MAX - 1));
        let key = "k".repeat(ACTOR_KEY_BYTES_MAX);
        let id = ActorId::new(namespace.clone(), key.clone()).expect("valid id");
        assert_eq!((id.namespace(), id.key()), (namespace.as_str(), key.as_str()));
    }

    #[test]
    fn actor_id_without_separator_is_rejected() {
        assert_eq!("agent".parse::<ActorId>(), Err(IdError::MissingSeparator));
        assert_eq!("".parse::<ActorId>(), Err(IdError::MissingSeparator));
    }

    #[test]
    fn actor_id_with_empty_parts_is_rejected() {
        assert_eq!(
            "/key".parse::<ActorId>(),
            Err(IdError::Empty {
                field: IdField::ActorNamespace
            })
        );
        assert_eq!(
            "agent/".parse::<ActorId>(),
            Err(IdError::Empty {
                field: IdField::ActorKey
            })
        );
    }

    #[test]
    fn actor_id_parts_over_the_limit_are_rejected() {
        let namespace = "a".repeat(ACTOR_NAMESPACE_BYTES_MAX + 1);
        assert_eq!(
            ActorId::new(namespace, "k"),
            Err(IdError::TooLong {
                field: IdField::ActorNamespace,
                len: 65,
                max: 64
            })
        );
        let key = "k".repeat(ACTOR_KEY_BYTES_MAX + 1);
        assert_eq!(
            ActorId::new("agent", key),
            Err(IdError::TooLong {
                field: IdField::ActorKey,
                len: 257,
                max: 256
            })
        );
    }

    #[test]
    fn actor_id_with_bad_characters_is_rejected() {
        assert_eq!(
            ActorId::new("Agent", "k"),
            Err(IdError::InvalidChar {
                field: IdField::ActorNamespace,
                ch: 'A',
                position: 0
            })
        );
        assert_eq!(
            ActorId::new("agent", "a b"),
            Err(IdError::InvalidChar {
                field: IdField::ActorKey,
                ch: ' ',
                position: 1
            })
        );
        // A second separator lands in the key, which rejects it.
        assert_eq!(
            "agent/a/b".parse::<ActorId>(),
            Err(IdError::InvalidChar {
                field: IdField::ActorKey,
                ch: '/',
                position: 1
            })
        );
        assert_eq!(
            ActorId::new("agent", "ké"),
            Err(IdError::InvalidChar {
                field: IdField::ActorKey,
                ch: 'é',
                position: 1
            })
        );
    }

    #[test]
    fn actor_namespace_must_start_with_a_letter() {
        assert_eq!(
            ActorId::new("9agent", "k"),
            Err(IdError::InvalidStart {
                field: IdField::ActorNamespace,
                ch: '9'
            })
        );
        assert_eq!(
            ActorId::new("_agent", "k"),
            Err(IdError::InvalidStart {
                field: IdField::ActorNamespace,
                ch: '_'
            })
        );
    }

    #[test]
    fn actor_ids_order_by_namespace_then_key() {
        let mut ids: Vec<ActorId> = ["b/a", "a-x/a", "a/z", "a/b"]
            .iter()
            .map(|text| text.parse().expect("valid id"))
            .collect();
        ids.sort();
        let texts: Vec<String> = ids.iter().map(ToString::to_string).collect();
        assert_eq!(texts, ["a/b", "a/z", "a-x/a", "b/a"]);
    }

    #[test]
    fn actor_id_serde_uses_the_text_form_and_validates() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Doc {
            id: ActorId,
        }
        let doc = Doc {
            id: ActorId::new("agent", "x").expect("valid id"),
        };
        let text = toml::to_string(&doc).expect("serializes");
        assert_eq!(text, "id = \"agent/x\"\n");
        assert_eq!(toml::from_str::<Doc>(&text), Ok(doc));
        let err = toml::from_str::<Doc>("id = \"Agent/x\"").expect_err("invalid id");
        assert_eq!(
            err.message(),
            "actor namespace has 'A' at byte 0; allowed characters are a-z 0-9 _ - (starting with a-z)"
        );
    }

    #[test]
    fn node_id_accepts_valid_names() {
        let id = NodeId::new("node_a-1").expect("valid id");
        assert_eq!(id.as_str(), "node_a-1");
        assert_eq!("node_a-1".parse::<NodeId>(), Ok(id));
        assert_eq!(NodeId::from_index(7).as_str(), "node-7");
        assert_eq!(NodeId::from_index(u32::MAX).as_str(), "node-4294967295");
        assert_eq!(NodeId::new("0").map(|id| id.to_string()), Ok("0".to_string()));
    }

    #[test]
    fn node_id_rejects_bad_names() {
        assert_eq!(NodeId::new(""), Err(IdError::Empty { field: IdField::NodeId }));
        assert_eq!(
            NodeId::new("n".repeat(NODE_ID_BYTES_MAX + 1)),
            Err(IdError::TooLong {
                field: IdField::NodeId,
                len: 65,
                max: 64
            })
        );
        assert_eq!(
            NodeId::new("node/1"),
            Err(IdError::InvalidChar {
                field: IdField::NodeId,
                ch: '/',
                position: 4
            })
        );
        assert_eq!(
            NodeId::new("Node"),
            Err(IdError::InvalidChar {
                field: IdField::NodeId,
                ch: 'N',
                position: 0
            })
        );
    }

    #[test]
    fn node_id_serde_uses_the_text_form_and_validates() {
        let id = NodeId::from_index(3);
        assert_eq!(toml::Value::try_from(&id), Ok(toml::Value::String("node-3".into())));
        let back: Result<NodeId, _> = toml::Value::String("node-3".into()).try_into();
        assert_eq!(back, Ok(id));
        let bad: Result<NodeId, toml::de::Error> = toml::Value::String("".into()).try_into();
        assert_eq!(
            bad.map_err(|err| err.message().to_string()),
            Err("node id must not be empty".to_string())
        );
    }

    #[test]
    fn errors_read_as_sentences() {
        let err = ActorId::new("agent", "a b").expect_err("invalid key");
        assert_eq!(
            err.to_string(),
            "actor key has ' ' at byte 1; allowed characters are A-Z a-z 0-9 _ . : -"
        );
    }

    proptest! {
        #[test]
        fn valid_actor_ids_round_trip(
            namespace in "[a-z][a-z0-9_-]{0,63}",
            key in "[A-Za-z0-9_.:-]{1,256}",
        ) {
            let id = ActorId::new(namespace.clone(), key.clone()).expect("valid by construction");
            let text = id.to_string();
            prop_assert_eq!(&text, &format!("{namespace}/{key}"));
            prop_assert_eq!(text.parse::<ActorId>(), Ok(id));
        }

        #[test]
        fn valid_node_ids_round_trip(name in "[a-z0-9_-]{1,64}") {
            let id = NodeId::new(name.clone()).expect("valid by construction");
            prop_assert_eq!(id.to_string(), name.clone());
            prop_assert_eq!(name.parse::<NodeId>(), Ok(id));
        }

        #[test]
        fn arbitrary_text_never_panics_and_accepted_text_round_trips(text in "\\PC{0,400}") {
            if let Ok(id) = text.parse::<ActorId>() {
                prop_assert_eq!(id.to_string(), text.clone());
            }
            if let Ok(id) = text.parse::<NodeId>() {
                prop_assert_eq!(id.to_string(), text);
            }
        }

        #[test]
        fn near_valid_text_never_panics(text in "[a-zA-Z0-9_.:/ é-]{0,80}") {
            if let Ok(id) = text.parse::<ActorId>() {
                prop_assert_eq!(id.to_string(), text);
            }
        }
    }
}
