//! c3's benchmarks at the release geometry with random weights (no
//! download): tokenizer throughput, encoder (one 1000-token chunk → 32
//! latents), decoder prefill of a 32-chunk latent prompt and per-token
//! decode, dense f32 and quantized. Each prints its ratio to this machine's
//! limits (`benches/limits.rs`).
//!
//! `cargo bench --bench c3` runs everything (~30 min on 2 cores, up to ~13 GB
//! of memory for the f32 decoder); filter with e.g. `cargo bench --bench c3 --
//! decode/q8_0`. `cargo bench --bench c3 -- --test` is the CI smoke mode:
//! tiny geometry, each benchmark run once.

mod support;

use c3::model::{KvCache, Quant};
use candle_core::{DType, IndexOp, Tensor};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use std::cell::RefCell;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use support::*;

/// Whether the command line's filters (criterion's, substring match) select
/// anything in group `name`: the setup of a group (building a model at
/// release geometry takes a minute and gigabytes) is skipped when not.
fn wanted(name: &str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    filters.is_empty()
        || filters
            .iter()
            .any(|f| name.contains(f.as_str()) || f.contains(name))
}

fn limits() -> &'static Limits {
    static L: OnceLock<Limits> = OnceLock::new();
    L.get_or_init(|| {
        println!("dense f32 product: {}", c3::kernels::blas::backend());
        Limits::measure()
    })
}

/// Timings of every iteration criterion ran, for the derived figures: wall
/// seconds, and CPU seconds of this process.
struct Samples(RefCell<Vec<f64>>, RefCell<Vec<f64>>);

impl Samples {
    fn new() -> Self {
        Self(RefCell::new(Vec::new()), RefCell::new(Vec::new()))
    }
    fn time<T>(&self, f: impl FnOnce() -> T) -> (T, Duration) {
        let c = cpu_seconds();
        let t = Instant::now();
        let out = f();
        let d = t.elapsed();
        self.0.borrow_mut().push(d.as_secs_f64());
        self.1.borrow_mut().push(cpu_seconds() - c);
        (out, d)
    }
    /// Total CPU seconds over total wall seconds: ~threads on an idle
    /// machine, less when other processes take the cores.
    fn cpu_share(&self) -> f64 {
        self.1.borrow().iter().sum::<f64>() / self.0.borrow().iter().sum::<f64>()
    }
    /// Wall time an idle machine would show: mean CPU seconds / threads.
    fn idle_estimate(&self) -> f64 {
        let v = self.1.borrow();
        v.iter().sum::<f64>() / v.len() as f64 / threads() as f64
    }
    fn note(&self) -> String {
        format!(
            "[CPU share {:.2} of {} cores; CPU-s/threads {:.3} s]",
            self.cpu_share(),
            threads(),
            self.idle_estimate()
        )
    }
    fn median(&self) -> f64 {
        median(self.0.borrow().clone())
    }
    fn min(&self) -> f64 {
        self.0.borrow().iter().cloned().fold(f64::NAN, f64::min)
    }
}

/// Heavy benchmarks (tens of seconds per run at release geometry) are timed
/// directly, `C3_BENCH_RUNS` runs (default 3; 1 in quick mode), median and
/// minimum reported: criterion's minimum of 10 samples would take ~10 minutes
/// each on 2 cores.
fn runs() -> usize {
    if quick() {
        return 1;
    }
    std::env::var("C3_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1)
}

fn slow<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(1));
    g
}

fn tokenize(c: &mut Criterion) {
    if !wanted("tokenize") {
        return;
    }
    let tok = tokenizer();
    let mut text = read(&corpus());
    if quick() {
        text.truncate(
            text.char_indices()
                .nth(20_000)
                .map_or(text.len(), |(i, _)| i),
        );
    }
    let mut g = c.benchmark_group("tokenize");
    g.throughput(Throughput::Bytes(text.len() as u64))
        .sample_size(10);
    let s = Samples::new();
    let mut n = 0;
    g.bench_function("pride-and-prejudice", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (ids, d) = s.time(|| tok.encode_text(&text).unwrap());
                n = ids.len();
                total += d;
            }
            total
        })
    });
    g.finish();
    let med = s.median();
    println!(
        "tokenize: {:.2} MB in {:.3} s (median) = {:.1} MB/s, {:.0} ktokens/s ({n} tokens) {}",
        text.len() as f64 / 1e6,
        med,
        text.len() as f64 / 1e6 / med,
        n as f64 / 1e3 / med,
        s.note()
    );
}

fn encode(c: &mut Criterion) {
    if !wanted("encode/f32") {
        return;
    }
    let _ = c;
    let (enc, cfg) = encoder();
    time_chunk(&enc, &cfg, "encode");
}

/// The ids of the benchmarks' one chunk (1000 tokens; 64 in quick mode).
fn chunk_ids() -> Vec<u32> {
    let tokens = if quick() { 64 } else { 1000 };
    (0..tokens as u32).map(|i| (i * 7919) % 150_000).collect()
}

/// Times `runs()` encodes of [`chunk_ids`] (in turns with PyTorch when
/// `C3_TURNS` is set: `benches/compare/alternate.sh`), prints `label`'s line,
/// and returns the raw states of the last run.
fn time_chunk(
    enc: &c3::cascade::c3::C3Encoder,
    cfg: &c3::model::config::Qwen2Config,
    label: &str,
) -> Tensor {
    let lim = limits();
    let ids = chunk_ids();
    let seq = ids.len() + 34;
    let flops = encoder_flops(cfg, seq, 33);
    let s = Samples::new();
    let turns = Turns::from_env();
    turns.ready();
    let mut last = None;
    for r in 0..runs() {
        let _turn = turns.take();
        let (raw, d) = s.time(|| {
            let raw = enc.encode_ids(&ids).unwrap();
            sync();
            raw
        });
        assert_eq!(raw.dims(), [32, cfg.hidden_size]);
        eprintln!("encode run {r}: {:.2} s", d.as_secs_f64());
        last = Some(raw);
    }
    let med = s.median();
    let gf = flops / med / 1e9;
    println!(
        "{label}: {seq} positions -> 32 latents: {med:.2} s/chunk median (min {:.2}), {:.0} tokens/s, \
         {gf:.1} GFLOP/s = {:.0}% of the f32 GEMM peak ({:.1}) {}",
        s.min(),
        seq as f64 / med,
        100.0 * gf / lim.gemm_gflops,
        lim.gemm_gflops,
        s.note()
    );
    last.expect("at least one run")
}

/// Times `runs()` pairs of encodes of [`chunk_ids`], `dense` then `fast`,
/// prints each pair and the medians, and returns `fast`'s last raw states.
fn time_pairs(
    dense: &c3::cascade::c3::C3Encoder,
    fast: &c3::cascade::c3::C3Encoder,
    cfg: &c3::model::config::Qwen2Config,
) -> Tensor {
    let ids = chunk_ids();
    let flops = encoder_flops(cfg, ids.len() + 34, 33);
    let (sd, sf) = (Samples::new(), Samples::new());
    let mut ratios = Vec::new();
    let mut last = None;
    for r in 0..runs() {
        let (_, dd) = sd.time(|| {
            dense.encode_ids(&ids).unwrap();
            sync();
        });
        let (raw, df) = sf.time(|| {
            let raw = fast.encode_ids(&ids).unwrap();
            sync();
            raw
        });
        ratios.push(df.as_secs_f64() / dd.as_secs_f64());
        eprintln!(
            "encode pair {r}: f32 {:.2} s, i16 {:.2} s, i16 / f32 {:.3}",
            dd.as_secs_f64(),
            df.as_secs_f64(),
            ratios[r]
        );
        last = Some(raw);
    }
    ratios.sort_by(f64::total_cmp);
    let (md, mf) = (sd.median(), sf.median());
    println!(
        "encode f32 then i16, {} pairs: f32 {md:.2} s/chunk median (min {:.2}, {:.1} GFLOP/s), \
         i16 {mf:.2} s/chunk median (min {:.2}, {:.1} GFLOP/s-equivalent); i16 / f32 per pair: \
         median {:.3}, range {:.3}-{:.3} {}",
        ratios.len(),
        sd.min(),
        flops / md / 1e9,
        sf.min(),
        flops / mf / 1e9,
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1],
        sf.note()
    );
    last.expect("at least one run")
}

/// `got` against `want` (same shape): max |err| and mean |err| / mean |x|.
fn state_error(got: &Tensor, want: &Tensor) -> (f32, f64) {
    let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let want = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let max_err = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    let mean_err: f64 = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs() as f64)
        .sum();
    let mean_abs: f64 = want.iter().map(|v| v.abs() as f64).sum();
    (max_err, mean_err / mean_abs)
}

/// The random release encoder's f32 raw states for [`chunk_ids`], and a
/// twin built from the same weights with its matrices in `quant`; the f32
/// encoder is kept (for timing beside the twin) only when `keep_dense`.
struct Twin {
    cfg: c3::model::config::Qwen2Config,
    want: Tensor,
    dense: Option<c3::cascade::c3::C3Encoder>,
    twin: c3::cascade::c3::C3Encoder,
}

fn f32_reference_and_twin(quant: Quant, keep_dense: bool) -> Twin {
    let EncoderParts {
        encoder: enc,
        config: cfg,
        enc_w,
        dec_w,
        dec_hidden,
    } = encoder_parts();
    let t = Instant::now();
    let want = enc.encode_ids(&chunk_ids()).unwrap();
    eprintln!("f32 reference encode: {:.2} s", t.elapsed().as_secs_f64());
    let dense = keep_dense.then_some(enc);
    let t = Instant::now();
    let twin = c3::cascade::c3::C3Encoder::from_weights_quantized(
        &cfg,
        32,
        dec_hidden,
        &enc_w,
        &dec_w,
        tokenizer(),
        Some(quant),
    )
    .unwrap();
    eprintln!("{quant} encoder built in {:.1?}", t.elapsed());
    Twin {
        cfg,
        want,
        dense,
        twin,
    }
}

/// The encoder with 14-bit integer products (`--encoder-precision i16`, the
/// CPU default with AVX2): speed, and its raw states against the f32
/// encoder's on the same random weights, beside what rounding the f32 states
/// to bf16 (as the store keeps them for a bf16 checkpoint) changes. Alone,
/// each run times the f32 encoder then the i16 one (the host is noisy, so
/// the ratio is taken per pair); in turns with PyTorch (`C3_TURNS`,
/// `alternate.sh`) only the i16 one runs.
fn encode_i16(c: &mut Criterion) {
    if !wanted("encode/i16") {
        return;
    }
    let _ = c;
    let Twin {
        cfg,
        want,
        dense,
        twin: q,
    } = f32_reference_and_twin(Quant::I16, !Turns::from_env().active());
    println!("i16 kernel: {}", i16_kernel_name());
    let got = match &dense {
        Some(dense) => time_pairs(dense, &q, &cfg),
        None => time_chunk(&q, &cfg, "encode i16"),
    };
    let (max_err, rel) = state_error(&got, &want);
    let rounded = want
        .to_dtype(DType::BF16)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
    let (bf_max, bf_rel) = state_error(&rounded, &want);
    println!(
        "encode i16 raw states vs f32: max |err| {max_err:.3e}, mean |err| / mean |x| = {:.4}%; \
         bf16 rounding of the f32 states: max |err| {bf_max:.3e}, mean {:.4}% -> i16 error / bf16 \
         rounding = {:.2} (mean), {:.2} (max)",
        100.0 * rel,
        100.0 * bf_rel,
        rel / bf_rel,
        max_err / bf_max
    );
}

/// The i16 kernel products run with (`C3_I16_KERNEL` can force one).
fn i16_kernel_name() -> &'static str {
    c3::model::quant::i16_kernel_name().unwrap_or("none (no AVX2: dense)")
}

/// The i16 encoder's microkernels against each other (where the CPU runs
/// more than one: AVX-512 VNNI and AVX2), on one packed encoder: each run
/// times the AVX2 kernel then the VNNI one, so each pair sees the same
/// host; and both kernels' raw states against the f32 encoder's.
#[cfg(target_arch = "x86_64")]
fn encode_kernels(c: &mut Criterion) {
    use c3::kernels::i16_gemm::{set_kernel, Kernel};
    if !wanted("encode/kernels") {
        return;
    }
    let _ = c;
    let here: Vec<Kernel> = Kernel::ALL.into_iter().filter(|k| k.runs_here()).collect();
    for k in Kernel::ALL.iter().filter(|k| !here.contains(k)) {
        println!(
            "encode/kernels: {} SKIPPED: this CPU lacks {}",
            k.name(),
            k.features()
        );
    }
    if here.len() < 2 {
        println!("encode/kernels: fewer than two i16 kernels run here, nothing to compare");
        return;
    }
    let Twin {
        cfg, want, twin, ..
    } = f32_reference_and_twin(Quant::I16, false);
    let ids = chunk_ids();
    let flops = encoder_flops(&cfg, ids.len() + 34, 33);
    let samples: Vec<Samples> = here.iter().map(|_| Samples::new()).collect();
    let mut last: Vec<Option<Tensor>> = vec![None; here.len()];
    let mut ratios = Vec::new();
    for r in 0..runs() {
        let mut secs = Vec::new();
        for (i, &k) in here.iter().enumerate() {
            set_kernel(k);
            let (raw, d) = samples[i].time(|| {
                let raw = twin.encode_ids(&ids).unwrap();
                sync();
                raw
            });
            secs.push(d.as_secs_f64());
            last[i] = Some(raw);
        }
        ratios.push(secs[1] / secs[0]);
        eprintln!(
            "encode kernels pair {r}: {} {:.2} s, {} {:.2} s, ratio {:.3}",
            here[0].name(),
            secs[0],
            here[1].name(),
            secs[1],
            ratios[r]
        );
    }
    ratios.sort_by(f64::total_cmp);
    for (i, k) in here.iter().enumerate() {
        let (max_err, rel) = state_error(last[i].as_ref().unwrap(), &want);
        println!(
            "encode {}: {:.2} s/chunk median (min {:.2}), {:.1} GFLOP/s-equivalent; raw states vs \
             f32: max |err| {max_err:.3e}, mean |err| / mean |x| = {:.4}% {}",
            k.name(),
            samples[i].median(),
            samples[i].min(),
            flops / samples[i].median() / 1e9,
            100.0 * rel,
            samples[i].note()
        );
    }
    let same = last[0]
        .as_ref()
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        == last[1]
            .as_ref()
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
    println!(
        "encode/kernels: {} / {} per pair: median {:.3}, range {:.3}-{:.3}; raw states identical: {same}",
        here[1].name(),
        here[0].name(),
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1],
    );
    set_kernel(Kernel::best().unwrap());
}

#[cfg(not(target_arch = "x86_64"))]
fn encode_kernels(_: &mut Criterion) {}

/// Several chunks per encoder forward (`C3Encoder::encode_batch_ids`, what
/// `c3 ingest --batch N` uses): `C3_BENCH_BATCH` chunks
/// (default 8) of 1000, 990, … tokens, padded to the longest, against the
/// same chunks one forward each. `C3_BENCH_PRECISION=i16` runs the i16
/// encoder (default: dense).
fn encode_batch(c: &mut Criterion) {
    if !wanted("encode/batch") {
        return;
    }
    let _ = c;
    let lim = limits();
    let quant = match std::env::var("C3_BENCH_PRECISION").as_deref() {
        Ok("i16") => Some(Quant::I16),
        Ok("dense") | Err(_) => None,
        Ok(other) => panic!("C3_BENCH_PRECISION={other}: dense or i16"),
    };
    let EncoderParts {
        encoder: enc,
        config: cfg,
        ..
    } = encoder_parts_in(quant);
    let n: usize = std::env::var("C3_BENCH_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick() { 2 } else { 8 })
        .max(1);
    let longest = if quick() { 64 } else { 1000 };
    let texts: Vec<Vec<u32>> = (0..n)
        .map(|j| {
            let len = longest - 10 * j.min(longest / 20);
            (0..len as u32)
                .map(|i| (i * 7919 + j as u32 * 31) % 150_000)
                .collect()
        })
        .collect();
    let refs: Vec<&[u32]> = texts.iter().map(Vec::as_slice).collect();
    let flops: f64 = texts
        .iter()
        .map(|t| encoder_flops(&cfg, t.len() + 34, 33))
        .sum();
    let one = Samples::new();
    let all = Samples::new();
    for r in 0..runs() {
        let (_, d1) = one.time(|| {
            for ids in &refs {
                enc.encode_ids(ids).unwrap();
            }
            sync();
        });
        let (out, dn) = all.time(|| {
            let out = enc.encode_batch_ids(&refs).unwrap();
            sync();
            out
        });
        assert_eq!(out.len(), n);
        eprintln!(
            "encode batch run {r}: {n} chunks one by one {:.2} s, in one forward {:.2} s",
            d1.as_secs_f64(),
            dn.as_secs_f64()
        );
    }
    let (m1, mn) = (one.median(), all.median());
    println!(
        "encode batch of {n} ({} to {longest} tokens, {}) on {:?}: one forward each {:.3} s/chunk \
         ({:.1} GFLOP/s), one padded forward {:.3} s/chunk ({:.1} GFLOP/s = {:.0}% of the f32 GEMM \
         peak): batching x{:.2} {}",
        texts.iter().map(Vec::len).min().unwrap_or(0),
        quant.map_or("dense".to_string(), |q| q.to_string()),
        bench_device(),
        m1 / n as f64,
        flops / m1 / 1e9,
        mn / n as f64,
        flops / mn / 1e9,
        100.0 * flops / mn / 1e9 / lim.gemm_gflops,
        m1 / mn,
        all.note()
    );
}

/// The encoder with Q8_0 weights (an experiment, not a CLI option): speed,
/// and its raw states against the f32 encoder's on the same random weights.
fn encode_q8_0(c: &mut Criterion) {
    if !wanted("encode/q8_0") {
        return;
    }
    let _ = c;
    let lim = limits();
    let Twin {
        cfg, want, twin: q, ..
    } = f32_reference_and_twin(Quant::Q8_0, false);
    let ids = chunk_ids();
    let seq = ids.len() + 34;
    let s = Samples::new();
    let mut got = None;
    for r in 0..runs() {
        let (raw, d) = s.time(|| q.encode_ids(&ids).unwrap());
        eprintln!("encode q8_0 run {r}: {:.2} s", d.as_secs_f64());
        got = Some(raw);
    }
    let (max_err, rel) = state_error(&got.unwrap(), &want);
    let max_abs = want
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let med = s.median();
    let gf = encoder_flops(&cfg, seq, 33) / med / 1e9;
    println!(
        "encode q8_0: {seq} positions: {med:.2} s/chunk median (min {:.2}), {gf:.1} GFLOP/s-equivalent \
         = {:.0}% of the f32 GEMM peak; raw states vs f32: max |err| {max_err:.3e} (max |x| {max_abs:.3}), \
         mean |err| / mean |x| = {:.2}% (bf16 rounding: <= 0.39% per element) {}",
        s.min(),
        100.0 * gf / lim.gemm_gflops,
        100.0 * rel,
        s.note()
    );
}

/// Decoder benchmarks for one weight format: prefill of a 32-chunk latent
/// prompt, then per-token decode steps after it.
fn decode_with(c: &mut Criterion, quant: Option<Quant>) {
    let lim = limits();
    let label = quant.map_or("f32".to_string(), |q| q.to_string());
    // What ran, for the printed lines: the group name stays `decode/f32`
    // for the dense model whatever `C3_BENCH_DTYPE` says.
    let shown = format!(
        "{} on {:?}",
        quant.map_or(format!("dense {:?}", bench_dtype()), |q| q.to_string()),
        bench_device()
    );
    if !wanted(&format!("decode/{label}")) {
        return;
    }
    let dec = decoder(quant);
    let llm = dec.llm();
    let h = llm.config().hidden_size;
    // `C3_BENCH_BLOCKS` chunks in the prompt (default 32, ~1.1k positions).
    let blocks = if quick() {
        2
    } else {
        std::env::var("C3_BENCH_BLOCKS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(32)
    };
    let prompt = dec.repeat_prompt(blocks).unwrap();
    let dev = bench_device();
    let lat: Vec<Tensor> = (0..blocks)
        .map(|_| Tensor::rand(-1f32, 1f32, (dec.latent_len(), h), &dev).unwrap())
        .collect();
    let x = dec
        .prompt_embeddings(&prompt, &lat)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let n = prompt.ids.len();
    let prefill = || {
        let mut cache = KvCache::new();
        // As `C3Decoder::generate` runs it: the last layer for the last row only.
        let h = llm.forward_tail(&x, Some(&mut cache), 1).unwrap();
        let last = h.i((0, 0)).unwrap().unsqueeze(0).unwrap();
        let logits = llm.logits(&last).unwrap();
        sync();
        (cache, logits)
    };

    // Prefill: the whole prompt through the stack, logits of the last row.
    let flops = 2.0 * (llm.weight_bytes_per_token() as f64 / bytes_per_weight(quant)) * n as f64;
    let s = Samples::new();
    let skip_prefill = std::env::var("C3_BENCH_SKIP_PREFILL").is_ok_and(|v| v == "1");
    let mut filled = None;
    if !skip_prefill {
        for r in 0..runs() {
            let (out, d) = s.time(prefill);
            filled = Some(out);
            eprintln!("prefill run {r}: {:.2} s", d.as_secs_f64());
        }
        let med = s.median();
        println!(
            "decoder {shown}: prefill {n} positions ({blocks} chunks), {} products: {med:.2} s \
             median (min {:.2}), {:.0} positions/s, ~{:.1} GFLOP/s (weight products only) {}",
            prefill_products(quant),
            s.min(),
            n as f64 / med,
            flops / med / 1e9,
            s.note()
        );
    }

    // Decode steps: one token in, logits out, greedy pick, after the prompt.
    // The cache of the last measured prefill (one more, untimed, if skipped).
    let (mut cache, logits) = filled.unwrap_or_else(prefill);
    let mut tok = argmax(&logits);
    let steps = Samples::new();
    let mut g = slow(c, &format!("decode/{label}"));
    g.throughput(Throughput::Elements(1));
    g.bench_function(format!("decode step after {n} positions"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (t, d) = steps.time(|| {
                    let e = llm.embed(&[tok]).unwrap().unsqueeze(0).unwrap();
                    let h = llm.forward(&e, Some(&mut cache)).unwrap();
                    argmax(&llm.logits(&h.squeeze(0).unwrap()).unwrap())
                });
                tok = t;
                total += d;
            }
            total
        })
    });
    g.finish();
    let med = steps.median();
    let bytes = llm.weight_bytes_per_token() as f64;
    let bw = bytes / med / 1e9;
    println!(
        "decoder {shown}: decode step after {n} positions: {:.1} ms/token median (min {:.1}), \
         reads {:.2} GB of weights/token = {bw:.1} GB/s = {:.0}% of read bandwidth ({:.1} GB/s; \
         bound {:.0} ms/token); one-row kernel {} {}",
        med * 1e3,
        steps.min() * 1e3,
        bytes / 1e9,
        100.0 * bw / lim.read_gbs,
        lim.read_gbs,
        bytes / lim.read_gbs / 1e6,
        c3::kernels::gemv::kernel().name(),
        steps.note()
    );
    if quant.is_some() {
        gemv_kernels_in_turns(llm, &mut cache, &mut tok, n);
    }
}

/// The decode step with each SIMD one-row kernel this CPU runs, in turns
/// (AVX2 step, AVX-512 step, ...), so the two see the same state of a
/// shared host: `C3_BENCH_GEMV_TURNS` pairs (default 8; 1 in quick mode).
fn gemv_kernels_in_turns(llm: &c3::model::Qwen2, cache: &mut KvCache, tok: &mut u32, n: usize) {
    use c3::kernels::gemv::{kernel, set_kernel, Kernel};
    let here: Vec<Kernel> = [Kernel::Avx2, Kernel::Avx512]
        .into_iter()
        .filter(|k| k.runs_here())
        .collect();
    if here.len() < 2 {
        println!(
            "decode step, one-row kernels in turns: SKIPPED: this CPU lacks {}",
            Kernel::Avx512.features()
        );
        return;
    }
    let chosen = kernel();
    let pairs = if quick() {
        1
    } else {
        std::env::var("C3_BENCH_GEMV_TURNS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(8)
    };
    let mut secs = vec![Vec::new(); here.len()];
    let mut ratios = Vec::new();
    for _ in 0..pairs {
        for (i, &k) in here.iter().enumerate() {
            set_kernel(k);
            let t = Instant::now();
            let e = llm.embed(&[*tok]).unwrap().unsqueeze(0).unwrap();
            let h = llm.forward(&e, Some(cache)).unwrap();
            *tok = argmax(&llm.logits(&h.squeeze(0).unwrap()).unwrap());
            secs[i].push(t.elapsed().as_secs_f64());
        }
        ratios.push(secs[1].last().unwrap() / secs[0].last().unwrap());
    }
    set_kernel(chosen);
    ratios.sort_by(f64::total_cmp);
    println!(
        "decode step after ~{n} positions, one-row kernels in turns ({pairs} pairs): {} {:.1} ms, \
         {} {:.1} ms median; {} / {} per pair: median {:.3}, range {:.3}-{:.3}",
        here[0].name(),
        1e3 * median(secs[0].clone()),
        here[1].name(),
        1e3 * median(secs[1].clone()),
        here[1].name(),
        here[0].name(),
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1]
    );
}

/// The kernel a prefill's many-row weight products ran with, for the
/// printed line: Q8_0 takes the i16 product where `C3_PREFILL_I16` allows.
fn prefill_products(quant: Option<Quant>) -> &'static str {
    match quant {
        Some(Quant::Q8_0) => c3::model::quant::prefill_kernel_name(),
        Some(Quant::Q4K) => "f32-dequantized",
        Some(Quant::I16) => "i16",
        None => "dense",
    }
}

fn bytes_per_weight(quant: Option<Quant>) -> f64 {
    // Nominal: q8_0 34 B / 32, q4k 144 B / 256 (its rows of 64 fall back to
    // q8_0 only at tiny geometry), i16 2, f32 4.
    match quant {
        None => 4.0,
        Some(Quant::I16) => 2.0,
        Some(Quant::Q8_0) => 34.0 / 32.0,
        Some(Quant::Q4K) => 144.0 / 256.0,
    }
}

fn argmax(logits: &Tensor) -> u32 {
    let v = logits
        .flatten_all()
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    v.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &x)| {
            if x > bv {
                (i, x)
            } else {
                (bi, bv)
            }
        })
        .0 as u32
}

fn decode_q8_0(c: &mut Criterion) {
    decode_with(c, Some(Quant::Q8_0));
}

fn decode_q4k(c: &mut Criterion) {
    decode_with(c, Some(Quant::Q4K));
}

fn decode_f32(c: &mut Criterion) {
    decode_with(c, None);
}

criterion_group!(
    benches,
    tokenize,
    encode,
    encode_batch,
    encode_i16,
    encode_kernels,
    encode_q8_0,
    decode_q8_0,
    decode_q4k,
    decode_f32
);
criterion_main!(benches);
