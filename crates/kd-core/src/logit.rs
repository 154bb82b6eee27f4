//! Losses on logits. Each function takes `[batch, classes]` student and teacher logits and
//! returns a scalar tensor `[1]`.

use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Int, Tensor};

/// `KL(p ‖ q)` with batch-mean reduction, from `log q` (student) and `p`, `log p` (teacher), as
/// PyTorch's `kl_div(log_q, p, reduction="batchmean")`.
fn kl_batchmean(log_q: Tensor<2>, p: Tensor<2>, log_p: Tensor<2>) -> Tensor<1> {
    let [batch, _] = p.dims();
    (p * (log_p - log_q)).sum().div_scalar(batch as f64)
}

/// Hinton et al. (2015): `KL_batchmean(log_softmax(s/T) ‖ softmax(t/T)) · T²`.
pub fn soft_target(student: Tensor<2>, teacher: Tensor<2>, temperature: f64) -> Tensor<1> {
    let log_q = log_softmax(student.div_scalar(temperature), 1);
    let log_p = log_softmax(teacher.div_scalar(temperature), 1);
    kl_batchmean(log_q, log_p.clone().exp(), log_p).mul_scalar(temperature * temperature)
}

/// Ba & Caruana (2014): mean squared error between logits.
pub fn logits_mse(student: Tensor<2>, teacher: Tensor<2>) -> Tensor<1> {
    (student - teacher).square().mean()
}

/// Zhang et al. (2018), deep mutual learning: `KL_batchmean(log_softmax(s) ‖ softmax(t))`.
pub fn mutual(student: Tensor<2>, teacher: Tensor<2>) -> Tensor<1> {
    soft_target(student, teacher, 1.0)
}

/// Logit standardisation (Sun et al., 2024): each row to zero mean and unit standard deviation
/// (population std, eps 1e-7) before the temperature is applied.
pub fn standardize(logits: Tensor<2>) -> Tensor<2> {
    let mean = logits.clone().mean_dim(1);
    let centered = logits - mean;
    let std = centered.clone().square().mean_dim(1).sqrt();
    centered / std.add_scalar(1e-7)
}

/// Zhao et al. (2022), decoupled KD: `(α·TCKD + β·NCKD)·T²`.
///
/// TCKD is the KL between the binary distributions `[p_gt, 1 − p_gt]` of teacher and student
/// (student probabilities clamped to 1e-7 before the log); NCKD the KL between the
/// distributions over the non-target classes, obtained as `softmax(z/T − 1000·onehot_gt)`.
pub fn decoupled(
    student: Tensor<2>,
    teacher: Tensor<2>,
    targets: Tensor<1, Int>,
    temperature: f64,
    alpha: f64,
    beta: f64,
) -> Tensor<1> {
    let [_, classes] = student.dims();
    let gt: Tensor<2> = targets.one_hot::<2>(classes).float();
    let p_s = softmax(student.clone().div_scalar(temperature), 1);
    let p_t = softmax(teacher.clone().div_scalar(temperature), 1);
    let binary = |p: Tensor<2>| {
        let p_gt = (p * gt.clone()).sum_dim(1);
        let p_other = p_gt.clone().neg().add_scalar(1.0);
        Tensor::cat(vec![p_gt, p_other], 1)
    };
    let b_s = binary(p_s);
    let b_t = binary(p_t);
    let tckd = kl_batchmean(
        b_s.clamp_min(1e-7).log(),
        b_t.clone(),
        b_t.clamp_min(1e-30).log(),
    );
    let masked = |z: Tensor<2>| z.div_scalar(temperature) - gt.clone().mul_scalar(1000.0);
    let log_q = log_softmax(masked(student), 1);
    let log_p = log_softmax(masked(teacher), 1);
    let nckd = kl_batchmean(log_q, log_p.clone().exp(), log_p);
    (tckd.mul_scalar(alpha) + nckd.mul_scalar(beta)).mul_scalar(temperature * temperature)
}

/// Pearson correlation of the rows of `a` and `b` (`[n, m]` → `[n]`), eps 1e-8.
fn row_pearson(a: Tensor<2>, b: Tensor<2>) -> Tensor<1> {
    let a = a.clone() - a.mean_dim(1);
    let b = b.clone() - b.mean_dim(1);
    let num = (a.clone() * b.clone()).sum_dim(1);
    let den = a.square().sum_dim(1).sqrt() * b.square().sum_dim(1).sqrt();
    let corr = num / den.add_scalar(1e-8);
    corr.flatten(0, 1)
}

/// Huang et al. (2022), DIST: `τ²·(β·(1 − mean inter-class ρ) + γ·(1 − mean intra-class ρ))`, with
/// ρ the Pearson correlation of `softmax(z/τ)` rows (inter) and columns (intra).
pub fn dist(student: Tensor<2>, teacher: Tensor<2>, beta: f64, gamma: f64, tau: f64) -> Tensor<1> {
    let p_s = softmax(student.div_scalar(tau), 1);
    let p_t = softmax(teacher.div_scalar(tau), 1);
    let inter = row_pearson(p_s.clone(), p_t.clone())
        .mean()
        .neg()
        .add_scalar(1.0);
    let intra = row_pearson(p_s.transpose(), p_t.transpose())
        .mean()
        .neg()
        .add_scalar(1.0);
    (inter.mul_scalar(beta) + intra.mul_scalar(gamma)).mul_scalar(tau * tau)
}

/// Cross-entropy of logits against class indices, batch mean.
pub fn cross_entropy(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    let [batch, classes] = logits.dims();
    let onehot: Tensor<2> = targets.one_hot::<2>(classes).float();
    (log_softmax(logits, 1) * onehot)
        .sum()
        .neg()
        .div_scalar(batch as f64)
}
