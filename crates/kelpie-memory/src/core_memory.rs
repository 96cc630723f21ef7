//! Core memory: labelled text blocks with character limits, always in the
//! agent's context window (Letta's "core memory").

use serde::{Deserialize, Serialize};

use crate::error::MemoryError;

/// Default character limit of a block (Letta's default for its `persona` and
/// `human` blocks).
pub const DEFAULT_BLOCK_LIMIT: usize = 5000;

/// Maximum length of a block label, in characters.
pub const MAX_LABEL_CHARS: usize = 100;

/// One labelled block of core memory.
///
/// The fields are public so the API layer can read and build blocks freely;
/// [`Block::new`] is the constructor that checks them, and [`Block::validate`]
/// checks a block built by hand.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// Stable identifier of the block (assigned by the API layer).
    pub id: String,
    /// Label, unique within a [`CoreMemory`]; also the tag name in the prompt.
    pub label: String,
    /// The text of the block.
    pub value: String,
    /// Maximum length of `value`, in characters (Unicode scalar values).
    pub limit: usize,
    /// What the block is for, shown to the model.
    pub description: Option<String>,
    /// Whether the agent's own memory tools are refused on this block.
    pub read_only: bool,
}

impl Block {
    /// A writable block without description.
    ///
    /// Errors: [`MemoryError::InvalidLabel`] if the label is empty, longer than
    /// [`MAX_LABEL_CHARS`] characters or contains a control character;
    /// [`MemoryError::OverLimit`] if `value` has more than `limit` characters.
    pub fn new(
        id: impl Into<String>,
        label: impl Into<String>,
        value: impl Into<String>,
        limit: usize,
    ) -> Result<Block, MemoryError> {
        let block = Block {
            id: id.into(),
            label: label.into(),
            value: value.into(),
            limit,
            description: None,
            read_only: false,
        };
        block.validate()?;
        Ok(block)
    }

    /// This block with a description (builder style).
    #[must_use]
    pub fn with_description(mut self, description: impl Into<String>) -> Block {
        self.description = Some(description.into());
        self
    }

    /// This block with its `read_only` flag set as given (builder style).
    #[must_use]
    pub fn with_read_only(mut self, read_only: bool) -> Block {
        self.read_only = read_only;
        self
    }

    /// Length of the value in characters (Unicode scalar values, not bytes).
    pub fn char_len(&self) -> usize {
        self.value.chars().count()
    }

    /// Checks the label (see [`validate_label`]) and that the value is within
    /// the limit.
    pub fn validate(&self) -> Result<(), MemoryError> {
        validate_label(&self.label)?;
        let length = self.char_len();
        if length > self.limit {
            return Err(MemoryError::OverLimit {
                label: self.label.clone(),
                limit: self.limit,
                length,
            });
        }
        Ok(())
    }
}

/// Checks a block label: non-empty, at most [`MAX_LABEL_CHARS`] characters,
/// no control characters.
pub fn validate_label(label: &str) -> Result<(), MemoryError> {
    let invalid = |reason: String| MemoryError::InvalidLabel {
        label: label.to_owned(),
        reason,
    };
    if label.is_empty() {
        return Err(invalid("the label is empty".to_owned()));
    }
    let chars = label.chars().count();
    if chars > MAX_LABEL_CHARS {
        return Err(invalid(format!(
            "the label is {chars} characters, over the maximum of {MAX_LABEL_CHARS}"
        )));
    }
    if let Some(c) = label.chars().find(|c| c.is_control()) {
        return Err(invalid(format!(
            "the label contains the control character U+{:04X}",
            u32::from(c)
        )));
    }
    Ok(())
}

/// The core memory of one agent: blocks in insertion order, labels unique.
///
/// Every mutating method is all-or-nothing: on error nothing changed.
/// Deserialising a `CoreMemory` whose blocks share a label fails with the
/// [`MemoryError::DuplicateLabel`] message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "CoreMemoryRepr")]
pub struct CoreMemory {
    blocks: Vec<Block>,
}

/// Serialised form, checked on the way in.
#[derive(Deserialize)]
struct CoreMemoryRepr {
    blocks: Vec<Block>,
}

impl TryFrom<CoreMemoryRepr> for CoreMemory {
    type Error = MemoryError;

    fn try_from(repr: CoreMemoryRepr) -> Result<Self, Self::Error> {
        // Only label uniqueness is checked here: it is the invariant every
        // method keeps. Block contents are not re-validated so that anything
        // `upsert` accepted can always be loaded back.
        check_unique_labels(&repr.blocks)?;
        Ok(CoreMemory { blocks: repr.blocks })
    }
}

fn check_unique_labels(blocks: &[Block]) -> Result<(), MemoryError> {
    let mut seen = std::collections::BTreeSet::new();
    for block in blocks {
        if !seen.insert(block.label.as_str()) {
            return Err(MemoryError::DuplicateLabel {
                label: block.label.clone(),
            });
        }
    }
    Ok(())
}

fn char_count_checked(parts: &[&str]) -> usize {
    parts
        .iter()
        .fold(0usize, |acc, p| acc.saturating_add(p.chars().count()))
}

impl CoreMemory {
    /// An empty core memory.
    pub fn new() -> Self {
        CoreMemory { blocks: Vec::new() }
    }

    /// A core memory holding `blocks` in the given order.
    ///
    /// Errors: [`MemoryError::DuplicateLabel`] for the first label seen twice;
    /// any error of [`Block::validate`] for an invalid block.
    pub fn from_blocks(blocks: Vec<Block>) -> Result<Self, MemoryError> {
        for block in &blocks {
            block.validate()?;
        }
        check_unique_labels(&blocks)?;
        Ok(CoreMemory { blocks })
    }

    /// The blocks, in insertion order.
    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    /// The block with this label.
    pub fn get(&self, label: &str) -> Option<&Block> {
        self.blocks.iter().find(|b| b.label == label)
    }

    /// The first block with this id.
    pub fn get_by_id(&self, id: &str) -> Option<&Block> {
        self.blocks.iter().find(|b| b.id == id)
    }

    /// Appends a block at the end.
    ///
    /// Errors: [`MemoryError::DuplicateLabel`]; any error of
    /// [`Block::validate`].
    pub fn insert(&mut self, block: Block) -> Result<(), MemoryError> {
        block.validate()?;
        if self.get(&block.label).is_some() {
            return Err(MemoryError::DuplicateLabel { label: block.label });
        }
        self.blocks.push(block);
        Ok(())
    }

    /// Removes and returns the block with this label (read-only or not).
    ///
    /// Errors: [`MemoryError::UnknownBlock`].
    pub fn remove(&mut self, label: &str) -> Result<Block, MemoryError> {
        let index = self.index_of(label)?;
        Ok(self.blocks.remove(index))
    }

    /// Removes and returns the first block with this id, if any.
    pub fn remove_by_id(&mut self, id: &str) -> Option<Block> {
        let index = self.blocks.iter().position(|b| b.id == id)?;
        Some(self.blocks.remove(index))
    }

    /// Replaces the value of a block.
    ///
    /// Errors: [`MemoryError::UnknownBlock`], [`MemoryError::ReadOnly`],
    /// [`MemoryError::OverLimit`] (checked in that order).
    pub fn set_value(&mut self, label: &str, value: String) -> Result<(), MemoryError> {
        let index = self.writable_index(label)?;
        let length = value.chars().count();
        self.commit(index, value, length)
    }

    /// Inserts or replaces a block, bypassing `read_only` (this is the API's
    /// own path, not an agent tool).
    ///
    /// If a block has the same id, it is replaced in place; otherwise, if a
    /// block has the same label, that one is replaced in place; otherwise the
    /// block is pushed at the end. Any *other* block sharing the new block's
    /// label or id is then removed, so labels stay unique.
    ///
    /// The block itself is not validated: build it with [`Block::new`] (or
    /// check it with [`Block::validate`]) first.
    pub fn upsert(&mut self, block: Block) {
        let target = self
            .blocks
            .iter()
            .position(|b| b.id == block.id)
            .or_else(|| self.blocks.iter().position(|b| b.label == block.label));
        match target {
            Some(index) => {
                let mut current = 0usize;
                self.blocks.retain(|b| {
                    let keep = current == index || (b.id != block.id && b.label != block.label);
                    current = current.saturating_add(1);
                    keep
                });
                // `index` may have shifted left by the blocks removed before it.
                if let Some(slot) = self
                    .blocks
                    .iter_mut()
                    .find(|b| b.id == block.id || b.label == block.label)
                {
                    *slot = block;
                }
            }
            None => self.blocks.push(block),
        }
    }

    /// Letta's `core_memory_append`: the block's value becomes
    /// `value + "\n" + content` (also when the value was empty).
    ///
    /// Errors: [`MemoryError::UnknownBlock`], [`MemoryError::ReadOnly`],
    /// [`MemoryError::OverLimit`] (checked in that order).
    pub fn append(&mut self, label: &str, content: &str) -> Result<(), MemoryError> {
        let index = self.writable_index(label)?;
        let current = &self.blocks[index].value;
        let length = char_count_checked(&[current, "\n", content]);
        let mut value = String::with_capacity(current.len().saturating_add(1).saturating_add(content.len()));
        value.push_str(current);
        value.push('\n');
        value.push_str(content);
        self.commit(index, value, length)
    }

    /// Letta's `core_memory_replace`: replaces ALL occurrences of `old` in the
    /// block's value with `new`.
    ///
    /// Errors: [`MemoryError::UnknownBlock`], [`MemoryError::ReadOnly`],
    /// [`MemoryError::ReplaceNotFound`] (if `old` is empty or absent),
    /// [`MemoryError::OverLimit`] (checked in that order).
    pub fn replace(&mut self, label: &str, old: &str, new: &str) -> Result<(), MemoryError> {
        let index = self.writable_index(label)?;
        let current = &self.blocks[index].value;
        if old.is_empty() || !current.contains(old) {
            return Err(MemoryError::ReplaceNotFound {
                label: label.to_owned(),
                old: old.to_owned(),
            });
        }
        let value = current.replace(old, new);
        let length = value.chars().count();
        self.commit(index, value, length)
    }

    /// Renders the memory section of the system prompt, Letta style, blocks in
    /// order, a blank line between blocks, no trailing newline:
    ///
    /// ```text
    /// <memory_blocks>
    /// The following memory blocks are currently engaged in your core memory unit:
    ///
    /// <persona>
    /// <description>
    /// (the description, or an empty line)
    /// </description>
    /// <metadata>
    /// - chars_current=12
    /// - chars_limit=5000
    /// </metadata>
    /// <value>
    /// (the value)
    /// </value>
    /// </persona>
    /// </memory_blocks>
    /// ```
    pub fn compile(&self) -> String {
        let mut out = String::from(
            "<memory_blocks>\nThe following memory blocks are currently engaged in your core memory unit:\n\n",
        );
        for (i, block) in self.blocks.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            let label = &block.label;
            let description = block.description.as_deref().unwrap_or("");
            out.push_str(&format!(
                "<{label}>\n<description>\n{description}\n</description>\n<metadata>\n- chars_current={}\n- chars_limit={}\n</metadata>\n<value>\n{}\n</value>\n</{label}>\n",
                block.char_len(),
                block.limit,
                block.value,
            ));
        }
        out.push_str("</memory_blocks>");
        out
    }

    fn index_of(&self, label: &str) -> Result<usize, MemoryError> {
        self.blocks
            .iter()
            .position(|b| b.label == label)
            .ok_or_else(|| MemoryError::UnknownBlock {
                label: label.to_owned(),
            })
    }

    fn writable_index(&self, label: &str) -> Result<usize, MemoryError> {
        let index = self.index_of(label)?;
        if self.blocks[index].read_only {
            return Err(MemoryError::ReadOnly {
                label: label.to_owned(),
            });
        }
        Ok(index)
    }

    /// Stores `value` (of `length` characters) in block `index` if it fits.
    fn commit(&mut self, index: usize, value: String, length: usize) -> Result<(), MemoryError> {
        let block = &mut self.blocks[index];
        if length > block.limit {
            return Err(MemoryError::OverLimit {
                label: block.label.clone(),
                limit: block.limit,
                length,
            });
        }
        block.value = value;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(id: &str, label: &str, value: &str, limit: usize) -> Block {
        Block::new(id, label, value, limit).expect("valid block")
    }

    fn sample() -> CoreMemory {
        CoreMemory::from_blocks(vec![
            block("b-1", "persona", "I am Sam.", 100).with_description("Who I am."),
            block("b-2", "human", "Name: Ada", 20),
            block("b-3", "policy", "Be kind.", 50).with_read_only(true),
        ])
        .expect("valid memory")
    }

    #[test]
    fn block_new_validates_label_and_limit() {
        assert_eq!(
            Block::new("i", "", "", 10),
            Err(MemoryError::InvalidLabel {
                label: String::new(),
                reason: "the label is empty".to_owned(),
            })
        );
        let long = "x".repeat(101);
        assert_eq!(
            Block::new("i", long.clone(), "", 10),
            Err(MemoryError::InvalidLabel {
                label: long,
                reason: "the label is 101 characters, over the maximum of 100".to_owned(),
            })
        );
        // 100 multi-byte characters are fine: the maximum counts characters.
        assert_eq!(
            Block::new("i", "é".repeat(100), "", 10).map(|block| block.label.chars().count()),
            Ok(100)
        );
        assert_eq!(
            Block::new("i", "a\u{7}b", "", 10),
            Err(MemoryError::InvalidLabel {
                label: "a\u{7}b".to_owned(),
                reason: "the label contains the control character U+0007".to_owned(),
            })
        );
        assert_eq!(
            Block::new("i", "l", "abcdef", 5),
            Err(MemoryError::OverLimit {
                label: "l".to_owned(),
                limit: 5,
                length: 6,
            })
        );
        let b = block("i", "l", "abcde", 5);
        assert_eq!(b.char_len(), 5);
        assert_eq!(b.description, None);
        assert!(!b.read_only);
    }

    #[test]
    fn limits_count_characters_not_bytes() {
        // 5 characters, 15 bytes.
        let b = block("i", "l", "日本語テキ", 5);
        assert_eq!(b.char_len(), 5);
        assert_eq!(b.value.len(), 15);
        let mut m = CoreMemory::from_blocks(vec![b]).unwrap();
        let before = m.clone();
        assert_eq!(
            m.set_value("l", "日本語テキス".to_owned()),
            Err(MemoryError::OverLimit {
                label: "l".to_owned(),
                limit: 5,
                length: 6,
            })
        );
        assert_eq!(m, before);
        m.set_value("l", "🦀🦀🦀🦀🦀".to_owned()).unwrap();
        assert_eq!(m.get("l").unwrap().char_len(), 5);
    }

    #[test]
    fn insert_get_remove() {
        let mut m = CoreMemory::new();
        assert_eq!(m, CoreMemory::default());
        m.insert(block("b-1", "persona", "x", 10)).unwrap();
        m.insert(block("b-2", "human", "y", 10)).unwrap();
        let before = m.clone();
        assert_eq!(
            m.insert(block("b-9", "persona", "z", 10)),
            Err(MemoryError::DuplicateLabel {
                label: "persona".to_owned(),
            })
        );
        assert_eq!(m, before);
        // A hand-built invalid block is refused too.
        let mut bad = block("b-9", "other", "", 3);
        bad.value = "toolong".to_owned();
        assert_eq!(
            m.insert(bad),
            Err(MemoryError::OverLimit {
                label: "other".to_owned(),
                limit: 3,
                length: 7,
            })
        );
        assert_eq!(m, before);

        let labels: Vec<&str> = m.blocks().iter().map(|b| b.label.as_str()).collect();
        assert_eq!(labels, ["persona", "human"]);
        assert_eq!(m.get("human").unwrap().id, "b-2");
        assert_eq!(m.get_by_id("b-1").unwrap().label, "persona");
        assert!(m.get("nope").is_none());
        assert!(m.get_by_id("nope").is_none());

        assert_eq!(
            m.remove("nope"),
            Err(MemoryError::UnknownBlock {
                label: "nope".to_owned(),
            })
        );
        assert_eq!(m, before);
        assert_eq!(m.remove("persona").unwrap().id, "b-1");
        assert_eq!(m.remove_by_id("nope"), None);
        assert_eq!(m.remove_by_id("b-2").unwrap().label, "human");
        assert!(m.blocks().is_empty());
    }

    #[test]
    fn from_blocks_rejects_duplicates_and_invalid_blocks() {
        assert_eq!(
            CoreMemory::from_blocks(vec![
                block("1", "a", "", 1),
                block("2", "b", "", 1),
                block("3", "a", "", 1),
            ]),
            Err(MemoryError::DuplicateLabel { label: "a".to_owned() })
        );
        let mut bad = block("1", "a", "", 1);
        bad.label = String::new();
        assert_eq!(
            CoreMemory::from_blocks(vec![bad]),
            Err(MemoryError::InvalidLabel {
                label: String::new(),
                reason: "the label is empty".to_owned(),
            })
        );
    }

    #[test]
    fn set_value_errors_leave_memory_unchanged() {
        let mut m = sample();
        let before = m.clone();
        assert_eq!(
            m.set_value("nope", "x".to_owned()),
            Err(MemoryError::UnknownBlock {
                label: "nope".to_owned(),
            })
        );
        assert_eq!(
            m.set_value("policy", "x".to_owned()),
            Err(MemoryError::ReadOnly {
                label: "policy".to_owned(),
            })
        );
        assert_eq!(
            m.set_value("human", "x".repeat(21)),
            Err(MemoryError::OverLimit {
                label: "human".to_owned(),
                limit: 20,
                length: 21,
            })
        );
        assert_eq!(m, before);
        m.set_value("human", "x".repeat(20)).unwrap();
        assert_eq!(m.get("human").unwrap().value, "x".repeat(20));
    }

    #[test]
    fn append_joins_with_a_newline() {
        let mut m = sample();
        m.append("human", "Likes tea").unwrap();
        assert_eq!(m.get("human").unwrap().value, "Name: Ada\nLikes tea");
        // Exactly at the limit (20) is fine: 19 + 1 + 0.
        m.append("human", "").unwrap();
        assert_eq!(m.get("human").unwrap().value, "Name: Ada\nLikes tea\n");
        assert_eq!(m.get("human").unwrap().char_len(), 20);
        // An empty block still gets the separator (Letta does the same).
        m.insert(block("b-4", "notes", "", 10)).unwrap();
        m.append("notes", "hi").unwrap();
        assert_eq!(m.get("notes").unwrap().value, "\nhi");
    }

    #[test]
    fn append_errors_leave_memory_unchanged() {
        let mut m = sample();
        let before = m.clone();
        assert_eq!(
            m.append("nope", "x"),
            Err(MemoryError::UnknownBlock {
                label: "nope".to_owned(),
            })
        );
        assert_eq!(
            m.append("policy", "x"),
            Err(MemoryError::ReadOnly {
                label: "policy".to_owned(),
            })
        );
        // "Name: Ada" is 9 characters; + "\n" + 11 = 21 > 20.
        assert_eq!(
            m.append("human", "ééééééééééé"),
            Err(MemoryError::OverLimit {
                label: "human".to_owned(),
                limit: 20,
                length: 21,
            })
        );
        assert_eq!(m, before);
    }

    #[test]
    fn replace_replaces_all_occurrences() {
        let mut m = CoreMemory::from_blocks(vec![block("1", "l", "a cat and a cat", 40)]).unwrap();
        m.replace("l", "cat", "dog").unwrap();
        assert_eq!(m.get("l").unwrap().value, "a dog and a dog");
        // Replacing with the empty string deletes.
        m.replace("l", " and a dog", "").unwrap();
        assert_eq!(m.get("l").unwrap().value, "a dog");
        // Unicode.
        m.replace("l", "dog", "🐕").unwrap();
        assert_eq!(m.get("l").unwrap().value, "a 🐕");
    }

    #[test]
    fn replace_errors_leave_memory_unchanged() {
        let mut m = sample();
        let before = m.clone();
        assert_eq!(
            m.replace("nope", "a", "b"),
            Err(MemoryError::UnknownBlock {
                label: "nope".to_owned(),
            })
        );
        assert_eq!(
            m.replace("policy", "kind", "cruel"),
            Err(MemoryError::ReadOnly {
                label: "policy".to_owned(),
            })
        );
        assert_eq!(
            m.replace("human", "Bob", "Eve"),
            Err(MemoryError::ReplaceNotFound {
                label: "human".to_owned(),
                old: "Bob".to_owned(),
            })
        );
        assert_eq!(
            m.replace("human", "", "x"),
            Err(MemoryError::ReplaceNotFound {
                label: "human".to_owned(),
                old: String::new(),
            })
        );
        // "Name: Ada" -> "Name: " + 15 characters = 21 > 20.
        assert_eq!(
            m.replace("human", "Ada", "ÅÅÅÅÅÅÅÅÅÅÅÅÅÅÅ"),
            Err(MemoryError::OverLimit {
                label: "human".to_owned(),
                limit: 20,
                length: 21,
            })
        );
        assert_eq!(m, before);
    }

    #[test]
    fn upsert_replaces_in_place_or_pushes() {
        let mut m = sample();
        // Same id, new label and value: replaced in place.
        m.upsert(block("b-2", "user", "Name: Bob", 30));
        let labels: Vec<&str> = m.blocks().iter().map(|b| b.label.as_str()).collect();
        assert_eq!(labels, ["persona", "user", "policy"]);
        assert_eq!(m.get("user").unwrap().value, "Name: Bob");
        // Same label, new id: replaced in place, read-only or not.
        m.upsert(block("b-9", "policy", "Be brief.", 50));
        assert_eq!(m.blocks()[2].id, "b-9");
        assert_eq!(m.blocks()[2].value, "Be brief.");
        assert!(!m.blocks()[2].read_only);
        // Unknown id and label: pushed.
        m.upsert(block("b-5", "extra", "", 5));
        assert_eq!(m.blocks().len(), 4);
        assert_eq!(m.blocks()[3].label, "extra");
        // Id of one block, label of another: the id's block is replaced and the
        // other one removed, so labels stay unique.
        m.upsert(block("b-1", "extra", "merged", 10));
        let ids: Vec<&str> = m.blocks().iter().map(|b| b.id.as_str()).collect();
        assert_eq!(ids, ["b-1", "b-2", "b-9"]);
        assert_eq!(m.get("extra").unwrap().value, "merged");
        assert!(m.get("persona").is_none());
        // The result always reloads.
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<CoreMemory>(&json).unwrap(), m);
    }

    #[test]
    fn compile_renders_letta_style() {
        let expected = "<memory_blocks>
The following memory blocks are currently engaged in your core memory unit:

<persona>
<description>
Who I am.
</description>
<metadata>
- chars_current=9
- chars_limit=100
</metadata>
<value>
I am Sam.
</value>
</persona>

<human>
<description>

</description>
<metadata>
- chars_current=9
- chars_limit=20
</metadata>
<value>
Name: Ada
</value>
</human>

<policy>
<description>

</description>
<metadata>
- chars_current=8
- chars_limit=50
</metadata>
<value>
Be kind.
</value>
</policy>
</memory_blocks>";
        assert_eq!(sample().compile(), expected);
    }

    #[test]
    fn compile_empty_and_unicode() {
        assert_eq!(
            CoreMemory::new().compile(),
            "<memory_blocks>\nThe following memory blocks are currently engaged in your core memory unit:\n\n</memory_blocks>"
        );
        let m = CoreMemory::from_blocks(vec![block("1", "ノート", "héllo", 7)]).unwrap();
        assert!(m
            .compile()
            .contains("<ノート>\n<description>\n\n</description>\n<metadata>\n- chars_current=5\n- chars_limit=7\n</metadata>\n<value>\nhéllo\n</value>\n</ノート>\n"));
    }

    #[test]
    fn serde_round_trip() {
        let m = sample();
        let json = serde_json::to_string(&m).unwrap();
        let back: CoreMemory = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
        let block_json = serde_json::to_value(&m.blocks()[0]).unwrap();
        assert_eq!(
            block_json,
            serde_json::json!({
                "id": "b-1",
                "label": "persona",
                "value": "I am Sam.",
                "limit": 100,
                "description": "Who I am.",
                "read_only": false,
            })
        );
    }

    #[test]
    fn deserialising_duplicate_labels_fails() {
        let json = r#"{"blocks":[
            {"id":"1","label":"a","value":"","limit":1,"description":null,"read_only":false},
            {"id":"2","label":"a","value":"","limit":1,"description":null,"read_only":false}
        ]}"#;
        let err = serde_json::from_str::<CoreMemory>(json).unwrap_err();
        assert!(
            err.to_string().contains("a memory block labelled \"a\" already exists"),
            "{err}"
        );
    }

    #[test]
    fn error_messages_name_the_problem() {
        assert_eq!(
            MemoryError::OverLimit {
                label: "human".to_owned(),
                limit: 5,
                length: 7,
            }
            .to_string(),
            "block \"human\" would be 7 characters, over its limit of 5"
        );
        assert_eq!(
            MemoryError::ReplaceNotFound {
                label: "human".to_owned(),
                old: "Bob".to_owned(),
            }
            .to_string(),
            "block \"human\" does not contain \"Bob\" (the text to replace must be non-empty and present)"
        );
    }
}
