//! Losses on intermediate outputs. Each function takes one student and one teacher map
//! `[batch, channels, height, width]` (after any connector) and returns a scalar `[1]`; the
//! layer sum is done by the caller. Taps of other ranks reach them through [`as_map`]: a
//! sequence's features are its channels and its positions its spatial axis, so Attention and
//! NST compare per-position statistics, FitNet and Activation Boundaries compare values
//! position by position, and Similarity, RKD and PKT (like CRD) compare each item's values
//! flattened.

use burn::tensor::Tensor;
use burn::tensor::module::adaptive_avg_pool2d;

use crate::Tap;

/// A tap seen as a map: a vector `[b, f]` as `[b, f, 1, 1]`, a sequence `[b, n, d]` as
/// `[b, d, n, 1]` (features as channels, positions along the height), a map as it is.
pub fn as_map(tap: Tap) -> Tensor<4> {
    match tap {
        Tap::Vector(t) => {
            let [b, f] = t.dims();
            t.reshape([b, f, 1, 1])
        }
        Tap::Sequence(t) => t.swap_dims(1, 2).unsqueeze_dim(3),
        Tap::Map(t) => t,
    }
}

/// `max(√sum_sq, eps)` computed as `√max(sum_sq, eps²)`: the same value, but a zero vector (the
/// difference of a sample with itself, a dead feature map) gets a zero gradient as in PyTorch's
/// `clamp_min(norm, eps)`, where `√0` would back-propagate `0 · ∞ = NaN`.
fn clamped_norm<const D: usize>(sum_sq: Tensor<D>, eps: f64) -> Tensor<D> {
    sum_sq.clamp_min(eps * eps).sqrt()
}

/// Divide each row of `[n, m]` by its L2 norm (clamped at `eps`), as
/// `torch.nn.functional.normalize(x, dim=1, eps)`.
pub fn l2_normalize(x: Tensor<2>, eps: f64) -> Tensor<2> {
    let norm = clamped_norm(x.clone().square().sum_dim(1), eps);
    x / norm
}

/// Average-pool the larger of two maps down to the other's spatial size.
pub fn match_spatial(a: Tensor<4>, b: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
    let [_, _, ha, wa] = a.dims();
    let [_, _, hb, wb] = b.dims();
    if ha * wa > hb * wb {
        (adaptive_avg_pool2d(a, [hb, wb]), b)
    } else if hb * wb > ha * wa {
        let pooled = adaptive_avg_pool2d(b, [ha, wa]);
        (a, pooled)
    } else {
        (a, b)
    }
}

/// The normalised attention map of Zagoruyko & Komodakis (2017): `normalize(mean_c(|f|^p))`
/// flattened to `[batch, h·w]`.
pub fn attention_map(f: Tensor<4>, p: f64) -> Tensor<2> {
    let am: Tensor<2> = f.abs().powf_scalar(p).mean_dim(1).flatten(1, 3);
    l2_normalize(am, 1e-12)
}

/// Attention transfer: `mse(at(f_s), at(f_t))`.
pub fn attention(student: Tensor<4>, teacher: Tensor<4>, p: f64) -> Tensor<1> {
    let (s, t) = match_spatial(student, teacher);
    (attention_map(s, p) - attention_map(t, p)).square().mean()
}

/// FitNets (Romero et al., 2015) hint loss: `mse(f_s, f_t)`.
pub fn fitnet(student: Tensor<4>, teacher: Tensor<4>) -> Tensor<1> {
    let (s, t) = match_spatial(student, teacher);
    (s - t).square().mean()
}

fn gram_normalized(f: Tensor<4>) -> Tensor<2> {
    let flat: Tensor<2> = f.flatten(1, 3);
    let g = flat.clone().matmul(flat.transpose());
    l2_normalize(g, 1e-12)
}

/// Similarity-preserving KD (Tung & Mori, 2019): `mse(normalize(G_s), normalize(G_t))` with
/// `G = F·Fᵀ` over the flattened batch.
pub fn similarity(student: Tensor<4>, teacher: Tensor<4>) -> Tensor<1> {
    (gram_normalized(student) - gram_normalized(teacher))
        .square()
        .mean()
}

/// Activation boundaries (Heo et al., 2019), margin `m`:
/// `mean((s+m)²·[s>−m ∧ t≤0] + (s−m)²·[s≤m ∧ t>0])`.
pub fn activation_boundaries(student: Tensor<4>, teacher: Tensor<4>, margin: f64) -> Tensor<1> {
    let (s, t) = match_spatial(student, teacher);
    let neg = s
        .clone()
        .greater_elem(-margin)
        .bool_and(t.clone().lower_equal_elem(0.0))
        .float();
    let pos = s
        .clone()
        .lower_equal_elem(margin)
        .bool_and(t.greater_elem(0.0))
        .float();
    let loss = s.clone().add_scalar(margin).square() * neg + s.sub_scalar(margin).square() * pos;
    loss.mean()
}

/// Pairwise Euclidean distances of rows, as RepDistiller's `pdist` (squared distances clamped
/// at 1e-12 before the root, zero diagonal).
fn pdist(e: Tensor<2>) -> Tensor<2> {
    let [n, _] = e.dims();
    let sq = e.clone().square().sum_dim(1); // [n, 1]
    let prod = e.clone().matmul(e.transpose());
    let d2 = (sq.clone() + sq.transpose() - prod.mul_scalar(2.0)).clamp_min(1e-12);
    let off_diag = Tensor::<2>::eye(n, &d2.device()).neg().add_scalar(1.0);
    d2.sqrt() * off_diag
}

fn smooth_l1(a: Tensor<2>, b: Tensor<2>) -> Tensor<1> {
    let d = (a - b).abs();
    let small = d.clone().lower_elem(1.0).float();
    let quad = d.clone().square().mul_scalar(0.5);
    let lin = d.sub_scalar(0.5);
    (quad * small.clone() + lin * small.neg().add_scalar(1.0)).mean()
}

/// RKD distance term (Park et al., 2019): smooth-L1 between pairwise distances, each normalised
/// by its mean off-diagonal distance.
pub fn rkd_distance(student: Tensor<4>, teacher: Tensor<4>) -> Tensor<1> {
    let norm = |f: Tensor<4>| {
        let d = pdist(f.flatten(1, 3));
        let [n, _] = d.dims();
        let mean = d.clone().sum().div_scalar((n * n - n).max(1) as f64);
        d / mean.unsqueeze::<2>()
    };
    smooth_l1(norm(student), norm(teacher.detach()))
}

/// RKD angle term: smooth-L1 between the cosines of the angles formed by every triplet.
pub fn rkd_angle(student: Tensor<4>, teacher: Tensor<4>) -> Tensor<1> {
    let angles = |f: Tensor<4>| {
        let e: Tensor<2> = f.flatten(1, 3);
        let [n, _] = e.dims();
        let diff = e.clone().unsqueeze_dim::<3>(0) - e.unsqueeze_dim::<3>(1); // [n, n, m]
        let norm = clamped_norm(diff.clone().square().sum_dim(2), 1e-12);
        let unit = diff / norm;
        unit.clone()
            .matmul(unit.swap_dims(1, 2))
            .reshape([1, n * n * n])
    };
    smooth_l1(angles(student), angles(teacher.detach()))
}

/// Probabilistic knowledge transfer (Passalis & Tefas, 2018), RepDistiller's form (eps 1e-7).
pub fn pkt(student: Tensor<4>, teacher: Tensor<4>) -> Tensor<1> {
    let eps = 1e-7;
    let cond = |f: Tensor<4>| {
        let x: Tensor<2> = f.flatten(1, 3);
        let norm = x.clone().square().sum_dim(1).sqrt();
        let x = x / norm.add_scalar(eps);
        let sim = x
            .clone()
            .matmul(x.transpose())
            .add_scalar(1.0)
            .div_scalar(2.0);
        let total = sim.clone().sum_dim(1);
        sim / total
    };
    let s = cond(student);
    let t = cond(teacher);
    (t.clone() * (t.add_scalar(eps) / s.add_scalar(eps)).log()).mean()
}

fn poly_kernel(a: Tensor<3>, b: Tensor<3>) -> Tensor<3> {
    // a: [b, ca, hw], b: [b, cb, hw] -> [b, cb, ca]
    b.matmul(a.swap_dims(1, 2)).square()
}

/// Neuron selectivity transfer (Huang & Wang, 2017): squared MMD with a degree-2 polynomial
/// kernel between the channels' L2-normalised spatial activations.
pub fn nst(student: Tensor<4>, teacher: Tensor<4>) -> Tensor<1> {
    let (s, t) = match_spatial(student, teacher);
    let flat = |f: Tensor<4>| {
        let [b, c, h, w] = f.dims();
        let x: Tensor<2> = f.reshape([b * c, h * w]);
        l2_normalize(x, 1e-12).reshape([b, c, h * w])
    };
    let s = flat(s);
    let t = flat(t);
    poly_kernel(t.clone(), t.clone()).mean().detach()
        - poly_kernel(s.clone(), t).mean().mul_scalar(2.0)
        + poly_kernel(s.clone(), s).mean()
}
