//! Embeddings: the OpenAI-compatible client against the fake, and the local
//! hashing embedder.

use std::time::Duration;

use kelpie_llm::{EmbeddingProvider, HashingEmbeddings, LlmError, OpenAiEmbeddings};

fn texts(items: &[&str]) -> Vec<String> {
    items.iter().map(|t| (*t).to_owned()).collect()
}

#[tokio::test]
async fn hashing_embeddings_are_deterministic_and_normalised() {
    let embedder = HashingEmbeddings::new(16);
    assert_eq!(embedder.dimensions(), 16);
    let input = texts(&["The cat sat", "the CAT sat!", ""]);
    let vectors = embedder.embed(&input).await.unwrap();
    assert_eq!(vectors.len(), 3);
    assert_eq!(vectors[0], vectors[1], "case and punctuation do not matter");
    assert_eq!(vectors[2], vec![0.0; 16]);
    let norm: f32 = vectors[0].iter().map(|v| v * v).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-6, "{norm}");
    assert_eq!(vectors[0], HashingEmbeddings::new(16).embed_one("the cat sat"));
}

#[test]
fn bad_embedding_settings_are_not_configured() {
    let new =
        |base: &str, model: &str, dims: usize| OpenAiEmbeddings::new(base, None, model, dims, Duration::from_secs(1));
    assert!(matches!(new("", "m", 8), Err(LlmError::NotConfigured { .. })));
    assert!(matches!(new("http://x/v1", "", 8), Err(LlmError::NotConfigured { .. })));
    assert_eq!(
        new("http://x/v1", "m", 0).unwrap_err(),
        LlmError::NotConfigured {
            what: "embeddings dimensions is 0: set the model's vector size (e.g. 1536)".into()
        }
    );
}

#[cfg(feature = "fake")]
mod over_http {
    use super::*;
    use kelpie_llm::fake::{FakeOpenAi, FakeReply, FAKE_EMBEDDING_DIMENSIONS};
    use serde_json::json;

    fn client(fake: &FakeOpenAi, dimensions: usize) -> OpenAiEmbeddings {
        OpenAiEmbeddings::new(
            fake.base_url(),
            Some("sk-emb".into()),
            "embed-test",
            dimensions,
            Duration::from_secs(10),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn vectors_come_back_in_order_with_the_right_size() {
        let fake = FakeOpenAi::echo().unwrap();
        let embedder = client(&fake, FAKE_EMBEDDING_DIMENSIONS);
        assert_eq!(embedder.dimensions(), 64);
        let input = texts(&["alpha beta", "gamma"]);
        let vectors = embedder.embed(&input).await.unwrap();
        let local = HashingEmbeddings::new(FAKE_EMBEDDING_DIMENSIONS);
        assert_eq!(vectors, vec![local.embed_one("alpha beta"), local.embed_one("gamma")]);
        assert_eq!(
            fake.requests(),
            vec![json!({"model": "embed-test", "input": ["alpha beta", "gamma"]})]
        );
        let recorded = fake.recorded();
        assert_eq!(recorded[0].path, "/v1/embeddings");
        assert_eq!(
            recorded[0].headers.get("authorization").map(String::as_str),
            Some("Bearer sk-emb")
        );
    }

    #[tokio::test]
    async fn a_wrong_vector_size_is_a_decode_error() {
        let fake = FakeOpenAi::echo().unwrap();
        let err = client(&fake, 32).embed(&texts(&["alpha"])).await.unwrap_err();
        assert_eq!(
            err,
            LlmError::Decode {
                reason: "embedding 0 has 64 dimensions, expected 32".into()
            }
        );
    }

    #[tokio::test]
    async fn no_texts_means_no_request() {
        let fake = FakeOpenAi::echo().unwrap();
        assert_eq!(client(&fake, 64).embed(&[]).await.unwrap(), Vec::<Vec<f32>>::new());
        assert_eq!(fake.requests(), Vec::<serde_json::Value>::new());
    }

    #[tokio::test]
    async fn answers_are_reordered_by_index_and_checked() {
        // The fake always answers in index order, so a one-shot hand-written
        // HTTP server serves the out-of-order answer.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let body = json!({"data": [
            {"index": 1, "embedding": [0.0, 1.0]},
            {"index": 0, "embedding": [1.0, 0.0]},
        ]})
        .to_string();
        let server = async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buffer = vec![0u8; 65536];
            let mut read = 0;
            // Read until the end of the small JSON body (its only `}` is the last byte).
            loop {
                let n = socket.read(&mut buffer[read..]).await.unwrap();
                read += n;
                if n == 0 || buffer[..read].ends_with(b"}") {
                    break;
                }
            }
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
                body.len(),
                body
            );
            socket.write_all(reply.as_bytes()).await.unwrap();
        };
        let embedder =
            OpenAiEmbeddings::new(format!("http://{addr}/v1"), None, "m", 2, Duration::from_secs(10)).unwrap();
        let input = texts(&["a", "b"]);
        let (vectors, ()) = tokio::join!(embedder.embed(&input), server);
        assert_eq!(vectors.unwrap(), vec![vec![1.0, 0.0], vec![0.0, 1.0]]);
    }

    #[tokio::test]
    async fn the_chat_script_does_not_touch_embeddings_and_refused_is_transport() {
        let fake = FakeOpenAi::start(vec![FakeReply::status(500)]).unwrap();
        // The script answers chat routes only: embeddings still succeed.
        let vectors = client(&fake, 64).embed(&texts(&["x"])).await.expect("embeddings");
        assert_eq!(vectors.iter().map(Vec::len).collect::<Vec<_>>(), vec![64]);
        let err = OpenAiEmbeddings::new("http://127.0.0.1:1/v1", None, "m", 4, Duration::from_secs(5))
            .unwrap()
            .embed(&texts(&["x"]))
            .await
            .unwrap_err();
        assert!(matches!(err, LlmError::Transport { .. }), "{err:?}");
    }
}
