//! Which splitter a file gets, from its extension.

use std::path::Path;

/// Source languages with a tree-sitter grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Rust,
    Python,
    JavaScript,
    TypeScript,
    Tsx,
    Go,
    C,
    Cpp,
    Java,
}

impl Lang {
    pub fn name(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::JavaScript => "javascript",
            Lang::TypeScript => "typescript",
            Lang::Tsx => "tsx",
            Lang::Go => "go",
            Lang::C => "c",
            Lang::Cpp => "cpp",
            Lang::Java => "java",
        }
    }

    pub fn grammar(self) -> tree_sitter_language::LanguageFn {
        match self {
            Lang::Rust => tree_sitter_rust::LANGUAGE,
            Lang::Python => tree_sitter_python::LANGUAGE,
            Lang::JavaScript => tree_sitter_javascript::LANGUAGE,
            Lang::TypeScript => tree_sitter_typescript::LANGUAGE_TYPESCRIPT,
            Lang::Tsx => tree_sitter_typescript::LANGUAGE_TSX,
            Lang::Go => tree_sitter_go::LANGUAGE,
            Lang::C => tree_sitter_c::LANGUAGE,
            Lang::Cpp => tree_sitter_cpp::LANGUAGE,
            Lang::Java => tree_sitter_java::LANGUAGE,
        }
    }
}

/// How a document is split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocKind {
    Text,
    Markdown,
    Code(Lang),
}

impl DocKind {
    /// Pick by file extension; unknown extensions are plain text.
    pub fn from_path(path: &Path) -> Self {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        match ext.as_str() {
            "md" | "markdown" | "mdown" | "mkd" => DocKind::Markdown,
            "rs" => DocKind::Code(Lang::Rust),
            "py" | "pyi" => DocKind::Code(Lang::Python),
            "js" | "mjs" | "cjs" | "jsx" => DocKind::Code(Lang::JavaScript),
            "ts" | "mts" | "cts" => DocKind::Code(Lang::TypeScript),
            "tsx" => DocKind::Code(Lang::Tsx),
            "go" => DocKind::Code(Lang::Go),
            "c" | "h" => DocKind::Code(Lang::C),
            "cc" | "cpp" | "cxx" | "c++" | "hh" | "hpp" | "hxx" | "h++" => DocKind::Code(Lang::Cpp),
            "java" => DocKind::Code(Lang::Java),
            _ => DocKind::Text,
        }
    }

    /// Label stored in document records.
    pub fn label(self) -> String {
        match self {
            DocKind::Text => "text".into(),
            DocKind::Markdown => "markdown".into(),
            DocKind::Code(l) => format!("code:{}", l.name()),
        }
    }
}
