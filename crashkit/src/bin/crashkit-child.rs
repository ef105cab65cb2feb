//! A minimal child executable for crashkit's own tests and for embedders: everything after
//! the program name goes to `crashkit::child::main_from_args`.

fn main() {
    crashkit::child::main_from_args(std::env::args().skip(1).collect());
}
