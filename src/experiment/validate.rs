//! Checks an experiment file must pass before any work starts: every number in range, every
//! run's checkpoint folder its own, the teacher's weights present. (Layer names and connectors
//! need models: [`super::run`] resolves them before the teacher trains.)

use std::collections::BTreeMap;

use kd_core::Mix;

use kd_core::DEFAULT_TEACHER;

use super::config::{Experiment, RunSection, TeacherSection, label_fn};
use super::model_section::{ModelSection, Weights};
use crate::KdError;
use crate::registry::{INPUT_SIZE_KEY, Registry, split_input_size};

pub use crate::machine::MAX_IMAGE_SIZE;
/// The largest batch an experiment accepts.
pub const MAX_BATCH_SIZE: usize = 4096;
/// The most students deep mutual learning trains together.
pub const MAX_MUTUAL_STUDENTS: usize = 16;

impl Experiment {
    /// `training.devices`: not beside `training.backend`, and all of one backend.
    fn check_devices(&self) -> Result<(), String> {
        let devices = &self.training.devices;
        if devices.is_empty() {
            return Ok(());
        }
        if let Some(backend) = &self.training.backend {
            return Err(format!(
                "training: set `backend` (one device) or `devices` (several), not both; backend = {backend:?}, devices = {devices:?}"
            ));
        }
        if devices.iter().any(|d| d.trim().is_empty()) {
            return Err(format!(
                "training.devices = {devices:?} has an empty name: list device names such as \"cuda:0\""
            ));
        }
        let kinds: std::collections::BTreeSet<String> =
            devices.iter().map(|d| crate::backend::kind(d)).collect();
        if kinds.len() > 1 {
            return Err(format!(
                "training.devices = {devices:?} mixes backends ({}): list devices of one backend",
                kinds.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
        let one_device_only = |r: &RunSection| {
            if r.mutual.is_some() {
                Some("deep mutual learning trains its students")
            } else if r.losses.iter().any(|t| t.loss.kind == "crd") {
                Some("CRD updates its memory banks")
            } else {
                None
            }
        };
        let found = self
            .runs
            .iter()
            .enumerate()
            .find_map(|(i, r)| one_device_only(r).map(|what| (i, r, what)));
        if devices.len() > 1
            && let Some((i, run, what)) = found
        {
            return Err(format!(
                "{}: {what} on one device, but training.devices lists {}",
                run.origin(i),
                devices.len()
            ));
        }
        Ok(())
    }

    /// Everything that can be checked without data, models or the registry: numeric ranges
    /// (naming the key and the value), unique run folders and seeds, the label function and the
    /// teacher's weights. (Model names, their settings and loss kinds are resolved by
    /// [`super::run`] against its registry.) Errors are [`KdError::Config`] (exit code 2) with `origin` as the file.
    pub fn validate(&self, origin: &str) -> Result<(), KdError> {
        let bad = |message: String| KdError::Config {
            origin: origin.to_string(),
            message,
        };
        if self.runs.is_empty() {
            return Err(bad(
                "`runs` is empty: add at least one [[runs]] table".into()
            ));
        }
        if self.training.seeds.is_empty() {
            return Err(bad("`training.seeds` is empty".into()));
        }
        let problems = self.numeric_problems();
        if !problems.is_empty() {
            return Err(bad(problems.join("\n")));
        }
        let mut seen_seeds = std::collections::BTreeSet::new();
        for seed in &self.training.seeds {
            if *seed > i64::MAX as u64 {
                return Err(bad(format!(
                    "training.seeds: {seed} is larger than a TOML integer holds (2⁶³ − 1)"
                )));
            }
            if !seen_seeds.insert(seed) {
                return Err(bad(format!(
                    "training.seeds lists seed {seed} twice: each seed trains once"
                )));
            }
        }
        self.check_run_folders().map_err(bad)?;
        self.check_devices().map_err(bad)?;
        let models = self
            .teacher_keys()
            .into_iter()
            .map(|(key, _, teacher)| (key, teacher.model()))
            .chain([("student".to_string(), self.student.clone())]);
        for (key, model) in models {
            if let Weights::File(p) = &model.weights
                && !p.is_file()
            {
                return Err(bad(format!("{key}.weights: no such file {}", p.display())));
            }
            if model.weights == Weights::ImagenetKeras && model.arch != "resnet50" {
                return Err(bad(format!(
                    "{key}.weights = \"imagenet-keras\" is a ResNet-50, but {key}.arch is {}",
                    model.arch
                )));
            }
        }
        self.check_teacher_names().map_err(bad)?;
        label_fn(&self.data.label).map_err(|e| bad(format!("data.label: {e}")))?;
        Ok(())
    }

    /// Every name the experiment gives resolves in `registry` and takes its settings: the
    /// teacher's and the student's model, each run's loss kinds and their parameters. Errors
    /// are [`KdError::Config`] (exit code 2) naming the section and listing what is registered.
    pub fn check_names(&self, registry: &Registry, origin: &str) -> Result<(), KdError> {
        let bad = |message: String| KdError::Config {
            origin: origin.to_string(),
            message,
        };
        // Keys a section does not know land among the model's settings: say what else it takes.
        for (section, model, keys) in self.model_sections() {
            registry
                .check_model(&model.arch, &model.settings)
                .map_err(|e| {
                    let also = match e.contains("unknown field") {
                        true => format!(" (the [{section}] section itself takes {keys})"),
                        false => String::new(),
                    };
                    bad(format!("{section}: {e}{also}"))
                })?;
        }
        for (i, run) in self.runs.iter().enumerate() {
            run.objective(registry)
                .map_err(|e| bad(format!("{}.{e}", run.origin(i))))?;
        }
        Ok(())
    }

    /// Out-of-range numbers, as `key = value: why`.
    fn numeric_problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let teachers = self.teacher_keys();
        let teacher_epochs = teachers
            .iter()
            .map(|(key, _, t)| (format!("{key}.epochs"), t.epochs, 100_000));
        for (key, value, max) in [
            ("data.size".to_string(), self.data.size, MAX_IMAGE_SIZE),
            (
                "data.batch_size".into(),
                self.data.batch_size,
                MAX_BATCH_SIZE,
            ),
            ("training.epochs".into(), self.training.epochs, 100_000),
            (
                "training.grad_accumulation".into(),
                self.training.grad_accumulation,
                100_000,
            ),
        ]
        .into_iter()
        .chain(teacher_epochs)
        {
            if !(1..=max).contains(&value) {
                out.push(format!("{key} = {value}: must be between 1 and {max}"));
            }
        }
        if out.is_empty() {
            // What a model sees: the data's size, or its section's input_size.
            let mut sides = vec![("data.size".to_string(), self.data.size)];
            for (section, model, _) in self.model_sections() {
                if let Ok((Some(side), _)) = split_input_size(&model.settings) {
                    sides.push((format!("{section}.{INPUT_SIZE_KEY}"), side));
                }
            }
            for (key, side) in sides {
                if let Err(why) = crate::machine::check_batch(self.data.batch_size, side) {
                    out.push(format!(
                        "data.batch_size = {} with {key} = {side}: {why}",
                        self.data.batch_size
                    ));
                }
            }
        }
        if let Err(why) = self.training.optimizer.check() {
            out.push(format!("training.optimizer: {why}"));
        }
        if let Err(why) = self.training.schedule.check() {
            out.push(format!("training.schedule: {why}"));
        }
        if let Some(Err(why)) = self.training.early_stopping.map(|e| e.check()) {
            out.push(format!("training.early_stopping: {why}"));
        }
        for (i, run) in self.runs.iter().enumerate() {
            if let Some(Err(why)) = run.augment.as_ref().map(kd_data::Augmentation::validate) {
                out.push(format!("{}.{why}", run.origin(i)));
            }
        }
        let mut real = |key: String, value: f64, ok: bool, why: &str| {
            if !value.is_finite() || !ok {
                out.push(format!("{key} = {value}: {why}"));
            }
        };
        let pct = self.data.valid_pct;
        real(
            "data.valid_pct".into(),
            pct,
            pct > 0.0 && pct < 1.0,
            "must be above 0 and below 1 (the share of images held out for validation)",
        );
        let teacher_lrs = teachers
            .iter()
            .map(|(key, _, t)| (format!("{key}.lr"), t.lr));
        for (key, lr) in [("training.lr".to_string(), self.training.lr)]
            .into_iter()
            .chain(teacher_lrs)
        {
            real(key, lr, lr > 0.0, "must be a positive number");
        }
        let wd = self.training.weight_decay;
        real(
            "training.weight_decay".into(),
            wd,
            wd >= 0.0,
            "must be 0 or more",
        );
        for (i, run) in self.runs.iter().enumerate() {
            let at = |key: &str| format!("{}.{key}", run.origin(i));
            match run.mix {
                Mix::Lerp { weight, .. } => real(
                    at("mix.weight"),
                    weight,
                    (0.0..=1.0).contains(&weight),
                    "must be between 0 and 1 ((1 − w)·CE + w·KD)",
                ),
                Mix::Sum { ce } => real(at("mix.ce"), ce, ce >= 0.0, "must be 0 or more"),
            }
            if let Some(m) = &run.mutual {
                real(
                    at("mutual.students"),
                    m.students as f64,
                    (2..=MAX_MUTUAL_STUDENTS).contains(&m.students),
                    "deep mutual learning trains two students or more together, at most 16 (each holds a model, its gradients and its optimizer state in memory)",
                );
                real(
                    at("mutual.weight"),
                    m.weight,
                    m.weight >= 0.0,
                    "must be 0 or more",
                );
            }
            for (j, term) in run.losses.iter().enumerate() {
                real(
                    at(&format!("losses[{j}].weight")),
                    term.weight,
                    term.weight >= 0.0,
                    "must be 0 or more",
                );
            }
        }
        out
    }

    /// Every model section, teachers first, with the key messages name it by and the keys the
    /// section itself takes (every other key is a model setting).
    fn model_sections(&self) -> Vec<(String, ModelSection, &'static str)> {
        let teacher_keys = "arch, weights, input_size, epochs, lr, seed, reuse";
        let teachers = self
            .teacher_keys()
            .into_iter()
            .map(|(key, _, t)| (key, t.model(), teacher_keys));
        let student = (
            "student".to_string(),
            self.student.clone(),
            "arch, weights, input_size",
        );
        teachers.chain([student]).collect()
    }

    /// Each teacher with the key messages name it by (`teacher`, ``teachers[1] (`r50b`)``).
    pub(super) fn teacher_keys(&self) -> Vec<(String, &str, &TeacherSection)> {
        let first = self
            .teacher
            .iter()
            .map(|t| ("teacher".to_string(), DEFAULT_TEACHER, t));
        let named = self.teachers.iter().enumerate().map(|(i, t)| {
            (
                format!("teachers[{i}] (`{}`)", t.name),
                t.name.as_str(),
                &t.section,
            )
        });
        first.chain(named).collect()
    }

    /// Teacher and ensemble names are unique, ensembles are sound and combine teachers, every
    /// term reads a teacher there is (and a run that distils has one), no feature loss reads
    /// an ensemble.
    fn check_teacher_names(&self) -> Result<(), String> {
        let names = self.teacher_names();
        for (i, n) in names.iter().enumerate() {
            if names[..i].contains(n) {
                return Err(format!(
                    "two teachers or ensembles are called `{n}` (a `[teacher]` is called `{DEFAULT_TEACHER}`)"
                ));
            }
        }
        let models: Vec<&str> = self.teacher_sections().iter().map(|(n, _)| *n).collect();
        kd_core::Ensemble::check_all(&self.ensembles, &models)?;
        for (i, run) in self.runs.iter().enumerate() {
            for (j, term) in run.losses.iter().enumerate() {
                let at = format!("{}.losses[{j}]", run.origin(i));
                match &term.teacher {
                    Some(n) if !names.contains(&n.as_str()) => {
                        return Err(format!(
                            "{at}: teacher `{n}` is not a teacher or ensemble of this file; there are: [{}]",
                            names.join(", ")
                        ));
                    }
                    None if models.is_empty() => {
                        return Err(format!(
                            "{at}: a distillation term, but the file has no `[teacher]` or `[[teachers]]`"
                        ));
                    }
                    None if self.teacher.is_none() && models.len() > 1 => {
                        return Err(format!(
                            "{at}: say which teacher it reads (`teacher = \"…\"`): there are several: [{}]",
                            names.join(", ")
                        ));
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Every run × seed gets its own checkpoint folder: names that differ only in case or
    /// punctuation ("KD soft", "kd-soft") would share one and silently resume each other.
    fn check_run_folders(&self) -> Result<(), String> {
        let mut folders: BTreeMap<String, String> = BTreeMap::new();
        for (i, run) in self.runs.iter().enumerate() {
            for &seed in &self.training.seeds {
                let name = self.run_name(run, seed);
                let folder = slug(&name);
                if folder.len() > MAX_FOLDER_NAME {
                    return Err(format!(
                        "{}: the name is {} characters; its folder name ({} bytes) must stay within {MAX_FOLDER_NAME} bytes: shorten it",
                        run.origin(i),
                        run.name.chars().count(),
                        folder.len()
                    ));
                }
                if folder.is_empty() {
                    return Err(format!(
                        "run name `{}` has no letters or digits to name its folder",
                        run.name
                    ));
                }
                if let Some(other) = folders.insert(folder.clone(), name.clone()) {
                    return Err(if other == name {
                        format!("two runs are named `{}`", run.name)
                    } else {
                        format!(
                            "runs `{other}` and `{name}` would share the checkpoint folder \
                             `checkpoints/{folder}`: rename one"
                        )
                    });
                }
            }
        }
        Ok(())
    }
}

/// The folder name of a run: lower-case letters and digits, other characters as single dashes.
/// The longest checkpoint folder name: file systems take 255 bytes, and kd adds suffixes.
const MAX_FOLDER_NAME: usize = 200;

pub(crate) fn slug(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_alphanumeric() {
                c.to_lowercase().next().unwrap_or(c)
            } else {
                '-'
            }
        })
        .collect::<String>()
        .split('-')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}
