//! `crashkit`: the fault-injection library behind `torture`.
//!
//! A cycle ([`cycle::run_cycle`]) starts a child writer ([`child`]) that runs a seeded
//! workload ([`workload`]) through the fault storage under the engine's I/O seam ([`faults`]),
//! kills it as the case's plan says ([`plan`]), optionally damages the unsynced WAL
//! ([`power_loss`]), and checks the reopened database against the model ([`oracle`],
//! [`checker`]). Violations become [`finding::Finding`]s; [`campaign`] runs many cycles;
//! [`matrix`] reads the crash matrix (ci/matrix.toml) and [`matrix_run`] runs its cells, one
//! campaign each, reported as a table, JSON Lines and [`junit`] XML.
//!
//! Architecture invariant: every random choice derives from a printed seed through ChaCha8.

pub mod bench;
pub mod bench_check;
pub mod campaign;
pub mod case;
pub mod checker;
pub mod child;
pub mod corrupt;
pub mod coverage;
pub mod crash_state;
pub mod cycle;
pub mod faults;
pub mod finding;
pub mod history;
pub mod html;
pub mod inspect;
pub mod junit;
pub mod matrix;
pub mod matrix_run;
pub mod mem_storage;
pub mod merge;
pub mod oracle;
pub mod plan;
pub mod power_loss;
pub mod protocol;
pub mod regressions;
pub mod seam;
pub mod selftest;
pub mod selftest_faults;
pub mod shrink;
pub mod side_files;
pub mod space;
pub mod state_shrink;
pub mod sweep;
pub mod trace;
pub mod workload;
pub mod wrong_engine;
