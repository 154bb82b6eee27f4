//! Summaries over seeds.

/// The mean and the sample standard deviation (over `n − 1`) of `v`; the deviation of a single
/// value is 0.
pub(crate) fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// A mean over `seeds` seeds as a table shows it: with its deviation when there are several,
/// marked as one seed's value when there is one (a deviation of 0 there would claim a spread
/// that was never measured).
pub(crate) fn mean_pm_std(mean: f64, std: f64, seeds: usize) -> String {
    match seeds {
        1 => format!("{mean:.4} (one seed)"),
        _ => format!("{mean:.4} ± {std:.4}"),
    }
}
