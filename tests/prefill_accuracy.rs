//! The decoder's many-row Q8_0 products (a prefill, teacher forcing) with
//! the i16 product against the f32 GEMM on the same dequantized weights,
//! both measured against the f32 decoder. One test in its own binary: the
//! switch between the two is process-wide.
mod common;

use c3::model::quant::{prefill_i16, set_prefill_i16, set_prefill_q8};
use common::forcing::*;
use common::*;

/// `f(llm)` with the f32 prefill and then with the i16 one.
fn both<T>(f: impl Fn() -> T) -> (T, T) {
    // The i16 product itself, not the 8-bit-activation one that takes its
    // place on AVX-512 VNNI CPUs (`tests/prefill_q8.rs`).
    set_prefill_q8(false);
    set_prefill_i16(false);
    let a = f();
    set_prefill_i16(true);
    let b = f();
    (a, b)
}

#[test]
fn i16_prefill_stays_as_close_to_f32_as_the_f32_prefill() {
    if !{
        set_prefill_i16(true);
        prefill_i16()
    } {
        eprintln!(
            "i16_prefill_stays_as_close_to_f32_as_the_f32_prefill: SKIPPED: this CPU lacks the \
             i16 kernel (avx2)"
        );
        return;
    }
    let dev = test_device();
    // The golden decoder over each case's prompt and reference answer.
    let g = GoldenForcing::load(&dev);
    let (mut dense_vs_f32, mut dense_vs_i16, mut f32_vs_i16) =
        (Tally::default(), Tally::default(), Tally::default());
    for (x, tail) in &g.cases {
        let reference = last(all_logits(g.f32_dec.llm(), x), *tail);
        let (a, b) = both(|| last(all_logits(g.q_dec.llm(), x), *tail));
        dense_vs_f32.add(&reference, &a);
        dense_vs_i16.add(&reference, &b);
        f32_vs_i16.add(&a, &b);
    }
    report(
        "golden decoder q8_0, teacher-forced",
        &dense_vs_f32,
        &dense_vs_i16,
        &f32_vs_i16,
        1,
    );

    // Rows of 256 and 512 (several k blocks per flush group), 400 rows of
    // random ids: more positions than the golden cases have.
    let (dense, q, x) = wide_random_q8_0(&dev);
    let reference = all_logits(&dense, &x);
    let (a, b) = both(|| all_logits(&q, &x));
    let (mut d_a, mut d_b, mut a_b) = (Tally::default(), Tally::default(), Tally::default());
    d_a.add(&reference, &a);
    d_b.add(&reference, &b);
    a_b.add(&a, &b);
    report("256-wide random model q8_0, 400 rows", &d_a, &d_b, &a_b, 2);
}

/// Prints the three comparisons and checks the i16 prefill against the f32
/// one: its own error under a tenth of q8_0's, argmax agreement with the
/// f32 model within `slack` positions.
fn report(
    what: &str,
    dense_vs_f32: &Tally,
    dense_vs_i16: &Tally,
    f32_vs_i16: &Tally,
    slack: usize,
) {
    eprintln!(
        "{what} in one forward: argmax agreement with f32 {}/{} (f32 prefill) and {}/{} \
         (i16 prefill); max |logit error| {:.2e} and {:.2e}; i16 against the f32 prefill: {:.2e}",
        dense_vs_f32.agree,
        dense_vs_f32.positions,
        dense_vs_i16.agree,
        dense_vs_i16.positions,
        dense_vs_f32.max_err,
        dense_vs_i16.max_err,
        f32_vs_i16.max_err
    );
    assert!(
        f32_vs_i16.max_err < 0.1 * dense_vs_f32.max_err,
        "{what}: the i16 prefill adds {} to q8_0's own {}",
        f32_vs_i16.max_err,
        dense_vs_f32.max_err
    );
    assert!(
        dense_vs_i16.agree + slack >= dense_vs_f32.agree,
        "{what}: agreement {} with the i16 prefill against {}",
        dense_vs_i16.agree,
        dense_vs_f32.agree
    );
}
