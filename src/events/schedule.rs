//! Lambda's retry schedule for an asynchronous invocation, pure: what happens after an
//! attempt, on the queue's clock (host time ÷ `[async] time_scale`).
//!
//! - A function error or timeout is retried `retries` times (0 to 2): the first retry
//!   about a minute after the attempt, the second about two.
//! - Throttling (no capacity) and host-side failures go back into the queue with a
//!   backoff of 1 s, doubling up to 5 min; they are not the function's attempts.
//! - Either way, an event older than its maximum age is not run again: it ends
//!   `EventAgeExceeded`.

/// How one attempt went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The handler failed or timed out: retried on the function-error schedule.
    FunctionError,
    /// No capacity, or the host failed before the handler ran: backoff.
    Throttled,
}

/// How an event ended, as a destination record's `requestContext.condition` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    Success,
    RetriesExhausted,
    EventAgeExceeded,
}

impl Condition {
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Success => "Success",
            Condition::RetriesExhausted => "RetriesExhausted",
            Condition::EventAgeExceeded => "EventAgeExceeded",
        }
    }
}

/// What the queue does next with the event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    Done(Condition),
    /// Back in the queue until `due_ms` (Unix ms, wall clock), with its throttle count.
    Retry {
        due_ms: i64,
        throttles: u32,
    },
}

/// The queue's clock: host durations run `scale` times faster than the wall clock.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Clock {
    pub scale: f64,
}

const FUNCTION_RETRY_S: f64 = 60.0;
const BACKOFF_START_S: f64 = 1.0;
const BACKOFF_MAX_S: f64 = 300.0;

impl Clock {
    /// Wall milliseconds for `host_s` host seconds.
    pub fn wall_ms(&self, host_s: f64) -> i64 {
        (host_s * 1000.0 / self.scale).round() as i64
    }

    /// The host seconds between two wall-clock instants.
    pub fn host_s(&self, from_ms: i64, to_ms: i64) -> f64 {
        (to_ms - from_ms).max(0) as f64 / 1000.0 * self.scale
    }

    /// When an event enqueued at `enqueued_ms` reaches `max_age_s`.
    pub fn expiry_ms(&self, enqueued_ms: i64, max_age_s: u64) -> i64 {
        enqueued_ms + self.wall_ms(max_age_s as f64)
    }
}

/// An event's history so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tries {
    /// Executions, the one just ended included.
    pub attempts: u32,
    /// Throttles before this attempt.
    pub throttles: u32,
    pub enqueued_ms: i64,
}

/// The function's rules: retries after a function error, and the maximum age (host s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rules {
    pub retries: u32,
    pub max_age_s: u64,
}

/// After an attempt that ended `outcome` at `now_ms`.
pub fn after(outcome: Outcome, t: Tries, rules: Rules, clock: Clock, now_ms: i64) -> Next {
    let Tries {
        attempts,
        throttles,
        enqueued_ms,
    } = t;
    let Rules { retries, max_age_s } = rules;
    let expiry = clock.expiry_ms(enqueued_ms, max_age_s);
    let delay_s = match outcome {
        Outcome::Success => return Next::Done(Condition::Success),
        Outcome::FunctionError if attempts > retries => {
            return Next::Done(Condition::RetriesExhausted)
        }
        // 1 min after the first attempt, 2 min after the second.
        Outcome::FunctionError => FUNCTION_RETRY_S * f64::from(attempts.clamp(1, 2)),
        Outcome::Throttled => {
            (BACKOFF_START_S * 2f64.powi(throttles.min(16) as i32)).min(BACKOFF_MAX_S)
        }
    };
    if now_ms >= expiry {
        return Next::Done(Condition::EventAgeExceeded);
    }
    // A retry past the event's age waits only until then, and ends there.
    let due_ms = (now_ms + clock.wall_ms(delay_s)).min(expiry);
    let throttles = throttles + u32::from(outcome == Outcome::Throttled);
    Next::Retry { due_ms, throttles }
}

/// Whether an event is too old to run at `now_ms`.
pub fn expired(enqueued_ms: i64, max_age_s: u64, clock: Clock, now_ms: i64) -> bool {
    now_ms >= clock.expiry_ms(enqueued_ms, max_age_s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAL: Clock = Clock { scale: 1.0 };

    fn t(attempts: u32, throttles: u32) -> Tries {
        Tries {
            attempts,
            throttles,
            enqueued_ms: 0,
        }
    }

    fn rules(retries: u32, max_age_s: u64) -> Rules {
        Rules { retries, max_age_s }
    }

    #[test]
    fn function_errors_follow_lambdas_schedule() {
        let at = |attempts, now| {
            after(
                Outcome::FunctionError,
                t(attempts, 0),
                rules(2, 21_600),
                REAL,
                now,
            )
        };
        assert_eq!(
            at(1, 1_000),
            Next::Retry {
                due_ms: 61_000,
                throttles: 0
            }
        );
        assert_eq!(
            at(2, 61_500),
            Next::Retry {
                due_ms: 181_500,
                throttles: 0
            }
        );
        assert_eq!(at(3, 181_600), Next::Done(Condition::RetriesExhausted));
        let none = after(Outcome::FunctionError, t(1, 0), rules(0, 21_600), REAL, 5);
        assert_eq!(none, Next::Done(Condition::RetriesExhausted));
        assert_eq!(
            after(Outcome::Success, t(3, 9), rules(2, 60), REAL, 10_000_000),
            Next::Done(Condition::Success),
            "a success counts even when late"
        );
    }

    #[test]
    fn throttles_back_off_to_five_minutes_within_the_age() {
        let at = |throttles, now| {
            after(
                Outcome::Throttled,
                t(0, throttles),
                rules(2, 21_600),
                REAL,
                now,
            )
        };
        assert_eq!(
            at(0, 0),
            Next::Retry {
                due_ms: 1_000,
                throttles: 1
            }
        );
        assert_eq!(
            at(1, 0),
            Next::Retry {
                due_ms: 2_000,
                throttles: 2
            }
        );
        assert_eq!(
            at(8, 0),
            Next::Retry {
                due_ms: 256_000,
                throttles: 9
            }
        );
        assert_eq!(
            at(9, 0),
            Next::Retry {
                due_ms: 300_000,
                throttles: 10
            }
        );
        assert_eq!(
            at(60, 0),
            Next::Retry {
                due_ms: 300_000,
                throttles: 61
            }
        );
        // Near the age limit the retry waits only until it, and then the event ends.
        let late = after(Outcome::FunctionError, t(1, 0), rules(2, 60), REAL, 30_000);
        assert_eq!(
            late,
            Next::Retry {
                due_ms: 60_000,
                throttles: 0
            }
        );
        let over = after(Outcome::Throttled, t(0, 3), rules(2, 60), REAL, 60_000);
        assert_eq!(over, Next::Done(Condition::EventAgeExceeded));
        assert!(expired(0, 60, REAL, 60_000) && !expired(0, 60, REAL, 59_999));
    }

    #[test]
    fn the_clock_scales_every_delay() {
        let fast = Clock { scale: 60.0 };
        let r = after(Outcome::FunctionError, t(1, 0), rules(2, 21_600), fast, 0);
        assert_eq!(
            r,
            Next::Retry {
                due_ms: 1_000,
                throttles: 0
            }
        );
        assert_eq!(fast.expiry_ms(0, 60), 1_000);
        assert!((fast.host_s(0, 1_000) - 60.0).abs() < 1e-9);
    }
}
