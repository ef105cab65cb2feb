//! `crashkit`: the fault-injection library behind `torture`.
//!
//! Architecture invariant: every random choice derives from a printed seed through ChaCha8.

pub mod bench;
