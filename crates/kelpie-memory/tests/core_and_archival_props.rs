//! Property tests of `CoreMemory` (all-or-nothing, invariants) and `top_k`
//! (against a brute-force ranking).

use kelpie_memory::{top_k, Block, CoreMemory, MemoryError, Passage};
use proptest::prelude::*;

const LABELS: [&str; 4] = ["persona", "human", "ノート", "x"];

#[derive(Clone, Debug)]
enum Op {
    Insert(usize, String, usize, bool),
    Remove(usize),
    SetValue(usize, String),
    Append(usize, String),
    Replace(usize, String, String),
    Upsert(usize, usize, String, usize),
}

fn text() -> impl Strategy<Value = String> {
    "[ab é日\n]{0,8}"
}

fn op() -> impl Strategy<Value = Op> {
    let l = 0..LABELS.len();
    prop_oneof![
        (l.clone(), text(), 0usize..12, any::<bool>()).prop_map(|(l, v, n, r)| Op::Insert(l, v, n, r)),
        l.clone().prop_map(Op::Remove),
        (l.clone(), text()).prop_map(|(l, v)| Op::SetValue(l, v)),
        (l.clone(), text()).prop_map(|(l, v)| Op::Append(l, v)),
        (l.clone(), "[ab é]{0,2}", text()).prop_map(|(l, o, n)| Op::Replace(l, o, n)),
        (0usize..6, l, text(), 8usize..12).prop_map(|(i, l, v, n)| Op::Upsert(i, l, v, n)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn core_memory_is_all_or_nothing(ops in prop::collection::vec(op(), 0..=64)) {
        let mut m = CoreMemory::new();
        for op in ops {
            let before = m.clone();
            let result: Result<(), MemoryError> = match &op {
                Op::Insert(l, v, n, r) => Block::new(format!("id-{l}"), LABELS[*l], v.clone(), *n)
                    .and_then(|b| m.insert(b.with_read_only(*r))),
                Op::Remove(l) => m.remove(LABELS[*l]).map(|_| ()),
                Op::SetValue(l, v) => m.set_value(LABELS[*l], v.clone()),
                Op::Append(l, v) => m.append(LABELS[*l], v),
                Op::Replace(l, o, n) => m.replace(LABELS[*l], o, n),
                Op::Upsert(i, l, v, n) => Block::new(format!("id-{i}"), LABELS[*l], v.clone(), *n)
                    .map(|b| m.upsert(b)),
            };
            if result.is_err() {
                prop_assert_eq!(&m, &before, "{:?} failed with {:?} but changed memory", op, result);
            }
            // Invariants: labels unique, every block within its limit.
            let mut labels: Vec<&str> = m.blocks().iter().map(|b| b.label.as_str()).collect();
            labels.sort_unstable();
            labels.dedup();
            prop_assert_eq!(labels.len(), m.blocks().len());
            for b in m.blocks() {
                prop_assert!(b.char_len() <= b.limit);
            }
            // The memory always reloads as it was.
            let json = serde_json::to_string(&m).expect("serialise");
            prop_assert_eq!(serde_json::from_str::<CoreMemory>(&json).expect("deserialise"), m.clone());
        }
    }

    #[test]
    fn top_k_matches_brute_force(
        vectors in prop::collection::vec((0u8..4, prop::collection::vec(-3i8..=3, 3)), 0..20),
        query in prop::collection::vec(-3i8..=3, 3),
        k in 0usize..25,
    ) {
        let passages: Vec<Passage> = vectors
            .iter()
            .enumerate()
            .map(|(i, (id, v))| Passage {
                // Duplicate ids on purpose, to exercise ties.
                id: format!("p{id}"),
                text: format!("{i}"),
                embedding: v.iter().map(|&x| f32::from(x)).collect(),
                created_at_ms: 0,
                tags: Vec::new(),
            })
            .collect();
        let query: Vec<f32> = query.iter().map(|&x| f32::from(x)).collect();
        let hits = top_k(&query, &passages, k).expect("valid input");
        prop_assert_eq!(hits.len(), k.min(passages.len()));
        for pair in hits.windows(2) {
            let ((a, sa), (b, sb)) = (&pair[0], &pair[1]);
            prop_assert!(sa > sb || (sa == sb && a.id <= b.id), "{:?} before {:?}", pair[0], pair[1]);
        }
        // Every passage left out scores no better than the last one kept.
        if let Some((last, last_score)) = hits.last() {
            for p in &passages {
                if !hits.iter().any(|(h, _)| std::ptr::eq(*h, p)) {
                    let s = kelpie_memory::cosine(&query, &p.embedding).expect("valid");
                    prop_assert!(s < *last_score || (s == *last_score && p.id >= last.id));
                }
            }
        }
    }
}
