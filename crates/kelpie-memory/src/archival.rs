//! Archival memory: passages of text with embeddings, searched by cosine
//! similarity.

use serde::{Deserialize, Serialize};

use crate::error::MemoryError;

/// Fewest dimensions a [`HashingEmbedder`] accepts.
pub const MIN_HASHING_DIMS: usize = 8;
/// Most dimensions a [`HashingEmbedder`] accepts.
pub const MAX_HASHING_DIMS: usize = 4096;
/// Dimensions of [`HashingEmbedder::default`].
pub const DEFAULT_HASHING_DIMS: usize = 256;

/// One passage of archival memory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Passage {
    /// Stable identifier; also the tie-breaker of [`top_k`].
    pub id: String,
    /// The text.
    pub text: String,
    /// Embedding of `text`.
    pub embedding: Vec<f32>,
    /// When the passage was stored, in milliseconds (caller's clock).
    pub created_at_ms: u64,
    /// Free-form tags.
    pub tags: Vec<String>,
}

/// Turns text into a vector of a fixed dimension.
pub trait Embedder: Send + Sync {
    /// Length of every vector [`Embedder::embed`] returns.
    fn dimensions(&self) -> usize;
    /// The embedding of `text`.
    fn embed(&self, text: &str) -> Result<Vec<f32>, MemoryError>;
}

/// The deterministic default embedder: feature hashing of words and word
/// bigrams.
///
/// The text is lowercased and split into tokens of alphanumeric characters.
/// Each token (weight 1) and each pair of adjacent tokens (weight 1/2) is
/// hashed with a fixed hash (64-bit FNV-1a followed by a 64-bit finaliser,
/// both written here) to a bucket (`hash % dims`) and a sign (the top bit);
/// the vector is then L2-normalised (text without tokens gives the zero
/// vector). The same text gives the same vector on every machine. (Lowercasing
/// and "alphanumeric" follow the Unicode tables of the Rust standard library,
/// so text using characters newly assigned in a later Unicode version could
/// tokenise differently across Rust versions; ASCII never does.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashingEmbedder {
    dims: usize,
}

impl HashingEmbedder {
    /// An embedder producing `dims`-dimensional vectors.
    ///
    /// Errors: [`MemoryError::InvalidEmbedding`] unless `dims` is within
    /// [`MIN_HASHING_DIMS`]`..=`[`MAX_HASHING_DIMS`].
    pub fn new(dims: usize) -> Result<Self, MemoryError> {
        if !(MIN_HASHING_DIMS..=MAX_HASHING_DIMS).contains(&dims) {
            return Err(MemoryError::InvalidEmbedding {
                reason: format!(
                    "a hashing embedder needs {MIN_HASHING_DIMS} to {MAX_HASHING_DIMS} dimensions, not {dims}"
                ),
            });
        }
        Ok(HashingEmbedder { dims })
    }

    /// Adds `weight` to the bucket of `features` (hashed as one feature).
    fn add_feature(&self, vector: &mut [f64], features: &[&str], weight: f64) {
        let mut hash = Fnv1a::new();
        for (i, feature) in features.iter().enumerate() {
            if i > 0 {
                // Unit separator: cannot occur inside a token.
                hash.write(&[0x1f]);
            }
            hash.write(feature.as_bytes());
        }
        let h = finalise(hash.finish());
        // `dims <= MAX_HASHING_DIMS`, so both conversions are lossless; the
        // fallbacks are unreachable.
        let dims = u64::try_from(self.dims).unwrap_or(u64::MAX);
        let bucket = usize::try_from(h % dims).unwrap_or(0);
        let signed = if h >> 63 == 1 { -weight } else { weight };
        if let Some(slot) = vector.get_mut(bucket) {
            *slot += signed;
        }
    }
}

impl Default for HashingEmbedder {
    /// A [`DEFAULT_HASHING_DIMS`]-dimensional embedder.
    fn default() -> Self {
        HashingEmbedder {
            dims: DEFAULT_HASHING_DIMS,
        }
    }
}

impl Embedder for HashingEmbedder {
    fn dimensions(&self) -> usize {
        self.dims
    }

    fn embed(&self, text: &str) -> Result<Vec<f32>, MemoryError> {
        let lower = text.to_lowercase();
        let tokens: Vec<&str> = lower
            .split(|c: char| !c.is_alphanumeric())
            .filter(|t| !t.is_empty())
            .collect();
        let mut vector = vec![0.0f64; self.dims];
        for token in &tokens {
            self.add_feature(&mut vector, &[token], 1.0);
        }
        for pair in tokens.windows(2) {
            self.add_feature(&mut vector, pair, 0.5);
        }
        let norm = vector.iter().map(|x| x * x).sum::<f64>().sqrt();
        Ok(vector
            .into_iter()
            .map(|x| {
                if norm > 0.0 {
                    // Narrowing to f32 is the intended rounding.
                    (x / norm) as f32
                } else {
                    0.0
                }
            })
            .collect())
    }
}

/// 64-bit FNV-1a.
struct Fnv1a(u64);

impl Fnv1a {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    fn new() -> Self {
        Fnv1a(Self::OFFSET_BASIS)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 ^= u64::from(byte);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A 64-bit avalanche finaliser (xor-shift-multiply), so that every output
/// bit, the low ones used for the bucket and the top one used for the sign,
/// depends on every input bit.
fn finalise(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

fn check_vector(v: &[f32], what: &dyn Fn() -> String) -> Result<(), MemoryError> {
    if v.is_empty() {
        return Err(MemoryError::InvalidEmbedding {
            reason: format!("{} is empty", what()),
        });
    }
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(MemoryError::InvalidEmbedding {
            reason: format!("{} has a non-finite component at index {i}", what()),
        });
    }
    Ok(())
}

/// Cosine similarity of two finite vectors, validated and computed without
/// checking the vectors first for length or finiteness.
fn cosine_unchecked(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    // Narrowing to f32 is the intended rounding.
    let score = (dot / (na.sqrt() * nb.sqrt())).clamp(-1.0, 1.0) as f32;
    // Turn -0.0 into 0.0 so equal scores compare equal in `total_cmp`.
    if score == 0.0 {
        0.0
    } else {
        score
    }
}

/// Cosine similarity of `a` and `b`, in `[-1, 1]`; 0.0 if either is the zero
/// vector. Computed in `f64`, so it cannot overflow for finite inputs.
///
/// Errors: [`MemoryError::InvalidEmbedding`] if the lengths differ, a vector
/// is empty or a component is NaN or infinite.
pub fn cosine(a: &[f32], b: &[f32]) -> Result<f32, MemoryError> {
    if a.len() != b.len() {
        return Err(MemoryError::InvalidEmbedding {
            reason: format!("dimension mismatch: {} vs {}", a.len(), b.len()),
        });
    }
    check_vector(a, &|| "the first vector".to_owned())?;
    check_vector(b, &|| "the second vector".to_owned())?;
    Ok(cosine_unchecked(a, b))
}

/// The `k` passages most similar to `query` with their cosine scores, by score
/// descending, ties broken by passage id ascending (and then by input order).
///
/// Every passage is checked, whatever `k` (so `k = 0` returns an empty list
/// only if all inputs are valid). Errors: [`MemoryError::InvalidEmbedding`] if
/// the query is empty or not finite, or if a passage's embedding has another
/// dimension than the query or is not finite (the message names the passage
/// id).
pub fn top_k<'a>(
    query: &[f32],
    passages: impl IntoIterator<Item = &'a Passage>,
    k: usize,
) -> Result<Vec<(&'a Passage, f32)>, MemoryError> {
    check_vector(query, &|| "the query".to_owned())?;
    let mut scored = Vec::new();
    for passage in passages {
        if passage.embedding.len() != query.len() {
            return Err(MemoryError::InvalidEmbedding {
                reason: format!(
                    "passage {:?} has {} dimensions, the query has {}",
                    passage.id,
                    passage.embedding.len(),
                    query.len()
                ),
            });
        }
        check_vector(&passage.embedding, &|| format!("passage {:?}", passage.id))?;
        scored.push((passage, cosine_unchecked(query, &passage.embedding)));
    }
    // Stable sort: equal (score, id) pairs keep their input order.
    scored.sort_by(|(pa, sa), (pb, sb)| sb.total_cmp(sa).then_with(|| pa.id.cmp(&pb.id)));
    scored.truncate(k);
    Ok(scored)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passage(id: &str, embedding: Vec<f32>) -> Passage {
        Passage {
            id: id.to_owned(),
            text: String::new(),
            embedding,
            created_at_ms: 0,
            tags: Vec::new(),
        }
    }

    fn embedded(embedder: &HashingEmbedder, id: &str, text: &str) -> Passage {
        Passage {
            text: text.to_owned(),
            ..passage(id, embedder.embed(text).unwrap())
        }
    }

    #[test]
    fn new_checks_dimensions() {
        for dims in [0, 7, 4097, usize::MAX] {
            assert_eq!(
                HashingEmbedder::new(dims),
                Err(MemoryError::InvalidEmbedding {
                    reason: format!("a hashing embedder needs 8 to 4096 dimensions, not {dims}"),
                })
            );
        }
        assert_eq!(HashingEmbedder::new(8).unwrap().dimensions(), 8);
        assert_eq!(HashingEmbedder::new(4096).unwrap().dimensions(), 4096);
        assert_eq!(HashingEmbedder::default().dimensions(), 256);
        assert_eq!(HashingEmbedder::default().embed("x").unwrap().len(), 256);
    }

    #[test]
    fn embedding_is_deterministic_and_pinned() {
        let e = HashingEmbedder::default();
        let text = "The quick brown fox";
        assert_eq!(e.embed(text).unwrap(), e.embed(text).unwrap());
        // Case and punctuation do not matter.
        assert_eq!(e.embed(text).unwrap(), e.embed("the QUICK, brown... fox!").unwrap());

        // Pinned values: a change of tokeniser, hash or weights fails here.
        // 4 words of weight 1 and 3 bigrams of weight 1/2, all in distinct
        // buckets: components are ±1/sqrt(4.75) and ±0.5/sqrt(4.75).
        let (w, b) = (0.458_831_46_f32, 0.229_415_73_f32);
        let expected = [(27, -w), (49, -w), (112, -w), (152, -b), (170, w), (182, b), (225, b)];
        let v = e.embed(text).unwrap();
        let non_zero: Vec<(usize, f32)> = v.iter().copied().enumerate().filter(|(_, x)| *x != 0.0).collect();
        assert_eq!(non_zero.len(), expected.len(), "{non_zero:?}");
        for ((i, x), (ei, ex)) in non_zero.iter().zip(expected) {
            assert_eq!(*i, ei, "{non_zero:?}");
            assert!((x - ex).abs() < 1e-6, "{non_zero:?}");
        }
        let small = HashingEmbedder::new(16).unwrap().embed(text).unwrap();
        let expected_small = [-0.516_397_8_f32, -0.258_198_9, 0.0, 0.0, 0.0, 0.0, 0.258_198_9];
        for (x, ex) in small.iter().zip(expected_small) {
            assert!((x - ex).abs() < 1e-6, "{small:?}");
        }
    }

    #[test]
    fn embedding_is_unit_length_or_zero() {
        let e = HashingEmbedder::new(64).unwrap();
        for text in ["hello", "a b c d e f g h i j k l m n o p", "日本語 テキスト", "🦀 rust"] {
            let v = e.embed(text).unwrap();
            let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "{text:?}: {norm}");
        }
        for text in ["", "   ", "!?-+ 🦀"] {
            assert_eq!(e.embed(text).unwrap(), vec![0.0; 64], "{text:?}");
        }
    }

    #[test]
    fn shared_words_rank_first() {
        let e = HashingEmbedder::default();
        let passages = vec![
            embedded(&e, "p1", "The user's favourite colour is green."),
            embedded(&e, "p2", "Paris is the capital of France."),
            embedded(&e, "p3", "The user has a dog called Biscuit."),
            embedded(&e, "p4", "Meeting moved to Thursday afternoon."),
        ];
        let query = e.embed("what is the dog called").unwrap();
        let hits = top_k(&query, &passages, 2).unwrap();
        assert_eq!(hits.len(), 2);
        assert_eq!(hits[0].0.id, "p3");
        assert!(hits[0].1 > hits[1].1);

        let query = e.embed("capital of France").unwrap();
        assert_eq!(top_k(&query, &passages, 1).unwrap()[0].0.id, "p2");
        // Identical text scores 1.
        let query = e.embed("Meeting moved to Thursday afternoon").unwrap();
        let best = &top_k(&query, &passages, 1).unwrap()[0];
        assert_eq!(best.0.id, "p4");
        assert!((best.1 - 1.0).abs() < 1e-6);
    }

    #[test]
    fn top_k_orders_by_score_then_id() {
        let passages = vec![
            passage("d", vec![1.0, 0.0]),
            passage("b", vec![0.0, 1.0]),
            passage("a", vec![0.0, 2.0]), // same direction as "b": tie
            passage("c", vec![-1.0, 0.0]),
            passage("e", vec![0.0, 0.0]), // zero vector: score 0
            passage("z", vec![1.0, 1.0]),
        ];
        let query = [0.0f32, 1.0];
        let hits = top_k(&query, &passages, 10).unwrap();
        let ids: Vec<&str> = hits.iter().map(|(p, _)| p.id.as_str()).collect();
        // a/b tie at 1.0 (a first), then z (0.707), then c, d, e at 0 by id.
        assert_eq!(ids, ["a", "b", "z", "c", "d", "e"]);
        assert_eq!(hits[0].1, 1.0);
        assert_eq!(hits[1].1, 1.0);
        assert!((hits[2].1 - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
        for (_, score) in &hits[3..] {
            assert_eq!(score.to_bits(), 0.0f32.to_bits());
        }
        let two = top_k(&query, &passages, 2).unwrap();
        assert_eq!(two, hits[..2].to_vec());
        assert!(top_k(&query, &passages, 0).unwrap().is_empty());
        assert!(top_k(&query, Vec::<&Passage>::new(), 3).unwrap().is_empty());
        // Negative similarity ranks below zero.
        let hits = top_k(&[1.0, 0.0], &passages, 10).unwrap();
        assert_eq!(hits.last().unwrap().0.id, "c");
        assert_eq!(hits.last().unwrap().1, -1.0);
    }

    #[test]
    fn top_k_errors() {
        let passages = vec![passage("ok", vec![1.0, 0.0]), passage("short", vec![1.0])];
        assert_eq!(
            top_k(&[1.0, 0.0], &passages, 1),
            Err(MemoryError::InvalidEmbedding {
                reason: "passage \"short\" has 1 dimensions, the query has 2".to_owned(),
            })
        );
        // Checked whatever k is.
        assert_eq!(
            top_k(&[1.0, 0.0], &passages, 0),
            Err(MemoryError::InvalidEmbedding {
                reason: "passage \"short\" has 1 dimensions, the query has 2".to_owned(),
            })
        );
        let nan = vec![passage("nan", vec![f32::NAN, 0.0])];
        assert_eq!(
            top_k(&[1.0, 0.0], &nan, 1),
            Err(MemoryError::InvalidEmbedding {
                reason: "passage \"nan\" has a non-finite component at index 0".to_owned(),
            })
        );
        assert_eq!(
            top_k(&[], &passages, 1),
            Err(MemoryError::InvalidEmbedding {
                reason: "the query is empty".to_owned(),
            })
        );
        assert_eq!(
            top_k(&[0.0, f32::INFINITY], &passages[..1], 1),
            Err(MemoryError::InvalidEmbedding {
                reason: "the query has a non-finite component at index 1".to_owned(),
            })
        );
    }

    #[test]
    fn cosine_values_and_errors() {
        assert_eq!(cosine(&[1.0, 0.0], &[1.0, 0.0]), Ok(1.0));
        assert_eq!(cosine(&[1.0, 0.0], &[-3.0, 0.0]), Ok(-1.0));
        assert_eq!(cosine(&[1.0, 0.0], &[0.0, 5.0]), Ok(0.0));
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 1.0]), Ok(0.0));
        assert_eq!(cosine(&[0.0, 0.0], &[0.0, 0.0]), Ok(0.0));
        // Huge finite components do not overflow.
        assert_eq!(cosine(&[f32::MAX, f32::MAX], &[f32::MAX, f32::MAX]), Ok(1.0));
        assert_eq!(
            cosine(&[1.0], &[1.0, 2.0]),
            Err(MemoryError::InvalidEmbedding {
                reason: "dimension mismatch: 1 vs 2".to_owned(),
            })
        );
        assert_eq!(
            cosine(&[], &[]),
            Err(MemoryError::InvalidEmbedding {
                reason: "the first vector is empty".to_owned(),
            })
        );
        assert_eq!(
            cosine(&[1.0, 2.0], &[1.0, f32::NAN]),
            Err(MemoryError::InvalidEmbedding {
                reason: "the second vector has a non-finite component at index 1".to_owned(),
            })
        );
    }

    #[test]
    fn passage_serde_round_trip() {
        let p = Passage {
            id: "p-1".to_owned(),
            text: "hello".to_owned(),
            embedding: HashingEmbedder::new(8).unwrap().embed("hello").unwrap(),
            created_at_ms: 1_700_000_000_000,
            tags: vec!["greeting".to_owned()],
        };
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Passage>(&json).unwrap(), p);
    }

    #[test]
    fn embedder_is_object_safe() {
        let boxed: Box<dyn Embedder> = Box::new(HashingEmbedder::default());
        assert_eq!(boxed.dimensions(), 256);
    }
}
