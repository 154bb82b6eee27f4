//! Your own `kd` binary: register your models and losses, then run kd's usual command line —
//! experiment files, `kd layers`, `kd match-layers`, `kd eval` — with their names resolvable.
//!
//! ```sh
//! cargo run --example registry -- run examples/registry/small_cnn.toml
//! cargo run --example registry -- layers small_cnn --size 32
//! cargo run --example registry -- match-layers --student small_cnn --teacher resnet18
//! ```

mod names;

use std::process::ExitCode;

fn main() -> ExitCode {
    kd::cli::main(names::registry())
}
