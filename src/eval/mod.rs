//! Fidelity of the memory: metrics, the bucketed table, and word diffs.
pub mod diff;
pub mod metrics;
pub mod table;

pub use metrics::{edit_similarity, precision};
pub use table::{render as render_table, table, Row, Sample};
