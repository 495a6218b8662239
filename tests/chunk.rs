//! Chunker: windows tile the document and respect the token budget.

mod store_support;

use std::path::Path;

use c3::chunk::{Chunker, DocKind, Lang};
use proptest::prelude::*;
use store_support::ByteSizer;
use text_splitter::ChunkSizer;

fn assert_tiles(text: &str, chunks: &[c3::chunk::Chunk]) {
    let mut pos = 0;
    for c in chunks {
        assert_eq!(c.start, pos, "gap or overlap at byte {pos}");
        assert!(c.end > c.start, "empty chunk at {pos}");
        pos = c.end;
    }
    assert_eq!(pos, text.len(), "chunks stop before the end");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn chunks_tile_random_text(text in "(\\PC|[ \n\r\t]){0,3000}", max in 1usize..200) {
        let chunker = Chunker::new(ByteSizer, max).unwrap();
        for kind in [DocKind::Text, DocKind::Markdown, DocKind::Code(Lang::Rust), DocKind::Code(Lang::Python)] {
            let chunks = chunker.split(&text, kind);
            assert_tiles(&text, &chunks);
            for c in &chunks {
                prop_assert_eq!(c.tokens, ByteSizer.size(&text[c.start..c.end]));
            }
        }
    }

    #[test]
    fn chunks_respect_the_budget_on_words(words in prop::collection::vec("[a-z]{1,12}", 0..600), max in 4usize..100) {
        let text = words.join(" ");
        let chunker = Chunker::new(ByteSizer, max).unwrap();
        let chunks = chunker.split(&text, DocKind::Text);
        assert_tiles(&text, &chunks);
        for c in &chunks {
            prop_assert!(c.tokens <= max, "chunk of {} tokens > {}", c.tokens, max);
        }
    }
}

#[test]
fn book_chunks_tile_and_fit() {
    let text = std::fs::read_to_string(store_support::corpus("alice-in-wonderland.txt")).unwrap();
    let chunker = Chunker::new(ByteSizer, 1000).unwrap();
    let chunks = chunker.split(&text, DocKind::Text);
    assert_tiles(&text, &chunks);
    assert!(chunks.iter().all(|c| c.tokens <= 1000));
    // Windows are filled, not fragmented.
    let avg = chunks.iter().map(|c| c.tokens).sum::<usize>() / chunks.len();
    assert!(avg > 700, "average chunk only {avg} tokens");
}

#[test]
fn code_is_split_at_syntax_boundaries() {
    let f = "fn f() {\n    let x = 1;\n    x + 1;\n}\n\n";
    let text = f.repeat(40);
    let chunker = Chunker::new(ByteSizer, 30).unwrap();
    let chunks = chunker.split(&text, DocKind::Code(Lang::Rust));
    assert_tiles(&text, &chunks);
    // Every function fits a window: no window should end inside one.
    for c in &chunks[..chunks.len() - 1] {
        let piece = &text[c.start..c.end];
        assert!(
            piece.trim_end().ends_with('}'),
            "window ends mid-function: {piece:?}"
        );
    }
}

#[test]
fn kinds_by_extension() {
    let k = |p: &str| DocKind::from_path(Path::new(p)).label();
    assert_eq!(k("a/b.rs"), "code:rust");
    assert_eq!(k("x.PY"), "code:python");
    assert_eq!(k("x.tsx"), "code:tsx");
    assert_eq!(k("x.hpp"), "code:cpp");
    assert_eq!(k("x.java"), "code:java");
    assert_eq!(k("x.go"), "code:go");
    assert_eq!(k("x.js"), "code:javascript");
    assert_eq!(k("README.md"), "markdown");
    assert_eq!(k("book.txt"), "text");
    assert_eq!(k("Makefile"), "text");
    // Every grammar loads with the linked tree-sitter.
    for l in [
        Lang::Rust,
        Lang::Python,
        Lang::JavaScript,
        Lang::TypeScript,
        Lang::Tsx,
        Lang::Go,
        Lang::C,
        Lang::Cpp,
        Lang::Java,
    ] {
        let chunker = Chunker::new(ByteSizer, 10).unwrap();
        let chunks = chunker.split("int x = 1;\nint y = 2;\n", DocKind::Code(l));
        assert!(!chunks.is_empty(), "{l:?}");
        text_splitter::CodeSplitter::new(
            l.grammar(),
            text_splitter::ChunkConfig::new(10).with_sizer(ByteSizer),
        )
        .unwrap_or_else(|e| panic!("{l:?}: {e}"));
    }
    assert!(Chunker::new(ByteSizer, 0).is_err());
}

#[test]
fn headings_between_strong_breaks_join_their_section() {
    // Chapters end with four line breaks and headings are followed by three,
    // as in the Gutenberg books: text-splitter alone makes each heading a chunk.
    let para = "Some sentence of the chapter goes here. ".repeat(12);
    let mut text = String::new();
    for ch in 1..=6 {
        text.push_str(&format!("Chapter {ch}\r\n\r\n\r\n"));
        for _ in 0..5 {
            text.push_str(&para);
            text.push_str("\r\n\r\n");
        }
        text.push_str("\r\n\r\n");
    }
    let max = 400;
    let chunker = Chunker::new(ByteSizer, max).unwrap();
    let chunks = chunker.split(&text, DocKind::Text);
    assert_tiles(&text, &chunks);
    for c in &chunks {
        assert!(c.tokens <= max);
        assert!(
            c.tokens >= max / 4,
            "fragment of {} tokens: {:?}",
            c.tokens,
            &text[c.start..c.end]
        );
    }
    // Headings start their chunk rather than trail the previous chapter.
    let starts = chunks
        .iter()
        .filter(|c| text[c.start..].starts_with("Chapter"))
        .count();
    assert_eq!(starts, 6);
}
