//! Project tasks. `cargo xtask bench-backends`: the distillation workloads timed on every
//! compiled backend (see [`mod@bench`]). Backends beyond flex are features of `kd`:
//! `cargo run -p xtask --features kd/tch -- bench-backends --backends tch,flex`.

mod bench;

use std::path::PathBuf;

use bench::{BenchOptions, markdown, run};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Benchmark the KD workloads on each compiled backend.
    BenchBackends {
        #[command(flatten)]
        opts: BenchOptions,
        /// JSON output.
        #[arg(long, default_value = "bench-backends.json")]
        json: PathBuf,
    },
}

fn main() {
    let Task::BenchBackends { opts, json } = Cli::parse().task;
    let rows = match run(&opts) {
        Ok(rows) => rows,
        Err(e) => {
            eprintln!("xtask bench-backends: {e}");
            std::process::exit(2);
        }
    };
    println!("{}", markdown(&rows, &opts));
    let text = serde_json::to_string_pretty(&rows).expect("rows serialise");
    if let Err(e) = std::fs::write(&json, text) {
        eprintln!("cannot write {}: {e}", json.display());
        std::process::exit(1);
    }
    eprintln!("wrote {}", json.display());
}

#[cfg(test)]
mod tests {
    use super::{Cli, Task, run};
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(["xtask", "bench-backends"].iter().chain(args))
    }

    #[test]
    fn numbers_out_of_range_and_batches_too_large_are_refused_before_any_work() {
        for args in [["--iters", "0"], ["--batch", "0"], ["--images", "0"]] {
            let err = parse(&args).err().expect("refused").to_string();
            assert!(err.contains("range") || err.contains("expected"), "{err}");
        }
        // 4096 images at 1024 × 1024: 51.5 GB of input alone.
        let Task::BenchBackends { opts, .. } =
            parse(&["--batch", "4096", "--size", "1024"]).unwrap().task;
        let err = run(&opts).expect_err("refused");
        assert!(err.contains("51.5 GB"), "{err}");
    }
}
