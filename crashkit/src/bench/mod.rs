//! `torture bench`: the engine's performance checks, printed as one table per run.

use std::path::PathBuf;

/// Options of `torture bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchOptions {
    /// Print JSON Lines instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Smaller sizes, for a smoke run.
    #[arg(long)]
    pub quick: bool,
    /// Directory for the benchmark databases (default: a fresh temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}
