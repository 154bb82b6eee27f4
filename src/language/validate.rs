//! Every setting of a language-model experiment checked before any work: a configuration
//! error names the key.

use kd_core::{KdLoss, LossConfig};

use super::config::LmExperiment;
use crate::KdError;

impl LmExperiment {
    /// Every setting checked before any work: a configuration error names the key.
    pub fn validate(&self, origin: &str) -> Result<(), KdError> {
        let bad = |key: &str, message: String| KdError::Config {
            origin: format!("{origin}: {key}"),
            message,
        };
        let c = &self.corpus;
        if !(c.valid_fraction > 0.0 && c.valid_fraction < 1.0) {
            return Err(bad(
                "corpus.valid_fraction",
                format!("{} must be between 0 and 1", c.valid_fraction),
            ));
        }
        if !(1..=4096).contains(&c.window) {
            return Err(bad(
                "corpus.window",
                format!("{} must be between 1 and 4096", c.window),
            ));
        }
        if c.limit_bytes == Some(0) {
            return Err(bad("corpus.limit_bytes", "0 leaves no text".into()));
        }
        for (key, m) in [("teacher", &self.teacher.model), ("student", &self.student)] {
            if m.width == 0 || m.blocks == 0 || m.heads == 0 || m.width % m.heads != 0 {
                return Err(bad(
                    key,
                    format!(
                        "width {} and heads {} must be positive with heads dividing width, blocks {} positive",
                        m.width, m.heads, m.blocks
                    ),
                ));
            }
            if m.width > 4096 || m.blocks > 64 {
                return Err(bad(key, "at most width 4096 and 64 blocks".to_string()));
            }
        }
        let t = &self.training;
        for (key, epochs, lr) in [
            ("teacher", self.teacher.epochs, self.teacher.lr),
            ("training", t.epochs, t.lr),
        ] {
            if epochs == 0 {
                return Err(bad(&format!("{key}.epochs"), "must be 1 or more".into()));
            }
            if !(lr > 0.0 && lr.is_finite()) {
                return Err(bad(&format!("{key}.lr"), format!("{lr} must be positive")));
            }
        }
        if !(1..=4096).contains(&t.batch_size) {
            return Err(bad(
                "training.batch_size",
                format!("{} must be between 1 and 4096", t.batch_size),
            ));
        }
        for (key, seeds) in [
            ("training.seeds", &t.seeds),
            ("teacher.seeds", &self.teacher.seeds),
        ] {
            if seeds.is_empty() {
                return Err(bad(key, "lists no seed".into()));
            }
            for (i, s) in seeds.iter().enumerate() {
                if seeds[..i].contains(s) {
                    return Err(bad(key, format!("lists seed {s} twice")));
                }
            }
        }
        if self.runs.is_empty() {
            return Err(bad("runs", "there is no run".into()));
        }
        for (i, run) in self.runs.iter().enumerate() {
            let key = format!("runs[{i}] (`{}`)", run.name);
            if run.name.trim().is_empty() || run.name.len() > 100 {
                return Err(bad(&key, "a run needs a name of 1 to 100 bytes".into()));
            }
            let folder = crate::experiment::slug(&run.name);
            if folder.is_empty() {
                return Err(bad(
                    &key,
                    "the name has no letters or digits to name its checkpoint folders".into(),
                ));
            }
            if let Some(other) = self.runs[..i]
                .iter()
                .find(|r| crate::experiment::slug(&r.name) == folder)
            {
                return Err(bad(
                    &key,
                    format!(
                        "`{}` and `{}` would share checkpoint folders: rename one",
                        other.name, run.name
                    ),
                ));
            }
            if let Some(loss) = &run.loss {
                if matches!(loss, LossConfig::Mutual(_)) {
                    return Err(bad(
                        &format!("{key}.loss"),
                        "mutual is deep mutual learning's term between students; a language-model run has one student and reads its teacher with a divergence (forward_kl, reverse_kl, jsd, …)".into(),
                    ));
                }
                if !loss.pairs().is_empty() {
                    return Err(bad(
                        &format!("{key}.loss"),
                        format!(
                            "{} reads layer pairs; language-model runs take logit divergences (forward_kl, reverse_kl, jsd, skew_kl, skew_reverse_kl, total_variation, soft_target, …)",
                            loss.name()
                        ),
                    ));
                }
            }
            run.objective()
                .check_values()
                .map_err(|e| bad(&key, e.to_string()))?;
            if let Some(p) = &run.on_policy {
                if run.loss.is_none() && !p.sequence_level {
                    return Err(bad(
                        &format!("{key}.on_policy"),
                        "on the student's own samples there is nothing to learn without a divergence to the teacher: add a loss".into(),
                    ));
                }
                p.rollout(0)
                    .map_err(|e| bad(&format!("{key}.on_policy"), e.to_string()))?;
            }
        }
        if self.samples.prompt.is_empty() {
            return Err(bad(
                "samples.prompt",
                "is empty: a model needs a token to continue".into(),
            ));
        }
        if self.samples.tokens > 10_000 {
            return Err(bad("samples.tokens", "at most 10000".into()));
        }
        if !(self.samples.temperature > 0.0 && self.samples.temperature.is_finite()) {
            return Err(bad(
                "samples.temperature",
                format!("{} must be positive", self.samples.temperature),
            ));
        }
        Ok(())
    }
}
