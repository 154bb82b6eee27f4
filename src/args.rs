//! Parsers for the command line's numeric arguments: out-of-range values are usage errors
//! (exit code 2, naming the range) instead of panics or huge allocations later.

/// Parse `text` as a whole number in `min..=max`.
///
/// ```
/// assert_eq!(kd::args::bounded("64", 1, 1024), Ok(64));
/// assert!(kd::args::bounded("0", 1, 1024).unwrap_err().contains("1 to 1024"));
/// ```
pub fn bounded(text: &str, min: usize, max: usize) -> Result<usize, String> {
    let value: usize = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a whole number from {min} to {max}"))?;
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{value} is out of range: expected {min} to {max}"))
    }
}

/// A seed: what a TOML integer holds (0 to 2⁶³ − 1), so that the resolved experiment can be
/// written back as the file it came from.
pub fn seed(text: &str) -> Result<u64, String> {
    bounded(text, 0, i64::MAX as usize).map(|s| s as u64)
}

/// An image side in pixels: 1 to [`crate::experiment::MAX_IMAGE_SIZE`].
pub fn image_side(text: &str) -> Result<usize, String> {
    bounded(text, 1, crate::experiment::MAX_IMAGE_SIZE)
}

/// A batch size: 1 to [`crate::experiment::MAX_BATCH_SIZE`].
pub fn batch_size(text: &str) -> Result<usize, String> {
    bounded(text, 1, crate::experiment::MAX_BATCH_SIZE)
}
