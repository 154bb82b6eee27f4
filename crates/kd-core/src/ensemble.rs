//! An ensemble teacher: several teachers' logits combined into one distillation target.

use burn::tensor::Tensor;
use burn::tensor::activation::log_softmax;
use serde::{Deserialize, Serialize};

/// A teacher made of other teachers (its *members*), read by logit losses like any teacher.
///
/// Its logits are
///
/// ```text
/// z = T · log Σᵢ wᵢ · softmax(zᵢ / T)        (weights wᵢ normalised to sum to 1)
/// ```
///
/// so `softmax(z / T)` — what a logit loss at temperature `T` compares the student with — is
/// exactly the weighted mean of the members' softened probabilities (their plain mean when no
/// weights are given). Set `temperature` to that of the terms that read the ensemble: a loss at
/// another temperature `T'` sees the mixture raised to the power `T / T'` and renormalised. An
/// ensemble has no taps; feature losses read its members.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ensemble {
    /// The name terms read it by.
    pub name: String,
    /// The teachers it combines, by name.
    pub members: Vec<String>,
    /// One weight per member, ≥ 0 and not all 0 (normalised to sum to 1); empty: equal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weights: Vec<f64>,
    /// The temperature `T` of the mean (default 1).
    #[serde(default = "one")]
    pub temperature: f64,
}

fn one() -> f64 {
    1.0
}

impl Ensemble {
    /// The plain mean of `members`' probabilities at `temperature`.
    pub fn mean(name: &str, members: &[&str], temperature: f64) -> Self {
        Self {
            name: name.to_string(),
            members: members.iter().map(|m| m.to_string()).collect(),
            weights: Vec::new(),
            temperature,
        }
    }

    /// The same ensemble with member weights (in member order).
    pub fn with_weights(self, weights: &[f64]) -> Self {
        Self {
            weights: weights.to_vec(),
            ..self
        }
    }

    /// What is wrong with it, if anything: no members, a member listed twice, a weight count
    /// that is not the member count, a negative, non-finite or all-zero weight, a temperature
    /// that is not positive.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let name = &self.name;
        if self.members.is_empty() {
            out.push(format!("ensemble `{name}` has no members"));
        }
        for (i, m) in self.members.iter().enumerate() {
            if self.members[..i].contains(m) {
                out.push(format!("ensemble `{name}` lists `{m}` twice"));
            }
        }
        if !self.weights.is_empty() {
            if self.weights.len() != self.members.len() {
                out.push(format!(
                    "ensemble `{name}` has {} weights for {} members",
                    self.weights.len(),
                    self.members.len()
                ));
            }
            if self.weights.iter().any(|w| !w.is_finite() || *w < 0.0) {
                out.push(format!(
                    "ensemble `{name}`: weights must be finite and ≥ 0, got {:?}",
                    self.weights
                ));
            } else if self.weights.iter().all(|w| *w == 0.0) {
                out.push(format!("ensemble `{name}`: every weight is 0"));
            }
        }
        let t = self.temperature;
        if !crate::TEMPERATURES.contains(&t) {
            out.push(format!(
                "ensemble `{name}`: temperature = {t:?} must be between {:?} and {:?}, as a loss's",
                crate::TEMPERATURES.start(),
                crate::TEMPERATURES.end()
            ));
        }
        out
    }

    /// The first problem of any of `ensembles` ([`problems`](Self::problems)), or a member that
    /// is not one of the teacher models `models`.
    pub fn check_all(ensembles: &[Ensemble], models: &[&str]) -> Result<(), String> {
        for e in ensembles {
            let problems = e.problems();
            if !problems.is_empty() {
                return Err(problems.join("; "));
            }
            if let Some(m) = e.members.iter().find(|m| !models.contains(&m.as_str())) {
                return Err(format!(
                    "ensemble `{}` has member `{m}`, which is not a teacher model; teachers: [{}]",
                    e.name,
                    models.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// The members' weights, normalised to sum to 1.
    pub fn normalised_weights(&self) -> Vec<f64> {
        let n = self.members.len();
        if self.weights.is_empty() {
            return vec![1.0 / n as f64; n];
        }
        // Scaled by the largest first: weights near f64::MAX would overflow their sum.
        let max = self.weights.iter().cloned().fold(0.0, f64::max);
        let scaled: Vec<f64> = self.weights.iter().map(|w| w / max).collect();
        let sum: f64 = scaled.iter().sum();
        scaled.iter().map(|w| w / sum).collect()
    }

    /// The ensemble's logits from its members' (`[batch, classes]` each, in member order),
    /// computed as a log-sum-exp over members for stability. Members of weight 0 are left out.
    pub fn combine(&self, logits: &[Tensor<2>]) -> Tensor<2> {
        let t = self.temperature;
        let terms: Vec<Tensor<2>> = logits
            .iter()
            .zip(self.normalised_weights())
            .filter(|(_, w)| *w > 0.0)
            .map(|(z, w)| log_softmax(z.clone().div_scalar(t), 1).add_scalar(w.ln()))
            .collect();
        let stacked: Tensor<3> = Tensor::stack(terms, 0);
        let max = stacked.clone().max_dim(0);
        let lse = (stacked - max.clone()).exp().sum_dim(0).log() + max;
        lse.squeeze_dim::<2>(0).mul_scalar(t)
    }
}
