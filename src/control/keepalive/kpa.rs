//! `kpa`: what the live host does today. Its Knative-style autoscaler keeps a function's
//! instances until it has had no traffic for `scale_to_zero_after` (the decider's default,
//! 60 s), and never pre-warms. On the minute model that is a keep-alive of that span in
//! whole minutes, rounded up: after a busy minute the instance is counted loaded through
//! the next ceil(span / 60 s) minutes. At minute granularity this is kind to the KPA (its
//! last request may fall early in the minute, and the instance then goes before the end of
//! the next one), so the KPA's cold starts here are a floor.

use std::time::Duration;

use super::policy::{KeepAlive, Windows};

pub struct Kpa {
    minutes: u32,
}

impl Kpa {
    pub fn new(scale_to_zero_after: Duration) -> Self {
        Kpa {
            minutes: scale_to_zero_after.as_secs().div_ceil(60).max(1) as u32,
        }
    }
}

impl KeepAlive for Kpa {
    fn observe_idle(&mut self, _minutes: u32) {}

    fn windows(&self) -> Windows {
        Windows {
            prewarm: 0,
            keepalive: self.minutes,
        }
    }
}
