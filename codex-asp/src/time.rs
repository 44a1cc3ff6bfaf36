//! Deadlines of the crate's bounded waits, in one place.

use std::time::Duration;

use tokio::time::Instant;

/// The farthest deadline: a longer wait is cut to this, because adding a huge `Duration` to
/// an `Instant` overflows (and panics).
const FAR: Duration = Duration::from_secs(365 * 24 * 3600);

/// `start + after`, saturating at a year after `start`.
pub(crate) fn deadline_from(start: Instant, after: Duration) -> Instant {
    start + after.min(FAR)
}

/// `now + after`, saturating at a year from now.
pub(crate) fn deadline(after: Duration) -> Instant {
    deadline_from(Instant::now(), after)
}

/// Sleeps until `at`, or forever without a deadline (for an optional `select!` branch).
pub(crate) async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_saturate() {
        let start = Instant::now();
        assert_eq!(deadline_from(start, Duration::MAX), start + FAR);
        assert_eq!(
            deadline_from(start, Duration::from_secs(2)),
            start + Duration::from_secs(2)
        );
    }
}
