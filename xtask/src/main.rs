//! Project tasks. `cargo xtask bench-backends`: see `kd::bench`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use kd::bench::{BenchOptions, markdown, run};

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
        /// Backends (default: every compiled one).
        #[arg(long, value_delimiter = ',')]
        backends: Option<Vec<String>>,
        /// Batch size.
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// Image side.
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Timed iterations per workload (median reported).
        #[arg(long, default_value_t = 5)]
        iters: usize,
        /// Untimed warm-up iterations.
        #[arg(long, default_value_t = 2)]
        warmup: usize,
        /// Images in the data-pipeline benchmark (JPEGs around 500×375).
        #[arg(long, default_value_t = 256)]
        images: usize,
        /// JSON output.
        #[arg(long, default_value = "bench-backends.json")]
        json: PathBuf,
    },
}

fn main() {
    let Task::BenchBackends {
        backends,
        batch,
        size,
        iters,
        warmup,
        images,
        json,
    } = Cli::parse().task;
    let opts = BenchOptions {
        backends: backends.unwrap_or_default(),
        batch,
        size,
        iters,
        warmup,
        images,
    };
    let rows = run(&opts);
    println!("{}", markdown(&rows, &opts));
    let text = serde_json::to_string_pretty(&rows).expect("rows serialise");
    if let Err(e) = std::fs::write(&json, text) {
        eprintln!("cannot write {}: {e}", json.display());
        std::process::exit(1);
    }
    eprintln!("wrote {}", json.display());
}
