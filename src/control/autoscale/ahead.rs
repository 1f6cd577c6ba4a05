//! Scaling ahead of the load: each version's arrival rate per bucket (`[keepalive]
//! forecast_bucket`, a minute by default) goes through the online forecaster selection of
//! `control::forecast::select`, and while the forecast says the function is busy (at least
//! `forecast_min_rps`), the decider keeps at least the instances that forecast needs:
//! the forecast rate × how long a request stays inside (Little's law, from the load
//! window's averages), over one instance's target concurrency. The KPA then is not the
//! first to notice a ramp the forecasters saw coming.
//!
//! Nothing reads a clock: `now` is a parameter.

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::control::forecast::select::{Forecaster, Selector};
use crate::manifest::config::KeepAliveConfig;

pub struct Ahead {
    bucket: Duration,
    min_rps: f64,
    selector: Selector,
    /// Where the current bucket began, and the deployment's request count then.
    start: Option<(Instant, u64)>,
    /// The last bucket's rate.
    last: f64,
    dirty: bool,
}

impl Ahead {
    pub fn new(cfg: &KeepAliveConfig, saved: Option<&Value>) -> Self {
        Ahead {
            bucket: cfg.forecast_bucket.0.max(Duration::from_millis(100)),
            min_rps: cfg.forecast_min_rps,
            selector: saved
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .unwrap_or_default(),
            start: None,
            last: 0.0,
            dirty: false,
        }
    }

    /// At a decision: `requests` is the deployment's count of requests so far. A bucket
    /// that has ended goes into the series as its rate, per second.
    pub fn observe(&mut self, requests: u64, now: Instant) {
        match self.start {
            None => self.start = Some((now, requests)),
            Some((t, n)) => {
                let elapsed = now.saturating_duration_since(t);
                if elapsed >= self.bucket {
                    let rate = requests.saturating_sub(n) as f64 / elapsed.as_secs_f64();
                    // A function quiet now and in the last bucket is not worth five fits.
                    let quiet = rate < self.min_rps && self.last < self.min_rps;
                    if quiet {
                        self.selector.observe_quiet(rate);
                    } else {
                        self.selector.observe(rate);
                    }
                    self.last = rate;
                    self.start = Some((now, requests));
                    self.dirty = true;
                }
            }
        }
    }

    /// The forecast of the next bucket's rate (per second), and by which forecaster.
    pub fn forecast(&self) -> Option<(Forecaster, f64)> {
        self.selector.best().map(|(f, v)| (f, v.max(0.0)))
    }

    /// The instances the forecast needs, when it says the function is busy: the forecast
    /// rate × `residence` (seconds a request stays inside) ÷ `per_instance` (the requests
    /// one instance is aimed at).
    pub fn floor(&self, residence: Option<f64>, per_instance: f64) -> Option<u32> {
        let (_, rps) = self.forecast()?;
        let residence = residence?;
        if rps < self.min_rps || per_instance <= 0.0 || !residence.is_finite() {
            return None;
        }
        let need = rps * residence / per_instance;
        // `as` saturates; a tolerance so float dust does not add an instance.
        Some((need - 1e-9).ceil().max(0.0) as u32)
    }

    /// Whether the series changed since the last call.
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// The series' state to store.
    pub fn saved(&self) -> Value {
        serde_json::to_value(&self.selector).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::config::HostConfig;

    /// On invented time: a function whose load climbs 2 requests/s every minute. Once the
    /// forecasters have a few minutes, the floor is what the next minute needs, above what
    /// this minute's load asks for.
    #[test]
    fn a_ramp_raises_the_floor_before_it_arrives() {
        let cfg = HostConfig::embedded().keepalive;
        let mut a = Ahead::new(&cfg, None);
        let t0 = Instant::now();
        let minute = cfg.forecast_bucket.0;
        let mut requests = 0u64;
        a.observe(requests, t0);
        let mut rps = 0.0;
        for m in 1..=20u32 {
            rps = 2.0 * m as f64;
            requests += (rps * minute.as_secs_f64()) as u64;
            a.observe(requests, t0 + minute * m);
        }
        let (f, next) = a.forecast().unwrap();
        assert!((next - (rps + 2.0)).abs() < 0.5, "{f:?}: {next}, now {rps}");
        // A second inside each, one request per instance: the 42 instances of the next
        // minute, not the 40 of this one.
        let floor = a.floor(Some(1.0), 1.0).unwrap();
        assert!(
            (41..=43).contains(&floor) && floor > rps as u32,
            "{floor}: {next}"
        );
        // A quiet function gets no floor.
        let mut q = Ahead::new(&cfg, None);
        for m in 0..10u32 {
            q.observe(u64::from(m), t0 + minute * m);
        }
        assert_eq!(q.floor(Some(0.1), 0.7), None);
        // State survives the store.
        assert!(a.take_dirty() && !a.take_dirty());
        let back = Ahead::new(&cfg, Some(&a.saved()));
        assert_eq!(back.forecast(), a.forecast());
    }
}
