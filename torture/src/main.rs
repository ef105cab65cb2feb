//! `torture`: thin CLI over crashkit. Parses, runs, maps the outcome to an exit code.

fn main() {
    env_logger::init();
}
