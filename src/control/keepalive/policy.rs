//! What every keep-alive policy answers, and in what units (whole minutes).

/// What a policy decides after a function's activity: stay unloaded for `prewarm` minutes,
/// then keep an instance loaded for `keepalive` minutes. With `prewarm` 0 the instance
/// simply stays up for `keepalive` minutes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Windows {
    pub prewarm: u32,
    pub keepalive: u32,
}

/// One function's policy state.
pub trait KeepAlive: Send {
    /// The function was idle for `minutes` whole minutes between two activities (0: it was
    /// busy in consecutive minutes).
    fn observe_idle(&mut self, minutes: u32);
    /// The windows to apply after the activity just seen.
    fn windows(&self) -> Windows;
}
