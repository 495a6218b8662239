//! The query path through the library with the golden tiny model: prompt
//! layout, budget fallback, streaming, text mode, BM25 and index upkeep.

mod common;
mod store_support;

use std::path::{Path, PathBuf};

use c3::cascade::c3::C3Checkpoint;
use c3::cascade::c3::{C3Decoder, C3Encoder};
use c3::cascade::Compressor;
use c3::generate::{GenOptions, Sampling};
use c3::query::{self, AnswerModel, AskRequest, Mode, Reader};
use c3::retrieve::{index, ChunkIndex, Pick, SyncAction};
use c3::store::{ModelRecord, Store};
use c3::tokenize::special;
use candle_core::{DType, Device};

const RARE: &str = "zyxquaffle";

/// Three chunks; only the second mentions the rare word.
fn pieces() -> Vec<String> {
    vec![
        "The river ran past the old mill, and the miller counted sacks of flour. ".repeat(3),
        format!("In the garden a {RARE} sat quietly beneath the apple tree, singing. ").repeat(2),
        "Night fell over the village; lamps were lit in every window of the street. ".repeat(3),
    ]
}

fn ckpt(dir: &Path) -> C3Checkpoint {
    C3Checkpoint::open(dir).unwrap()
}

/// A store holding `pieces` as one document, encoded by the golden encoder.
fn golden_store(dir: &Path, pieces: &[String], source: &str) -> Store {
    let c = ckpt(&common::golden_model());
    let enc = C3Encoder::load(&c, DType::F32, &Device::Cpu).unwrap();
    let store = Store::open(dir).unwrap();
    store
        .bind_model(&ModelRecord {
            fingerprint: enc.fingerprint(),
            latent_len: enc.latent_len() as u32,
            hidden_size: enc.hidden_size() as u32,
        })
        .unwrap();
    add_doc(&store, &enc, pieces, source);
    store
}

fn add_doc(store: &Store, enc: &C3Encoder, pieces: &[String], source: &str) -> u64 {
    let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
    let lat = enc.compress(&refs).unwrap();
    store_support::commit_doc(store, source, &refs, &lat, |p| {
        enc.tokenizer().encode_text(p).unwrap().len() as u32
    })
    .id
}

fn decoder(dir: &Path) -> C3Decoder {
    C3Decoder::load(&ckpt(dir), DType::F32, &Device::Cpu).unwrap()
}

fn request(question: &str, pick: Pick, mode: Mode, max_new: usize) -> AskRequest {
    AskRequest {
        question: question.into(),
        docs: Vec::new(),
        pick,
        mode,
        gen: GenOptions {
            max_new_tokens: max_new,
            ..GenOptions::default()
        },
        progress: false,
    }
}

/// Is `needle` a contiguous run inside `hay`? Returns where.
fn find(hay: &[u32], needle: &[u32]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn three_chunk_prompt_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let store = golden_store(tmp.path(), &pieces(), "book");
    let dec = decoder(&common::golden_model());
    let q = "Who sat under the tree?";
    let p = query::prepare(
        &store,
        Reader::Latent(&dec),
        &request(q, Pick::All, Mode::Latent, 8),
    )
    .unwrap();
    let ids = &p.prompt.ids;
    // The spec's one-block prompt has <img> at 20 and latents at 21..52; each
    // further block adds `\n<img>` before its 32 slots.
    assert_eq!(p.prompt.latent_starts, vec![21, 56, 91]);
    let golden = &common::golden_cases()[0].decoder_prompt_ids;
    assert_eq!(
        ids[..21],
        golden[..21],
        "system frame up to the first <img>"
    );
    let nl = dec.tokenizer().encode_text("\n").unwrap();
    assert_eq!(nl.len(), 1);
    for &s in &p.prompt.latent_starts {
        assert_eq!(ids[s - 1], special::IMG_START);
        assert!(ids[s..s + 32].iter().all(|&i| i == special::IMG_PAD));
        assert_eq!(ids[s + 32], special::IMG_END);
    }
    assert_eq!(ids[53 + 1], nl[0]);
    assert_eq!(ids[88 + 1], nl[0]);
    assert_eq!(ids.iter().filter(|&&i| i == special::IMG_PAD).count(), 96);
    // After the last </img>: "\n{question}", then the closing frame.
    let tail = dec.tokenizer().encode_text(&format!("\n{q}")).unwrap();
    assert_eq!(ids[124..124 + tail.len()], tail[..]);
    let mut end = vec![special::IM_END, special::IM_START];
    end.extend(dec.tokenizer().encode_text("assistant\n").unwrap());
    assert_eq!(ids[124 + tail.len()..], end[..]);
    assert_eq!(
        p.chunks.iter().map(|c| c.chunk).collect::<Vec<_>>(),
        [0, 1, 2]
    );

    // The 96 latent rows of the decoder input are the chunks' projected latents.
    let lat: Vec<_> = (0..3)
        .map(|c| dec.project(&store.latent(0, c).unwrap()).unwrap())
        .collect();
    let x = dec.prompt_embeddings(&p.prompt, &lat).unwrap();
    for (b, &s) in p.prompt.latent_starts.iter().enumerate() {
        let rows = x
            .narrow(0, s, 32)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let want = lat[b].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(rows, want, "block {b}");
    }
    assert_eq!(p.prompt_tokens(), ids.len());
}

/// A copy of the golden model (by symlink) whose decoder has `positions`.
fn small_model(dir: &Path, positions: usize) -> PathBuf {
    let src = common::golden_model();
    let out = dir.join("small-model");
    std::fs::create_dir_all(&out).unwrap();
    for f in [
        "model.safetensors",
        "qwen.tiktoken",
        "llm1",
        "generation_config.json",
    ] {
        std::os::unix::fs::symlink(src.join(f), out.join(f)).unwrap();
    }
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    cfg["max_position_embeddings"] = positions.into();
    std::fs::write(out.join("config.json"), cfg.to_string()).unwrap();
    out
}

#[test]
fn budget_falls_back_to_best_scoring_chunks_that_fit() {
    let tmp = tempfile::tempdir().unwrap();
    let store = golden_store(&tmp.path().join("store"), &pieces(), "book");
    let model = small_model(tmp.path(), 200);
    let dec = decoder(&model);
    assert_eq!(dec.max_positions(), 200);
    let q = format!("Where did the {RARE} sit?");
    // 200 − 100 new tokens leaves 100 prompt positions: one block (34) fits
    // beside the frame, two do not.
    let req = request(&q, Pick::All, Mode::Latent, 100);
    let p = query::prepare(&store, Reader::Latent(&dec), &req).unwrap();
    assert_eq!(p.dropped, 2);
    assert_eq!(p.chunks.len(), 1);
    assert_eq!(
        p.chunks[0].chunk, 1,
        "the chunk with the rare word scores best"
    );
    assert!(p.chunks[0].score > 0.0);
    assert!(p.prompt_tokens() + 100 <= 200);
    let r = p.run(Reader::Latent(&dec), &req.gen, |_| true).unwrap();
    assert!(r.prompt_tokens + r.ids.len() <= 200);
    assert_eq!(r.latent_tokens, 32);

    // With room for everything nothing is dropped.
    let req = request(&q, Pick::All, Mode::Latent, 10);
    let p = query::prepare(&store, Reader::Latent(&dec), &req).unwrap();
    assert_eq!((p.chunks.len(), p.dropped), (3, 0));
    // No room at all is an error, not a panic.
    let req = request(&q, Pick::All, Mode::Latent, 190);
    assert!(query::prepare(&store, Reader::Latent(&dec), &req).is_err());
    let req = request(&q, Pick::All, Mode::Latent, 500);
    assert!(query::prepare(&store, Reader::Latent(&dec), &req).is_err());
}

#[test]
fn streamed_answer_equals_the_non_streamed_one() {
    let tmp = tempfile::tempdir().unwrap();
    let store = golden_store(tmp.path(), &pieces(), "book");
    let dec = decoder(&common::golden_model());
    for sampling in [
        Sampling::Greedy,
        Sampling::TopP {
            temperature: 1.5,
            top_p: 0.95,
            top_k: None,
            seed: 3,
        },
    ] {
        let mut req = request("What happened at night?", Pick::All, Mode::Latent, 24);
        req.gen.sampling = sampling;
        let mut streamed = String::new();
        let mut pieces = 0;
        let r = query::ask(&store, Reader::Latent(&dec), &req, |s| {
            streamed.push_str(s);
            pieces += 1;
            true
        })
        .unwrap();
        assert_eq!(streamed, r.answer);
        assert!(!r.ids.is_empty());
        // The same prompt generated without streaming.
        let p = query::prepare(&store, Reader::Latent(&dec), &req).unwrap();
        let lat: Vec<_> = p
            .chunks
            .iter()
            .map(|c| dec.project(&store.latent(c.doc, c.chunk).unwrap()).unwrap())
            .collect();
        let g = dec.generate(&p.prompt, &lat, &req.gen, |_| true).unwrap();
        assert_eq!(g.ids, r.ids);
        assert_eq!(g.text, streamed);
        assert_eq!(r.timings.generated_tokens, r.ids.len());
        assert!(r.timings.first_token_ms > 0.0);
    }
    // Stopping early from the callback is honoured.
    let req = request("What happened at night?", Pick::All, Mode::Latent, 24);
    let r = query::ask(&store, Reader::Latent(&dec), &req, |_| false).unwrap();
    assert!(r.ids.len() < 24);
}

#[test]
fn text_mode_puts_the_stored_texts_in_as_plain_text() {
    let tmp = tempfile::tempdir().unwrap();
    let mut p = pieces();
    // Control spellings in a document stay plain text.
    p[2] = "Lamps <|im_end|> and <img> tags are just words here. ".repeat(3);
    let store = golden_store(tmp.path(), &p, "book");
    let dec = decoder(&common::golden_model());
    let req = request("What is in the garden?", Pick::All, Mode::Text, 8);
    let prep = query::prepare(&store, Reader::Latent(&dec), &req).unwrap();
    let ids = &prep.prompt.ids.clone();
    let tok = dec.tokenizer();
    let mut at = 0;
    for (i, text) in p.iter().enumerate() {
        let want = tok.encode_text(text).unwrap();
        let pos = find(&ids[at..], &want).unwrap_or_else(|| panic!("chunk {i} text missing"));
        at += pos + want.len();
    }
    assert!(ids
        .iter()
        .all(|&i| i != special::IMG_START && i != special::IMG_PAD));
    // Only the frame's own two <|im_end|> (system, user).
    assert_eq!(ids.iter().filter(|&&i| i == special::IM_END).count(), 2);
    assert!(prep.prompt.latent_starts.is_empty());
    let mut streamed = String::new();
    let r = prep
        .run(Reader::Latent(&dec), &req.gen, |s| {
            streamed.push_str(s);
            true
        })
        .unwrap();
    assert_eq!(r.latent_tokens, 0);
    assert_eq!(streamed, r.answer);

    // A plain Qwen2 answer model (the golden encoder + the tiktoken file).
    let am = tmp.path().join("answer-model");
    std::fs::create_dir_all(&am).unwrap();
    let g = common::golden_model();
    std::fs::copy(g.join("llm1/config.json"), am.join("config.json")).unwrap();
    std::fs::copy(
        g.join("llm1/model.safetensors"),
        am.join("model.safetensors"),
    )
    .unwrap();
    std::fs::copy(g.join("qwen.tiktoken"), am.join("qwen.tiktoken")).unwrap();
    let m = AnswerModel::load(&am, DType::F32, &Device::Cpu).unwrap();
    let prep = query::prepare(&store, Reader::Plain(&m), &req).unwrap();
    assert_eq!(prep.prompt.ids, *ids, "same vocabulary, same prompt");
    let mut streamed = String::new();
    let r = prep
        .run(Reader::Plain(&m), &req.gen, |s| {
            streamed.push_str(s);
            true
        })
        .unwrap();
    assert_eq!(streamed, r.answer);
    assert!(!r.ids.is_empty());
    // A plain model cannot read latents.
    let latent = request("x", Pick::All, Mode::Latent, 8);
    assert!(query::prepare(&store, Reader::Plain(&m), &latent).is_err());
}

#[test]
fn bm25_ranks_the_rare_word_chunk_first() {
    let tmp = tempfile::tempdir().unwrap();
    let store = golden_store(tmp.path(), &pieces(), "book");
    let (ix, _) = ChunkIndex::open_synced(&store, false).unwrap();
    let hits = ix
        .search(&format!("the {RARE} in the garden"), &[], 10)
        .unwrap();
    assert_eq!((hits[0].doc, hits[0].chunk), (0, 1));
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    // Query syntax is not interpreted: these are just words.
    assert!(ix.search("AND OR \"( title:x", &[], 10).is_ok());
    assert!(ix.search("", &[], 10).unwrap().is_empty());

    let dec = decoder(&common::golden_model());
    let req = request(
        &format!("what is a {RARE}?"),
        Pick::TopK(1),
        Mode::Latent,
        4,
    );
    let p = query::prepare(&store, Reader::Latent(&dec), &req).unwrap();
    assert_eq!(p.chunks.len(), 1);
    assert_eq!(p.chunks[0].chunk, 1);
    // --doc restricts the search.
    let c = ckpt(&common::golden_model());
    let enc = C3Encoder::load(&c, DType::F32, &Device::Cpu).unwrap();
    let other = add_doc(
        &store,
        &enc,
        &[format!("Another {RARE} {RARE} {RARE} text.")],
        "other",
    );
    // Only the rare word: the short chunk that repeats it most wins.
    let mut req = request(&format!("{RARE}?"), Pick::TopK(1), Mode::Latent, 4);
    let p = query::prepare(&store, Reader::Latent(&dec), &req).unwrap();
    assert_eq!(
        p.chunks[0].doc, other,
        "the denser chunk wins over the whole store"
    );
    req.docs = vec![0];
    let p = query::prepare(&store, Reader::Latent(&dec), &req).unwrap();
    assert_eq!((p.chunks[0].doc, p.chunks[0].chunk), (0, 1));
    // Nothing matching is a clear error for --top-k.
    let req = request("qwertyuiop", Pick::TopK(2), Mode::Latent, 4);
    assert!(query::prepare(&store, Reader::Latent(&dec), &req).is_err());
}

#[test]
fn index_follows_the_store_and_is_rebuilt_when_deleted_or_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    let store = golden_store(tmp.path(), &pieces(), "book");
    let dir = tmp.path().join(index::INDEX_DIR);
    assert_eq!(index::check(&store).unwrap().status, "missing");
    let (_, a) = ChunkIndex::open_synced(&store, false).unwrap();
    assert!(matches!(a, SyncAction::Rebuilt { .. }));
    assert!(dir.is_dir());
    let (_, a) = ChunkIndex::open_synced(&store, false).unwrap();
    assert_eq!(a, SyncAction::Fresh);
    assert_eq!(index::check(&store).unwrap().status, "ok");

    // A new document makes it stale; syncing adds just that document.
    let c = ckpt(&common::golden_model());
    let enc = C3Encoder::load(&c, DType::F32, &Device::Cpu).unwrap();
    let id = add_doc(&store, &enc, &["A lonely wombat text.".to_string()], "two");
    assert_eq!(index::check(&store).unwrap().status, "stale");
    let (ix, a) = ChunkIndex::open_synced(&store, false).unwrap();
    assert_eq!(
        a,
        SyncAction::Updated {
            added: 1,
            removed: 0
        }
    );
    assert_eq!(ix.search("wombat", &[], 5).unwrap()[0].doc, id);
    drop(ix);
    store.remove(id).unwrap();
    let (ix, a) = ChunkIndex::open_synced(&store, false).unwrap();
    assert_eq!(
        a,
        SyncAction::Updated {
            added: 0,
            removed: 1
        }
    );
    assert!(ix.search("wombat", &[], 5).unwrap().is_empty());
    drop(ix);
    assert_eq!(index::check(&store).unwrap().status, "ok");

    // Deleted: rebuilt, with the same ranking.
    std::fs::remove_dir_all(&dir).unwrap();
    let (ix, a) = ChunkIndex::open_synced(&store, false).unwrap();
    assert_eq!(
        a,
        SyncAction::Rebuilt {
            reason: "missing".into()
        }
    );
    assert_eq!(ix.search(RARE, &[], 5).unwrap()[0].chunk, 1);
    drop(ix);

    // Corrupt: reported by check, rebuilt by the next sync, store untouched.
    std::fs::write(dir.join("meta.json"), b"{ not json").unwrap();
    let r = index::check(&store).unwrap();
    assert_eq!(r.status, "damaged");
    assert!(!r.problems.is_empty());
    let (ix, a) = ChunkIndex::open_synced(&store, false).unwrap();
    assert!(matches!(a, SyncAction::Rebuilt { .. }));
    assert_eq!(ix.search(RARE, &[], 5).unwrap()[0].chunk, 1);
    drop(ix);
    // Lost segment files (meta intact) are caught too.
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "idx" || x == "term") {
            std::fs::remove_file(p).unwrap();
        }
    }
    let (ix, a) = ChunkIndex::open_synced(&store, false).unwrap();
    assert!(matches!(a, SyncAction::Rebuilt { .. }), "{a:?}");
    assert_eq!(ix.search(RARE, &[], 5).unwrap()[0].chunk, 1);
    assert!(store.check().unwrap().ok());
    assert_eq!(store.documents().count(), 1);
}

#[test]
fn bad_requests_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let store = golden_store(&tmp.path().join("s"), &pieces(), "book");
    let dec = decoder(&common::golden_model());
    let mut req = request("  ", Pick::All, Mode::Latent, 4);
    assert!(query::ask(&store, Reader::Latent(&dec), &req, |_| true).is_err());
    req.question = "fine".into();
    req.docs = vec![42];
    let e = query::ask(&store, Reader::Latent(&dec), &req, |_| true).unwrap_err();
    assert!(
        matches!(&e, c3::Error::NoDocument { spec, .. } if spec == "42"),
        "{e}"
    );
    let e = query::expand_chunk(&store, &dec, 0, 3, &GenOptions::default(), |_| true).unwrap_err();
    assert!(
        matches!(
            e,
            c3::Error::NoChunk {
                doc: 0,
                chunk: 3,
                ..
            }
        ),
        "{e}"
    );
    assert!(query::expand_chunk(&store, &dec, 9, 0, &GenOptions::default(), |_| true).is_err());
    let empty = Store::open(&tmp.path().join("empty")).unwrap();
    let e = query::ask(
        &empty,
        Reader::Latent(&dec),
        &request("q", Pick::All, Mode::Latent, 4),
        |_| true,
    )
    .unwrap_err();
    assert!(e.to_string().contains("no documents"), "{e}");
}

#[test]
fn expand_streams_what_repeat_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let store = golden_store(tmp.path(), &pieces(), "book");
    let dec = decoder(&common::golden_model());
    let opts = GenOptions {
        max_new_tokens: 40,
        ..GenOptions::default()
    };
    let mut streamed = String::new();
    let g = query::expand_chunk(&store, &dec, 0, 2, &opts, |s| {
        streamed.push_str(s);
        true
    })
    .unwrap();
    assert_eq!(streamed, g.text);
    let direct = dec
        .repeat(&store.latent(0, 2).unwrap(), &opts, |_| true)
        .unwrap();
    assert_eq!(direct.ids, g.ids);
}
