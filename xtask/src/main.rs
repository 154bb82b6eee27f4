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
