//! The prefix cache (issue 22) through the library, on the golden tiny
//! models of both families: answers with the cache equal answers without it
//! (a miss, a full hit, a longest-prefix hit), every key component changed
//! gives a miss, a damaged block is found, removed and recomputed, and the
//! directory stays under its cap.
//!
//! "Equal" is the rule: generated ids equal up to the first near tie
//! of the uncached run (its top-two logit gap below 1e-3 there), and the
//! first step's logits within 1e-4 of the uncached ones, relative to their
//! largest magnitude.
mod common;
mod lclm_support;

use std::path::{Path, PathBuf};

use c3::cascade::{decoder_files, AnyDecoder, AnyEncoder, Family};
use c3::chunk::Chunker;
use c3::generate::GenOptions;
use c3::ingest::{self, IngestOptions, Input};
use c3::kvcache::digest::files_digest;
use c3::kvcache::{CacheOptions, Disk, KvDtype, KvShape, ModelKey, PrefixCache};
use c3::model::Quant;
use c3::query::{self, AskRequest, AskResult, Mode, Reader, WarmRequest};
use c3::retrieve::Pick;
use c3::store::Store;
use candle_core::{DType, Device, IndexOp, Tensor};

/// Chunks of at most this many tokens: several per document.
const CHUNK_TOKENS: usize = 150;
const NEW_TOKENS: usize = 12;

fn model_dir(f: Family) -> PathBuf {
    match f {
        Family::C3 => common::golden_model(),
        Family::Lclm => lclm_support::lclm_model(4),
    }
}

/// A store of three documents (consecutive pieces of the fixture book)
/// ingested by `f`'s tiny model, and its decoder.
struct Fixture {
    tmp: tempfile::TempDir,
    family: Family,
    store: Store,
    dec: AnyDecoder,
    fingerprint: String,
    docs: Vec<u64>,
}

impl Fixture {
    fn new(f: Family) -> Self {
        Self::with_texts(f, &[])
    }

    /// With `edit` applied to the documents' texts before ingest.
    fn with_texts(f: Family, edits: &[(usize, &str)]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let texts = tmp.path().join("texts");
        std::fs::create_dir_all(&texts).unwrap();
        common::book_parts(&texts, "part", 3, 1500, 400);
        for &(i, extra) in edits {
            let p = texts.join(format!("part{i:02}.txt"));
            let t = std::fs::read_to_string(&p).unwrap();
            std::fs::write(&p, format!("{extra}{t}")).unwrap();
        }
        let store = Store::open(&tmp.path().join("store")).unwrap();
        let enc = AnyEncoder::load(&model_dir(f), DType::F32, &Device::Cpu, None).unwrap();
        let chunker = Chunker::new(enc.tokenizer(), CHUNK_TOKENS).unwrap();
        let inputs: Vec<Input> = (0..3)
            .map(|i| Input::Path(texts.join(format!("part{i:02}.txt"))))
            .collect();
        let opts = IngestOptions {
            prune: false,
            batch_size: 4,
            progress: false,
            section_bytes: 8 << 20,
            shard: None,
            ..IngestOptions::default()
        };
        for i in &inputs {
            // One call per file: ids in file order.
            let r = ingest::ingest(
                &store,
                enc.compressor(),
                &chunker,
                std::slice::from_ref(i),
                &opts,
            )
            .unwrap();
            assert!(r.ok());
        }
        drop(enc);
        let (dec, fingerprint) = load(f, None);
        let mut docs: Vec<u64> = store.documents().map(|d| d.unwrap().id).collect();
        docs.sort();
        assert_eq!(docs.len(), 3);
        Fixture {
            tmp,
            family: f,
            store,
            dec,
            fingerprint,
            docs,
        }
    }

    fn reader(&self) -> Reader<'_> {
        Reader::Latent(self.dec.reader())
    }

    fn cache_dir(&self) -> PathBuf {
        self.tmp.path().join("kv")
    }

    /// The cache of this fixture's decoder over `dir`, capped at `cap`.
    fn cache(&self, dec: &AnyDecoder, dir: &Path, cap: u64, kv: KvDtype) -> PrefixCache {
        let files = decoder_files(&model_dir(self.family)).unwrap();
        let digest = files_digest(&files, None).unwrap();
        let r = dec.reader();
        PrefixCache::open(
            &options(dir, cap, kv),
            r.llm(),
            &self.fingerprint,
            &digest,
            r.frame_version(),
        )
        .unwrap()
        .unwrap()
    }

    fn ask(&self, req: &AskRequest, cache: Option<&PrefixCache>) -> AskResult {
        self.ask_with(&self.dec, req, cache)
    }

    fn ask_with(
        &self,
        dec: &AnyDecoder,
        req: &AskRequest,
        cache: Option<&PrefixCache>,
    ) -> AskResult {
        let reader = Reader::Latent(dec.reader());
        query::prepare_with(&self.store, reader, req, cache)
            .unwrap()
            .run(reader, &req.gen, |_| true)
            .unwrap()
    }

    fn first_logits(
        &self,
        dec: &AnyDecoder,
        req: &AskRequest,
        cache: Option<&PrefixCache>,
    ) -> Vec<f32> {
        let reader = Reader::Latent(dec.reader());
        query::prepare_with(&self.store, reader, req, cache)
            .unwrap()
            .first_logits(reader)
            .unwrap()
    }

    /// The positions a prompt resumes when every block is stored: its
    /// memory part, but at least the decoder's prefill floor short of the
    /// prompt's end.
    fn resumable(&self, dec: &AnyDecoder, req: &AskRequest) -> usize {
        let p = query::prepare(&self.store, Reader::Latent(dec.reader()), req).unwrap();
        let floor = dec.reader().llm().prefill_rows_floor();
        let len = p.prompt.ids.len();
        let mem = p.prompt.segments().last().unwrap().end;
        mem.min(len.saturating_sub(floor))
    }

    fn cached(&self, req: &AskRequest, cache: &PrefixCache) -> usize {
        query::prepare_with(&self.store, self.reader(), req, Some(cache))
            .unwrap()
            .cached_positions()
    }

    /// Top-two gap of the uncached run's logits at each generated step
    /// (teacher-forced along its own ids, one forward).
    fn gaps(&self, dec: &AnyDecoder, req: &AskRequest, ids: &[u32]) -> Vec<f32> {
        let reader = Reader::Latent(dec.reader());
        let p = query::prepare(&self.store, reader, req).unwrap();
        let d = dec.reader();
        let llm = d.llm();
        let lat: Vec<Tensor> = p
            .chunks
            .iter()
            .map(|c| {
                d.adapt(&self.store.latent(c.doc, c.chunk).unwrap())
                    .unwrap()
            })
            .collect();
        let mut parts = vec![p.prompt.embeddings(llm, &lat).unwrap()];
        if ids.len() > 1 {
            parts.push(llm.embed(&ids[..ids.len() - 1]).unwrap());
        }
        let x = Tensor::cat(&parts, 0).unwrap().unsqueeze(0).unwrap();
        let h = llm.forward(&x, None).unwrap();
        let n = p.prompt.ids.len();
        (0..ids.len())
            .map(|j| {
                let row = h.i((0, n - 1 + j)).unwrap().unsqueeze(0).unwrap();
                let mut l = llm
                    .logits(&row)
                    .unwrap()
                    .squeeze(0)
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap();
                l.sort_by(|a, b| b.partial_cmp(a).unwrap());
                l[0] - l[1]
            })
            .collect()
    }
}

fn load(f: Family, quant: Option<Quant>) -> (AnyDecoder, String) {
    AnyDecoder::load(&model_dir(f), DType::F32, &Device::Cpu, quant).unwrap()
}

fn options(dir: &Path, cap: u64, kv: KvDtype) -> CacheOptions {
    CacheOptions {
        dir: dir.to_path_buf(),
        max_bytes: cap,
        memory_bytes: 0,
        kv_dtype: kv,
    }
}

/// A greedy latent ask over `docs` with neither n-gram bans nor a
/// repetition penalty, so a near tie is read off the raw logits.
fn request(question: &str, docs: &[u64]) -> AskRequest {
    AskRequest {
        question: question.into(),
        docs: docs.to_vec(),
        pick: Pick::All,
        mode: Mode::Latent,
        gen: GenOptions {
            max_new_tokens: NEW_TOKENS,
            no_repeat_ngram: 0,
            repetition_penalty: Some(1.0),
            ..GenOptions::default()
        },
        progress: false,
    }
}

fn rel_diff(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
    common::max_abs_diff(a, b) / scale
}

/// The equality: ids equal up to the uncached run's first near tie.
fn assert_same_answer(
    fx: &Fixture,
    dec: &AnyDecoder,
    req: &AskRequest,
    with: &AskResult,
    without: &AskResult,
    what: &str,
) {
    if with.ids == without.ids {
        return;
    }
    let j = with
        .ids
        .iter()
        .zip(&without.ids)
        .take_while(|(a, b)| a == b)
        .count();
    let gaps = fx.gaps(dec, req, &without.ids);
    assert!(
        j < gaps.len() && gaps[j] < 1e-3,
        "{what}: ids differ at step {j} where the uncached top-two gap is {:?}\nwith    {:?}\nwithout {:?}",
        gaps.get(j),
        with.ids,
        without.ids
    );
}

/// Miss, full hit and longest-prefix hit, each against the uncached answer.
fn cached_answers_equal_uncached(f: Family, quant: Option<Quant>) {
    let fx = Fixture::new(f);
    let (dec, _) = load(f, quant);
    let cache = fx.cache(&dec, &fx.cache_dir(), 1 << 30, KvDtype::Compute);
    let two = &fx.docs[..2];
    let label = format!("{f} {quant:?}");

    // A miss: nothing stored yet; the answer stores every block.
    let q1 = request("Who is Alice and where does she go?", two);
    let l_miss = fx.first_logits(&dec, &q1, Some(&cache));
    let with = fx.ask_with(&dec, &q1, Some(&cache));
    let without = fx.ask_with(&dec, &q1, None);
    let u = with.kv_cache.clone().unwrap();
    assert_eq!((with.cached_positions, u.blocks_hit), (0, 0), "{label}");
    assert_eq!(u.blocks_written, u.blocks, "{label}: {u:?}");
    assert_eq!(with.prefilled_positions, with.prompt_tokens);
    assert_same_answer(&fx, &dec, &q1, &with, &without, &format!("{label} miss"));
    let l_plain = fx.first_logits(&dec, &q1, None);
    assert!(rel_diff(&l_miss, &l_plain) <= 1e-4, "{label} miss logits");

    // A full hit: another question over the same documents.
    let q2 = request("What did the Rabbit say?", two);
    let with = fx.ask_with(&dec, &q2, Some(&cache));
    let without = fx.ask_with(&dec, &q2, None);
    let u = with.kv_cache.clone().unwrap();
    assert_eq!(
        with.cached_positions,
        fx.resumable(&dec, &q2),
        "{label} full hit: {u:?}"
    );
    assert!(with.cached_positions > 0 && u.blocks_written == 0, "{u:?}");
    assert_eq!(u.blocks_hit, u.blocks, "{label} full hit: {u:?}");
    assert_eq!(
        with.cached_positions + with.prefilled_positions,
        with.prompt_tokens
    );
    assert_same_answer(
        &fx,
        &dec,
        &q2,
        &with,
        &without,
        &format!("{label} full hit"),
    );
    let d = rel_diff(
        &fx.first_logits(&dec, &q2, Some(&cache)),
        &fx.first_logits(&dec, &q2, None),
    );
    eprintln!("{label}: full hit, first-step logits within {d:.2e} (relative) of a full prefill");
    assert!(d <= 1e-4, "{label} full hit logits {d}");
    let two_blocks = query::prepare(&fx.store, Reader::Latent(dec.reader()), &q2)
        .unwrap()
        .prompt
        .segments()
        .last()
        .unwrap()
        .end;

    // The longest prefix: a third document after the two.
    let q3 = request("What did the Rabbit say?", &fx.docs);
    let with = fx.ask_with(&dec, &q3, Some(&cache));
    let without = fx.ask_with(&dec, &q3, None);
    let u = with.kv_cache.clone().unwrap();
    // Every block of the first two documents (the tail is long enough).
    assert_eq!(with.cached_positions, two_blocks, "{label} partial: {u:?}");
    assert!(u.blocks_hit > 0 && u.blocks_written == u.blocks - u.blocks_hit);
    assert_same_answer(
        &fx,
        &dec,
        &q3,
        &with,
        &without,
        &format!("{label} partial hit"),
    );
    // Now stored: the three-document prompt is a full hit, and its first
    // logits are checked against the uncached ones.
    let d = rel_diff(
        &fx.first_logits(&dec, &q3, Some(&cache)),
        &fx.first_logits(&dec, &q3, None),
    );
    assert!(d <= 1e-4, "{label} after the partial hit: logits {d}");
    assert_eq!(fx.cached(&q3, &cache), fx.resumable(&dec, &q3));
    assert!(fx.resumable(&dec, &q3) > two_blocks);
}

#[test]
fn c3_answers_with_the_cache_equal_answers_without_it() {
    cached_answers_equal_uncached(Family::C3, None);
}

#[test]
fn lclm_answers_with_the_cache_equal_answers_without_it() {
    cached_answers_equal_uncached(Family::Lclm, None);
}

/// A quantized decoder on the CPU multiplies fewer than 32 rows through
/// another product than a whole prefill; the cache leaves at least 32
/// positions to prefill, so its answers still equal the uncached ones.
#[test]
fn a_q8_0_decoder_answers_with_the_cache_as_without_it() {
    cached_answers_equal_uncached(Family::C3, Some(Quant::Q8_0));
}

/// One change to a model key.
type Edit = fn(&mut ModelKey);

/// Every component of the model key changed in turn is a miss; the same key
/// again is a hit (so the misses are not the cache being empty).
#[test]
fn every_key_component_changed_is_a_miss() {
    for f in [Family::C3, Family::Lclm] {
        let fx = Fixture::new(f);
        let dir = fx.cache_dir();
        let base = fx.cache(&fx.dec, &dir, 1 << 30, KvDtype::Compute);
        let req = WarmRequest {
            docs: vec![fx.docs[0]],
            max_new_tokens: NEW_TOKENS,
        };
        query::warm(&fx.store, fx.dec.reader(), &base, &req, &mut |_, _| true).unwrap();
        let q = request("Who is Alice?", &fx.docs[..1]);
        assert!(fx.cached(&q, &base) > 0, "{f}: the warmed prefix is a hit");
        let key = base.model_key().clone();
        let shape = KvShape::of(fx.dec.reader().llm());
        let edits: [(&str, Edit); 8] = [
            ("latents model", |k| k.latents.push('x')),
            ("decoder files", |k| k.decoder.push('x')),
            ("quantization", |k| k.quant = "q8_0".into()),
            ("compute dtype", |k| k.dtype = "bf16".into()),
            ("stored dtype", |k| k.kv_dtype = "f16".into()),
            ("device class", |k| k.device = "cuda".into()),
            ("prompt frame", |k| k.frame.push_str("+1")),
            ("c3 version", |k| k.program.push('x')),
        ];
        for (what, edit) in edits {
            let mut k = key.clone();
            edit(&mut k);
            let c =
                PrefixCache::with_key(&options(&dir, 1 << 30, KvDtype::Compute), k, shape.clone())
                    .unwrap()
                    .unwrap();
            assert_eq!(fx.cached(&q, &c), 0, "{f}: changed {what} still hits");
        }
        let same = PrefixCache::with_key(&options(&dir, 1 << 30, KvDtype::Compute), key, shape)
            .unwrap()
            .unwrap();
        assert!(fx.cached(&q, &same) > 0);

        // The same, from the real sources of each component.
        // Stored dtype: --kv-cache-dtype f16.
        let f16 = fx.cache(&fx.dec, &dir, 1 << 30, KvDtype::F16);
        assert_eq!(fx.cached(&q, &f16), 0, "{f}: f16 storage");
        // Compute dtype: the decoder loaded in bf16.
        let (bf16, _) = AnyDecoder::load(&model_dir(f), DType::BF16, &Device::Cpu, None).unwrap();
        let c = fx.cache(&bf16, &dir, 1 << 30, KvDtype::Compute);
        let reader = Reader::Latent(bf16.reader());
        let p = query::prepare_with(&fx.store, reader, &q, Some(&c)).unwrap();
        assert_eq!(p.cached_positions(), 0, "{f}: bf16 decoder");
        // Chunk text: the same documents with a word added to the first.
        let other = Fixture::with_texts(f, &[(0, "Once more: ")]);
        let c = other.cache(&other.dec, &dir, 1 << 30, KvDtype::Compute);
        assert_eq!(other.cached(&q, &c), 0, "{f}: another chunk text");
        // The prompt frame's ids: the blocks of document 0 after another
        // document's are not the blocks of document 0 alone.
        let q_after = request("Who is Alice?", &fx.docs[1..]);
        let warmed = fx.cached(&q_after, &base);
        assert_eq!(warmed, 0, "{f}: document 1 first was never stored");
    }
    // Quantization: the C3 decoder in q8_0 (LCLM's 40-wide tiny rows do
    // not fit q8_0's 32-value blocks evenly).
    let fx = Fixture::new(Family::C3);
    let dir = fx.cache_dir();
    let base = fx.cache(&fx.dec, &dir, 1 << 30, KvDtype::Compute);
    let req = WarmRequest {
        docs: vec![fx.docs[0]],
        max_new_tokens: NEW_TOKENS,
    };
    query::warm(&fx.store, fx.dec.reader(), &base, &req, &mut |_, _| true).unwrap();
    let q = request("Who is Alice?", &fx.docs[..1]);
    let (q8, _) = load(Family::C3, Some(Quant::Q8_0));
    let c = fx.cache(&q8, &dir, 1 << 30, KvDtype::Compute);
    let reader = Reader::Latent(q8.reader());
    let p = query::prepare_with(&fx.store, reader, &q, Some(&c)).unwrap();
    assert_eq!(p.cached_positions(), 0, "q8_0 decoder");
    // Decoder weights: one byte of the weights file changed in a copy.
    let copy = fx.tmp.path().join("model-copy");
    std::fs::create_dir_all(&copy).unwrap();
    let src = model_dir(Family::C3);
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        if e.path().is_file() {
            std::fs::copy(e.path(), copy.join(e.file_name())).unwrap();
        } else {
            std::os::unix::fs::symlink(e.path(), copy.join(e.file_name())).unwrap();
        }
    }
    let w = copy.join("model.safetensors");
    let mut bytes = std::fs::read(&w).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&w, bytes).unwrap();
    let a = files_digest(&decoder_files(&src).unwrap(), None).unwrap();
    let b = files_digest(&decoder_files(&copy).unwrap(), None).unwrap();
    assert_ne!(a, b, "a changed weight byte changes the decoder's digest");
}

/// The block files of `dir`, by first position.
fn blocks(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "kvb"))
        .collect();
    v.sort();
    v
}

/// A truncated block and a block with one flipped byte: each is found by
/// its checks, removed, recomputed (the file is sound again) and the answer
/// equals the uncached one.
#[test]
fn a_damaged_block_is_removed_recomputed_and_never_used() {
    for f in [Family::C3, Family::Lclm] {
        let fx = Fixture::new(f);
        let dir = fx.cache_dir();
        let cache = fx.cache(&fx.dec, &dir, 1 << 30, KvDtype::Compute);
        let req = WarmRequest {
            docs: fx.docs.clone(),
            max_new_tokens: NEW_TOKENS,
        };
        query::warm(&fx.store, fx.dec.reader(), &cache, &req, &mut |_, _| true).unwrap();
        let files = blocks(&dir);
        assert!(files.len() >= 6, "{f}: {} blocks", files.len());
        let q = request("What did the Rabbit say?", &fx.docs);
        let full = fx.cached(&q, &cache);
        let without = fx.ask(&q, None);
        for (damage, i) in [("truncated", files.len() / 2), ("flipped", 1)] {
            let victim = &files[i];
            let mut bytes = std::fs::read(victim).unwrap();
            let good = bytes.clone();
            match damage {
                "truncated" => bytes.truncate(bytes.len() - 7),
                _ => {
                    let mid = bytes.len() / 2;
                    bytes[mid] ^= 0x40
                }
            }
            std::fs::write(victim, &bytes).unwrap();
            let start: usize = victim
                .file_name()
                .unwrap()
                .to_string_lossy()
                .split('-')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            let with = fx.ask(&q, Some(&cache));
            let u = with.kv_cache.clone().unwrap();
            assert_eq!(u.corrupt, 1, "{f} {damage}: {u:?}");
            assert_eq!(
                with.cached_positions, start,
                "{f} {damage}: resumed up to the bad block"
            );
            // Only the bad block is written again: the later ones are there.
            assert_eq!(u.blocks_written, 1, "{f} {damage}");
            assert_same_answer(&fx, &fx.dec, &q, &with, &without, &format!("{f} {damage}"));
            // Recomputed: the file is sound again, and as it was.
            assert_eq!(std::fs::read(victim).unwrap(), good, "{f} {damage}");
            assert_eq!(
                Disk::open(&dir).unwrap().verify().unwrap(),
                (files.len() as u64, 0)
            );
            assert_eq!(fx.cached(&q, &cache), full);
        }
    }
}

/// The directory never holds more than its cap; the head of a prefix is
/// kept before its tail; least recently used prefixes go first.
#[test]
fn eviction_keeps_the_directory_under_its_cap() {
    let fx = Fixture::new(Family::C3);
    let dir = fx.cache_dir();
    // Measure one prompt's blocks with a large cap, then cap below them.
    let big = fx.cache(&fx.dec, &dir, 1 << 30, KvDtype::Compute);
    let all = WarmRequest {
        docs: fx.docs.clone(),
        max_new_tokens: NEW_TOKENS,
    };
    query::warm(&fx.store, fx.dec.reader(), &big, &all, &mut |_, _| true).unwrap();
    let sizes: Vec<u64> = blocks(&dir)
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .collect();
    Disk::open(&dir).unwrap().clear().unwrap();
    let cap: u64 = sizes[..4].iter().sum::<u64>() + sizes[4] / 2;
    let small = fx.cache(&fx.dec, &dir, cap, KvDtype::Compute);
    let used = |d: &Path| Disk::open(d).unwrap().list().unwrap().1.bytes;

    let r = query::warm(&fx.store, fx.dec.reader(), &small, &all, &mut |_, _| true).unwrap();
    assert!(used(&dir) <= cap, "{} > {cap}", used(&dir));
    // The first four blocks fit: a question resumes from them.
    let q = request("Who is Alice?", &fx.docs);
    let segs_end: usize = {
        let p = query::prepare(&fx.store, fx.reader(), &q).unwrap();
        p.prompt.segments()[3].end
    };
    assert_eq!(fx.cached(&q, &small), segs_end, "{r:?}");
    // Another prefix (the third document alone) pushes the older one out.
    let third = WarmRequest {
        docs: vec![fx.docs[2]],
        max_new_tokens: NEW_TOKENS,
    };
    std::thread::sleep(std::time::Duration::from_millis(20));
    let r = query::warm(&fx.store, fx.dec.reader(), &small, &third, &mut |_, _| true).unwrap();
    assert!(r.evicted > 0, "{r:?}");
    assert!(used(&dir) <= cap);
    assert!(fx.cached(&request("Who is Alice?", &fx.docs[2..]), &small) > 0);
    assert!(
        small
            .counters()
            .evictions
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
    // The answers over what is left still equal the uncached ones.
    let with = fx.ask(&q, Some(&small));
    let without = fx.ask(&q, None);
    assert_same_answer(&fx, &fx.dec, &q, &with, &without, "after eviction");
    assert!(used(&dir) <= cap);
}
