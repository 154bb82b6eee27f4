//! Every training kd runs goes through Burn's `Learner`: no source file outside the optimizer
//! definitions holds or steps an optimizer of its own, so no hand-written epoch loop can train
//! a model beside Burn's.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn only_burns_learner_steps_an_optimizer() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["src", "crates", "xtask/src", "examples"] {
        rust_files(&root.join(dir), &mut files);
    }
    files.retain(|f| !f.components().any(|c| c.as_os_str() == "tests"));
    assert!(files.len() > 50, "found only {} source files", files.len());
    // Where optimizers are defined and built (kd-train's adam.rs and optimizer.rs).
    let defining = [
        "crates/kd-train/src/adam.rs",
        "crates/kd-train/src/optimizer.rs",
    ];
    let stepping = [
        "ModuleOptimizer",
        ".optimizer_step(",
        "fit_members",
        "fit_one_cycle(",
    ];
    let mut found = Vec::new();
    for file in &files {
        let rel = file
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if defining.contains(&rel.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for pattern in stepping {
                if code.contains(pattern) {
                    found.push(format!("{rel}:{}: {}", i + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "an optimizer stepped outside Burn's Learner:\n{}",
        found.join("\n")
    );
}
