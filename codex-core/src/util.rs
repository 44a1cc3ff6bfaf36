//! Small helpers the crates of codex-bridge share, so each is written once.

use std::time::Duration;

use tokio::time::Instant;

/// The stand-in for "no limit" where a deadline is needed: one year.
pub const FAR_FUTURE: Duration = Duration::from_secs(365 * 24 * 3600);

/// `start + after`, saturating at [`FAR_FUTURE`] after `start`: adding a huge `Duration` to
/// an `Instant` overflows and panics (`--timeout 18446744073709551615` parses).
pub fn deadline_from(start: Instant, after: Duration) -> Instant {
    start + after.min(FAR_FUTURE)
}

/// `now + after`, saturating like [`deadline_from`].
pub fn deadline(after: Duration) -> Instant {
    deadline_from(Instant::now(), after)
}

/// Sleeps until `deadline`, or forever when there is none: the timeout arm of a
/// `tokio::select!` whose limit is optional.
pub async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The 64-bit FNV-1a hash of `bytes`: a stable (across runs and builds) short name for a path
/// or a key, for file names. Not for security.
///
/// ```
/// assert_eq!(codex_core::util::fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
/// assert_ne!(codex_core::util::fnv1a64(b"a"), codex_core::util::fnv1a64(b"b"));
/// ```
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
