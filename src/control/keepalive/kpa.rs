//! `kpa`: what the live host does today. Its Knative-style autoscaler keeps a function's
//! instances until it has had no traffic for `scale_to_zero_after` (the decider's default,
//! 60 s), and never pre-warms: a fixed keep-alive of that span in whole minutes, rounded
//! up. At minute granularity this is kind to the KPA (its last request may fall early in
//! the minute, and the instance then goes before the end of the next one), so the KPA's
//! cold starts here are a floor.

use std::time::Duration;

use super::fixed::Fixed;

/// The live KPA after `scale_to_zero_after` of no traffic, on the minute model.
pub fn kpa(scale_to_zero_after: Duration) -> Fixed {
    Fixed::new(scale_to_zero_after.as_secs().div_ceil(60).max(1) as u32)
}
