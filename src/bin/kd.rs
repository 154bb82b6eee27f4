//! The `kd` command line with kd's built-in models and losses.

use std::process::ExitCode;

fn main() -> ExitCode {
    kd::cli::main(kd::registry::Registry::builtin())
}
