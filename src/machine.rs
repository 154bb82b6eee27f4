//! What the machine holds, for refusing a setting before it allocates more than that.

/// Total memory in bytes (`MemTotal` of `/proc/meminfo` on Linux); `None` where it cannot be
/// read.
pub fn memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Training memory is at least this many times the input batch (a ResNet keeps several
/// activations per layer for the backward pass): a lower bound, for refusing hopeless sizes.
const ACTIVATION_FACTOR: u128 = 8;

/// The largest image side an experiment or a `kd` command accepts (a ResNet's activations grow
/// with its square; 1024 px already needs gigabytes per batch).
pub const MAX_IMAGE_SIZE: usize = 1024;

/// A batch of `batch` RGB images of `size`×`size` floats whose training cannot fit in this
/// machine's memory, refused with its figures: `Err` names what it needs and what there is.
pub fn check_batch(batch: usize, size: usize) -> Result<(), String> {
    let Some(available) = memory_bytes() else {
        return Ok(());
    };
    let input = batch as u128 * 3 * size as u128 * size as u128 * 4;
    let needed = input * ACTIVATION_FACTOR;
    if needed <= u128::from(available) {
        return Ok(());
    }
    Err(format!(
        "a batch of {batch} images at {size}×{size} is {:.1} GB of input alone and needs at least {:.1} GB to train ({ACTIVATION_FACTOR} × the input), more than this machine's {:.1} GB: lower the batch size or the image size",
        input as f64 / 1e9,
        needed as f64 / 1e9,
        available as f64 / 1e9
    ))
}
