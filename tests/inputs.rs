//! Inputs that used to pass validation and fail later, or fail with a message that did not
//! say what was wrong: run names, device names, memory-hungry sizes, weights files, folders
//! that are not run directories. Each is refused before any work, naming the culprit.

mod common;

use common::{TinyRun, kd_bin, tiny_experiment};
use kd::KdError;
use kd::experiment::{Experiment, evaluate_run_dir, run};

fn config_error(result: Result<impl std::fmt::Debug, KdError>) -> String {
    match result {
        Err(e) if e.exit_code() == 2 => e.to_string(),
        other => panic!("expected a configuration error (exit code 2), got {other:?}"),
    }
}

/// A file with one run named `name`.
fn named(name: &str) -> String {
    format!("[student]\narch = \"resnet18\"\n\n[[runs]]\nname = \"{name}\"\n")
}

#[test]
fn a_run_name_too_long_for_a_folder_is_refused_before_any_work() {
    let long = "a".repeat(300);
    let e = config_error(Experiment::from_toml(&named(&long), "long.toml"));
    assert!(e.contains("runs[0]") && e.contains("300"), "{e}");
    // A name that fits is fine.
    Experiment::from_toml(&named(&"a".repeat(200)), "ok.toml").unwrap();
}

#[test]
fn runs_named_in_any_script_get_folders_of_their_own() {
    let text = format!("{}\n[[runs]]\nname = \"中文\"\n", named("日本語"));
    let exp = Experiment::from_toml(&text, "names.toml").unwrap();
    assert_eq!(exp.runs.len(), 2);
    // Still: names with nothing to name a folder by are refused.
    let e = config_error(Experiment::from_toml(&named("--- ..."), "dots.toml"));
    assert!(e.contains("letters or digits"), "{e}");
}

#[test]
fn device_names_are_checked_whole() {
    // flex, ndarray, tch and wgpu have one device: an index is a mistake.
    let e = kd::backend::device("flex:3").unwrap_err().to_string();
    assert!(e.contains("flex:3") && e.contains("index"), "{e}");
    // An empty name in a device list is named as such, not as another backend.
    let text = format!(
        "{}\n[training]\ndevices = [\"flex\", \"\", \"flex\"]\n",
        named("two")
    );
    let e = config_error(Experiment::from_toml(&text, "devices.toml"));
    assert!(e.contains("training.devices") && e.contains("empty"), "{e}");
}

#[test]
fn a_batch_larger_than_the_machine_is_refused_with_its_size() {
    // 4096 images of 3 × 1024 × 1024 floats: 51.5 GB for the input batch alone.
    let text = format!(
        "{}\n[data]\nsize = 1024\nbatch_size = 4096\n",
        named("huge")
    );
    let e = config_error(Experiment::from_toml(&text, "huge.toml"));
    assert!(
        e.contains("data.batch_size") && e.contains("51.5 GB"),
        "{e}"
    );
}

#[test]
fn a_weights_file_that_is_not_a_state_dict_is_refused_before_the_run_directory_is_claimed() {
    let tiny = TinyRun::new();
    let bogus = tiny.images.path().join("weights.pth");
    std::fs::write(&bogus, b"not a state dict").unwrap();
    let text = tiny_experiment(tiny.images.path(), &tiny.out_dir()).replacen(
        "[teacher]\n",
        &format!(
            "[teacher]\nweights = {{ file = \"{}\" }}\n",
            bogus.display()
        ),
        1,
    );
    let exp = Experiment::from_toml(&text, "bogus.toml").unwrap();
    let e = config_error(run(&exp, &tiny.options()));
    assert!(e.contains("weights.pth"), "{e}");
    assert!(
        !tiny.out_dir().exists(),
        "nothing was written: {:?}",
        std::fs::read_dir(tiny.out_dir()).map(|d| d.count())
    );
}

#[test]
fn eval_of_a_folder_that_is_not_a_run_directory_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let e = evaluate_run_dir(
        &kd::registry::Registry::builtin(),
        dir.path(),
        None,
        None,
        None,
        &Default::default(),
    )
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(e.contains("not a kd run directory"), "{e}");
}

#[test]
fn settings_made_bad_by_command_line_options_name_the_file_and_the_options() {
    let tiny = TinyRun::new();
    let file = tiny.out.path().join("study.toml");
    std::fs::write(&file, tiny_experiment(tiny.images.path(), &tiny.out_dir())).unwrap();
    // The file is fine; `--seeds 0,0` repeats a seed.
    let out = kd_bin()
        .args(["run", file.to_str().unwrap(), "--seeds", "0,0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("study.toml")
            && stderr.contains("command-line")
            && stderr.contains("twice"),
        "{stderr}"
    );
}
