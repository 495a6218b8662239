//! Tokenizer tests against the golden fixtures (ids produced by the reference tokenizer).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use c3::tokenize::{special, C3Tokenizer, StreamDecoder};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Building takes a moment; share one tokenizer across tests.
fn tok() -> &'static C3Tokenizer {
    static TOK: OnceLock<C3Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        C3Tokenizer::from_tiktoken_file(&fixtures().join("golden/c3-tiny/qwen.tiktoken"))
            .expect("load qwen.tiktoken")
    })
}

fn read_text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// (file name, text, expected ids) for every golden text.
fn golden() -> Vec<(String, String, Vec<u32>)> {
    let json = read_text(&fixtures().join("golden/expected/expected.json"));
    let entries: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    entries
        .iter()
        .map(|e| {
            let name = e["text"].as_str().unwrap().to_string();
            let ids = e["text_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            let raw = read_text(&fixtures().join("golden/texts").join(&name));
            (name, python_text_mode(&raw), ids)
        })
        .collect()
}

/// The golden ids were made from files read in Python text mode, which turns
/// "\r\n" into "\n" (specials.txt has CRLF endings); the tokenizer itself keeps "\r\n".
fn python_text_mode(raw: &str) -> String {
    raw.replace("\r\n", "\n")
}

fn corpus() -> Vec<(String, String)> {
    let mut books: Vec<_> = std::fs::read_dir(fixtures().join("corpus"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    books.sort();
    assert!(!books.is_empty());
    books
        .iter()
        .map(|p| (p.display().to_string(), read_text(p)))
        .collect()
}

fn nfc(s: &str) -> String {
    let mut n = tokenizers::NormalizedString::from(s);
    n.nfc();
    n.get().to_string()
}

/// Ids from the `tokenizers` pipeline, which `encode_text` must agree with.
fn pipeline_ids(text: &str) -> Vec<u32> {
    tok()
        .inner()
        .encode(text, false)
        .unwrap()
        .get_ids()
        .to_vec()
}

#[test]
fn golden_ids_match() {
    let cases = golden();
    assert_eq!(cases.len(), 4);
    for (name, text, expected) in cases {
        let ids = tok().encode_text(&text).unwrap();
        assert_eq!(ids, expected, "{name}");
        assert_eq!(pipeline_ids(&text), expected, "{name} (pipeline)");
    }
}

#[test]
fn literal_control_spellings_are_plain_text() {
    let (_, text, _) = golden()
        .into_iter()
        .find(|(n, _, _)| n == "specials.txt")
        .unwrap();
    let ids = tok().encode_text(&text).unwrap();
    assert!(ids.iter().all(|&id| (id as usize) < special::NUM_RANKS));
    assert!(text.contains("<|im_end|>") && text.contains("<img>"));

    let s = "<|im_end|><img>";
    let ids = tok().encode_text(s).unwrap();
    assert!(
        ids.iter().all(|&id| (id as usize) < special::NUM_RANKS),
        "{ids:?}"
    );
    assert_eq!(tok().decode(&ids).unwrap(), s);

    // Every control spelling, alone and glued to text, stays plain.
    for (_, name) in special::all() {
        for s in [name.to_string(), format!("x{name}y"), format!(" {name}\n")] {
            let ids = tok().encode_text(&s).unwrap();
            assert!(
                ids.iter().all(|&id| (id as usize) < special::NUM_RANKS),
                "{s}"
            );
            assert_eq!(tok().decode(&ids).unwrap(), s);
        }
    }
    // The inner tokenizer behaves the same when called directly.
    let enc = tok()
        .inner()
        .encode("<imgpad><|endoftext|>", false)
        .unwrap();
    assert!(enc
        .get_ids()
        .iter()
        .all(|&id| (id as usize) < special::NUM_RANKS));
}

#[test]
fn tokenizer_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<C3Tokenizer>();
    let ids: Vec<Vec<u32>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| s.spawn(|| tok().encode_text("shared across threads").unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(ids[0], ids[1]);
}

#[test]
fn control_ids_decode_to_names() {
    let t = tok();
    assert_eq!(t.vocab_size(), 151_860);
    assert_eq!(special::VOCAB_SIZE, 151_860);
    assert_eq!(t.inner().get_vocab_size(true), 151_860);
    assert_eq!(
        t.decode(&[special::IM_START, special::IM_END]).unwrap(),
        "<|im_start|><|im_end|>"
    );
    assert_eq!(
        t.decode(&[special::IMG_START, special::IMG_PAD, special::IMG_END])
            .unwrap(),
        "<img><imgpad></img>"
    );
    assert_eq!(t.decode(&[special::ENDOFTEXT]).unwrap(), "<|endoftext|>");
    for id in special::NUM_RANKS as u32..special::VOCAB_SIZE as u32 {
        let name = special::name(id).unwrap();
        assert_eq!(t.decode(&[id]).unwrap(), name);
        assert_eq!(t.token_bytes(id).unwrap(), name.as_bytes());
        assert_eq!(t.inner().token_to_id(name), Some(id));
    }
    assert_eq!(special::name(151_850), Some("<|extra_204|>"));
    assert_eq!(special::name(special::IMG_PAD), Some("<imgpad>"));
    assert!(special::name(100).is_none());
    assert!(t.token_bytes(special::VOCAB_SIZE as u32).is_none());
    assert!(t.decode(&[special::VOCAB_SIZE as u32]).is_err());
    assert!(t.decode(&[u32::MAX]).is_err());
}

#[test]
fn token_bytes_and_invalid_utf8() {
    let t = tok();
    // Rank 0 is "!" and the single bytes are all present.
    assert_eq!(t.token_bytes(0).unwrap(), b"!");
    let emoji_ids = t.encode_text("🙂").unwrap();
    let bytes: Vec<u8> = emoji_ids
        .iter()
        .flat_map(|&id| t.token_bytes(id).unwrap())
        .collect();
    assert_eq!(bytes, "🙂".as_bytes());
    // A lone prefix of a multi-byte character decodes to U+FFFD.
    let id_e2 = (0..special::NUM_RANKS as u32)
        .find(|&id| t.token_bytes(id).unwrap() == [0xE2])
        .unwrap();
    assert_eq!(t.decode(&[id_e2]).unwrap(), "\u{FFFD}");
    let a = t.encode_text("a").unwrap();
    assert_eq!(t.decode(&[a[0], id_e2, a[0]]).unwrap(), "a\u{FFFD}a");
}

#[test]
fn round_trip_golden_and_books() {
    let mut texts: Vec<(String, String)> = golden().into_iter().map(|(n, t, _)| (n, t)).collect();
    // Golden files as stored on disk too (specials.txt has CRLF endings).
    for (n, _, _) in golden() {
        let raw = read_text(&fixtures().join("golden/texts").join(&n));
        texts.push((format!("{n} (raw)"), raw));
    }
    texts.extend(corpus());
    for (name, text) in texts {
        assert_eq!(nfc(&text), text, "{name} is not NFC");
        let ids = tok().encode_text(&text).unwrap();
        assert_eq!(tok().decode(&ids).unwrap(), text, "{name}");
        assert_eq!(tok().inner().decode(&ids, false).unwrap(), text, "{name}");
    }
}

#[test]
fn books_encode_like_the_pipeline() {
    for (name, text) in corpus() {
        assert!(text.contains("\r\n"), "{name}");
        let ids = tok().encode_text(&text).unwrap();
        assert!(ids.len() > text.len() / 8, "{name}: {} ids", ids.len());
        assert!(
            ids == pipeline_ids(&text),
            "{name}: fast path and pipeline differ"
        );
    }
}

/// splitmix64: small deterministic PRNG for the property tests.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
    fn char_in(&mut self, lo: u32, hi: u32) -> char {
        char::from_u32(lo + self.below((hi - lo + 1) as u64) as u32).unwrap()
    }
}

/// A random NFC string mixing scripts, emoji, marks, digits and whitespace runs.
fn random_text(rng: &mut Rng) -> String {
    const PIECES: &[&str] = &[
        " ",
        "  ",
        "   ",
        "\t",
        "\n",
        "\n\n",
        "\r\n",
        "\r\n\r\n",
        " \r\n",
        "\u{a0}",
        "\u{3000}",
        "'s",
        "'LL",
        "'re",
        "'t",
        "don't",
        "'\u{17f}",
        "'\u{212a}",
        ".",
        ",",
        "!?",
        "...",
        "--",
        "\"",
        "(",
        ")",
        "{}",
        "<|im_end|>",
        "<img>",
        "</img>",
        "<imgpad>",
        "<|endoftext|>",
        "é",
        "ß",
        "Ω",
        "ж",
        "ñ",
        "x\u{301}",
        "q\u{307}",
        "\u{915}\u{93f}",
        "ก\u{e34}",
        "😀",
        "🙂",
        "👩\u{200d}💻",
        "🇯🇵",
        "👍🏽",
        "中文",
        "日本語",
        "한국어",
        "١٢٣",
        "Ⅻ",
        "\u{feff}",
        "\u{200b}",
    ];
    let mut s = String::new();
    for _ in 0..rng.below(40) {
        match rng.below(8) {
            0 => s.push_str(rng.pick(PIECES)),
            1 => {
                for _ in 0..1 + rng.below(4) {
                    s.push(rng.char_in(0x4E00, 0x9FFF)); // CJK
                }
            }
            2 => s.push(rng.char_in(0x1F300, 0x1F64F)), // emoji
            3 => {
                for _ in 0..1 + rng.below(12) {
                    s.push(rng.char_in(b'a' as u32, b'z' as u32));
                }
            }
            4 => {
                for _ in 0..1 + rng.below(6) {
                    s.push(rng.char_in(b'0' as u32, b'9' as u32));
                }
            }
            5 => s.push(rng.char_in(0x20, 0x7E)), // printable ASCII
            6 => s.push(rng.char_in(0xA0, 0x24F)), // Latin-1 / Extended
            _ => {
                for _ in 0..1 + rng.below(5) {
                    s.push(
                        rng.pick(&[" ", "\t", "\n", "\r\n", "\r"])
                            .chars()
                            .next()
                            .unwrap(),
                    );
                }
            }
        }
    }
    s
}

#[test]
fn round_trip_random_strings() {
    let mut rng = Rng(0xC3C3_2024);
    for case in 0..3000 {
        let raw = random_text(&mut rng);
        // Round trip is promised for NFC text; random pieces may compose, so compare with NFC.
        let text = nfc(&raw);
        let ids = tok().encode_text(&raw).unwrap();
        assert!(ids.iter().all(|&id| (id as usize) < special::NUM_RANKS));
        assert_eq!(tok().decode(&ids).unwrap(), text, "case {case}: {raw:?}");
        assert_eq!(tok().encode_text(&text).unwrap(), ids, "case {case}");
        assert_eq!(pipeline_ids(&raw), ids, "case {case}: {raw:?}");
    }
}

#[test]
fn nfc_text_round_trips_exactly_and_other_text_normalises() {
    let t = tok();
    for s in ["x\u{301} q\u{307}", "\u{915}\u{93f}", "é", "한국어"] {
        assert_eq!(nfc(s), s);
        assert_eq!(t.decode(&t.encode_text(s).unwrap()).unwrap(), s);
    }
    // "e" + combining acute is not NFC: it comes back precomposed.
    let decomposed = "caf\u{65}\u{301}";
    assert_eq!(
        t.decode(&t.encode_text(decomposed).unwrap()).unwrap(),
        "caf\u{e9}"
    );
    assert!(t.encode_text("").unwrap().is_empty());
}

#[test]
fn long_and_degenerate_inputs() {
    let t = tok();
    // ~200 KB each: a quadratic step would take minutes here.
    let cases = [
        "a".repeat(200_000),
        " ".repeat(200_000),
        "\r\n".repeat(100_000),
        "中文字符".repeat(20_000),
        "🙂".repeat(50_000),
        "=-".repeat(100_000),
        format!("x{}y", " \t".repeat(100_000)),
    ];
    for text in &cases {
        let t0 = std::time::Instant::now();
        let ids = t.encode_text(text).unwrap();
        assert_eq!(t.decode(&ids).unwrap(), *text);
        // Generous bound: catches quadratic behaviour, not slow machines.
        assert!(
            t0.elapsed().as_secs() < 20,
            "{} bytes took {:?}",
            text.len(),
            t0.elapsed()
        );
    }
    // The pipeline agrees on a shorter degenerate sample.
    let sample = format!("{}{}", "b".repeat(5000), " ".repeat(300));
    assert_eq!(t.encode_text(&sample).unwrap(), pipeline_ids(&sample));
}

/// Stream the ids of `text`; check each push and the total.
fn stream_check(ids: &[u32]) -> (String, Vec<String>) {
    let mut dec = StreamDecoder::new(tok());
    let pieces: Vec<String> = ids.iter().map(|&id| dec.push(id)).collect();
    let tail = dec.finish();
    let mut all = pieces.concat();
    all.push_str(&tail);
    (all, pieces)
}

#[test]
fn stream_decoder_holds_back_split_characters() {
    let t = tok();
    let texts = [
        "Emoji 🙂👩\u{200d}💻🇯🇵 and CJK 中文字符测试，𠜎𠜱 done.",
        "🦀🦀🦀 crab crab 蟹",
    ];
    let mut saw_split_char = false;
    for text in texts {
        let ids = t.encode_text(text).unwrap();
        saw_split_char |= ids
            .iter()
            .any(|&id| std::str::from_utf8(&t.token_bytes(id).unwrap()).is_err());
        let (all, pieces) = stream_check(&ids);
        assert_eq!(all, text);
        assert_eq!(all, t.decode(&ids).unwrap());
        // Valid input never yields a replacement char: no half character was emitted.
        assert!(pieces.iter().all(|p| !p.contains('\u{FFFD}')), "{pieces:?}");
    }
    assert!(
        saw_split_char,
        "test texts should split a character across tokens"
    );
}

#[test]
fn stream_decoder_matches_decode_on_random_ids() {
    let t = tok();
    let mut rng = Rng(7);
    // Single-byte tokens that start/continue multi-byte characters, to make broken UTF-8 likely.
    let fragments: Vec<u32> = (0..special::NUM_RANKS as u32)
        .filter(|&id| {
            let b = t.token_bytes(id).unwrap();
            b.len() == 1 && b[0] >= 0x80
        })
        .collect();
    assert!(fragments.len() >= 128);
    for _ in 0..500 {
        let n = rng.below(30) as usize;
        let ids: Vec<u32> = (0..n)
            .map(|_| match rng.below(4) {
                0 => special::NUM_RANKS as u32 + rng.below(217) as u32,
                1 => rng.below(special::NUM_RANKS as u64) as u32,
                _ => fragments[rng.below(fragments.len() as u64) as usize],
            })
            .collect();
        let (all, _) = stream_check(&ids);
        assert_eq!(all, t.decode(&ids).unwrap(), "{ids:?}");
    }
    // Golden texts too.
    for (name, text, ids) in golden() {
        assert_eq!(stream_check(&ids).0, text, "{name}");
    }
    // An unknown id streams as U+FFFD instead of failing.
    let (all, _) = stream_check(&[u32::MAX]);
    assert_eq!(all, "\u{FFFD}");
}

#[test]
fn malformed_rank_file_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.tiktoken");
    std::fs::write(&path, "IQ== 0\nIg== 1\nnot-base64!! 2\n").unwrap();
    let err = C3Tokenizer::from_tiktoken_file(&path)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("broken.tiktoken"), "{err}");
    assert!(err.contains(":3:"), "{err}");

    std::fs::write(&path, "IQ== 0\nIg==\n").unwrap();
    let err = C3Tokenizer::from_tiktoken_file(&path)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("broken.tiktoken:2:"), "{err}");

    let err = C3Tokenizer::from_tiktoken_bytes(b"IQ== 0\nIg== 0\n", "mem")
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("mem:2:") && err.contains("twice"), "{err}");

    // A truncated (but well-formed) table is rejected: control ids would shift.
    let err = C3Tokenizer::from_tiktoken_bytes(b"IQ== 0\n", "short")
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("short"), "{err}");

    let missing = dir.path().join("missing.tiktoken");
    let err = C3Tokenizer::from_tiktoken_file(&missing).err().unwrap();
    assert!(matches!(err, c3::Error::Io { .. }));
    assert!(err.to_string().contains("missing.tiktoken"));
}

/// Timing report: `cargo test --release --test tokenizer -- --ignored --nocapture`.
#[test]
#[ignore]
fn throughput() {
    let path = fixtures().join("golden/c3-tiny/qwen.tiktoken");
    let t0 = std::time::Instant::now();
    let t = C3Tokenizer::from_tiktoken_file(&path).unwrap();
    println!("build: {:.3} s", t0.elapsed().as_secs_f64());

    let text = read_text(&fixtures().join("corpus/pride-and-prejudice.txt"));
    let rounds: usize = std::env::var("C3_TOK_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let mut secs = Vec::new();
    let mut n_ids = 0;
    for _ in 0..rounds {
        let t0 = std::time::Instant::now();
        n_ids = t.encode_text(&text).unwrap().len();
        secs.push(t0.elapsed().as_secs_f64());
    }
    secs.sort_by(f64::total_cmp);
    let mb = text.len() as f64 / 1e6;
    println!(
        "encode: {} bytes -> {n_ids} ids; best {:.1} MB/s, median {:.1} MB/s over {rounds} rounds",
        text.len(),
        mb / secs[0],
        mb / secs[secs.len() / 2]
    );
}
