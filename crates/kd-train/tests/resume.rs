//! Resume after a simulated kill. In its own test binary: with other training tests running
//! in the same process, runs that should be identical were seen to differ (the cause was not
//! pinned down; alone, every run is bit-for-bit reproducible).

mod common;

use std::path::Path;

use common::{DieAfterFirstEpoch, distill, fit, net, soft_target_pairs, tiny_data, twin};
use kd_models::Arch;
use kd_train::report::Silent;
use kd_train::{EpochRecord, FitConfig};

fn final_metrics(h: &[EpochRecord]) -> Vec<(f64, f64, f64)> {
    h.iter()
        .map(|e| (e.train_loss, e.valid_loss, e.accuracy))
        .collect()
}

#[test]
fn a_killed_run_resumes_to_the_same_result() {
    let (_dir, data) = tiny_data(16);
    let config = FitConfig {
        epochs: 3,
        lr: 2e-3,
        weight_decay: 0.01,
        ..FitConfig::default()
    };
    let teacher = net(Arch::ResNet18, 5);
    let student = net(Arch::ResNet18, 6);
    let build = || {
        distill(
            twin(&student, Arch::ResNet18),
            Some(&teacher),
            soft_target_pairs(),
            true,
        )
        .unwrap()
    };

    let straight = tempfile::tempdir().unwrap();
    let (_, full) = fit(
        build(),
        &data,
        &config,
        "kd",
        Some(straight.path()),
        &mut Silent,
    )
    .unwrap();

    let killed = tempfile::tempdir().unwrap();
    let path = killed.path().to_path_buf();
    let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        fit(
            build(),
            &data,
            &config,
            "kd",
            Some(&path),
            &mut DieAfterFirstEpoch,
        )
    }));
    assert!(crashed.is_err());
    assert!(Path::new(&path).join("epoch-000").is_dir());
    let (_, resumed) = fit(build(), &data, &config, "kd", Some(&path), &mut Silent).unwrap();
    assert_eq!(resumed.epochs.len(), 3);
    // Epoch 0 of the resumed run comes back from the checkpoint's JSON, whose default float
    // parser may be off by one unit in the last place: compare to 1e-12 relative.
    let (resumed, full) = (final_metrics(&resumed.epochs), final_metrics(&full.epochs));
    assert_eq!(resumed.len(), full.len());
    for (r, f) in resumed.iter().zip(&full) {
        for (x, y) in [(r.0, f.0), (r.1, f.1), (r.2, f.2)] {
            assert!((x - y).abs() <= 1e-12 * y.abs(), "{resumed:?} vs {full:?}");
        }
    }
}
