//! Losses on logits. Each function takes `[rows, classes]` student and teacher logits (one row
//! per item, or per valid position) and returns a scalar tensor `[1]`.

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

// Token-level divergences (GKD, MiniLLM, DistiLLM): each is the mean over rows (items, or
// valid positions) of a divergence between the softened distributions `p_s = softmax(s/T)`
// and `p_t = softmax(t/T)`, without the `T²` factor of Hinton's loss (as TRL's GKD trainer).

/// `KL(x ‖ y)` of each row from log-probabilities, `[rows, 1]`.
fn kl_rows(log_x: Tensor<2>, log_y: Tensor<2>) -> Tensor<2> {
    (log_x.clone().exp() * (log_x - log_y)).sum_dim(1)
}

/// `log(a·x + b·y)` elementwise from `log x` and `log y`, for weights `a, b > 0`, computed as a
/// log-sum-exp so that tiny probabilities do not underflow.
fn log_mixture(log_x: Tensor<2>, a: f64, log_y: Tensor<2>, b: f64) -> Tensor<2> {
    let x = log_x.add_scalar(a.ln());
    let y = log_y.add_scalar(b.ln());
    let top = x.clone().max_pair(y.clone());
    top.clone() + ((x - top.clone()).exp() + (y - top).exp()).log()
}

/// Both sides' log-probabilities at temperature `temperature`: `(log p_s, log p_t)`.
fn log_probs(student: Tensor<2>, teacher: Tensor<2>, temperature: f64) -> (Tensor<2>, Tensor<2>) {
    (
        log_softmax(student.div_scalar(temperature), 1),
        log_softmax(teacher.div_scalar(temperature), 1),
    )
}

/// Forward KL, `mean KL(p_t ‖ p_s)`: mass-covering (GKD with β = 0).
pub fn forward_kl(student: Tensor<2>, teacher: Tensor<2>, temperature: f64) -> Tensor<1> {
    let (log_s, log_t) = log_probs(student, teacher, temperature);
    kl_rows(log_t, log_s).mean()
}

/// Reverse KL, `mean KL(p_s ‖ p_t)`: mode-seeking (MiniLLM; GKD with β = 1).
pub fn reverse_kl(student: Tensor<2>, teacher: Tensor<2>, temperature: f64) -> Tensor<1> {
    let (log_s, log_t) = log_probs(student, teacher, temperature);
    kl_rows(log_s, log_t).mean()
}

/// Generalised Jensen–Shannon divergence (Agarwal et al., 2024, GKD eq. 1, as TRL's
/// `generalized_jsd_loss`): with `m = β·p_t + (1 − β)·p_s`,
/// `mean [β·KL(p_t ‖ m) + (1 − β)·KL(p_s ‖ m)]`; β = 0 is exactly the forward KL, β = 1 the
/// reverse KL (and β → 0, β → 1 approach them once divided by β or 1 − β).
pub fn generalized_jsd(
    student: Tensor<2>,
    teacher: Tensor<2>,
    beta: f64,
    temperature: f64,
) -> Tensor<1> {
    let (log_s, log_t) = log_probs(student, teacher, temperature);
    if beta <= 0.0 {
        return kl_rows(log_t, log_s).mean();
    }
    if beta >= 1.0 {
        return kl_rows(log_s, log_t).mean();
    }
    let log_m = log_mixture(log_t.clone(), beta, log_s.clone(), 1.0 - beta);
    let to_teacher = kl_rows(log_t, log_m.clone()).mul_scalar(beta);
    let to_student = kl_rows(log_s, log_m).mul_scalar(1.0 - beta);
    (to_teacher + to_student).mean()
}

/// Skew KL (Ko et al., 2024, DistiLLM): `mean KL(p_t ‖ α·p_t + (1 − α)·p_s)`; α = 0 is the
/// forward KL.
pub fn skew_kl(student: Tensor<2>, teacher: Tensor<2>, alpha: f64, temperature: f64) -> Tensor<1> {
    let (log_s, log_t) = log_probs(student, teacher, temperature);
    if alpha <= 0.0 {
        return kl_rows(log_t, log_s).mean();
    }
    let log_m = log_mixture(log_t.clone(), alpha, log_s, 1.0 - alpha);
    kl_rows(log_t, log_m).mean()
}

/// Skew reverse KL (DistiLLM): `mean KL(p_s ‖ (1 − α)·p_t + α·p_s)`; α = 0 is the reverse
/// KL.
pub fn skew_reverse_kl(
    student: Tensor<2>,
    teacher: Tensor<2>,
    alpha: f64,
    temperature: f64,
) -> Tensor<1> {
    let (log_s, log_t) = log_probs(student, teacher, temperature);
    if alpha <= 0.0 {
        return kl_rows(log_s, log_t).mean();
    }
    let log_m = log_mixture(log_t, 1.0 - alpha, log_s.clone(), alpha);
    kl_rows(log_s, log_m).mean()
}

/// Total variation distance, `mean ½·Σ_c |p_s − p_t|` (Wen et al., 2023).
pub fn total_variation(student: Tensor<2>, teacher: Tensor<2>, temperature: f64) -> Tensor<1> {
    let (log_s, log_t) = log_probs(student, teacher, temperature);
    (log_s.exp() - log_t.exp())
        .abs()
        .sum_dim(1)
        .mul_scalar(0.5)
        .mean()
}
