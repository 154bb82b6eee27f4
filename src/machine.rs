//! What the machine holds, for refusing a setting before it allocates more than that.

/// Total memory in bytes (`MemTotal` of `/proc/meminfo` on Linux); `None` where it cannot be
/// read.
pub(crate) fn memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}
