//! Pre-warm and keep-alive policies: after a function's activity ends, how long to wait
//! before loading an instance again (pre-warm) and how long to keep it loaded then
//! (keep-alive). One implementation per policy, used alike by `surge replay` on simulated
//! time and by the live control loop: a policy is a pure state machine over what it has
//! seen of one function (its idle times), with no clock and no I/O of its own.
//!
//! Units: ticks. On the minute model a tick is a minute, the granularity of the production
//! traces the policies are judged on (Shahrad et al., "Serverless in the Wild", USENIX
//! ATC'20) and of their histograms; live it is the host's `[keepalive] tick`.

pub mod fixed;
pub mod hybrid;
pub mod kpa;
pub mod policy;
pub mod predictive;

pub use policy::{Fit, KeepAlive, Pattern, Windows};

use std::fmt;

/// A policy by name, as `surge replay --policy` and the manifest spell it.
#[derive(Clone, Debug, PartialEq)]
pub enum PolicySpec {
    /// `fixed:<ticks>`: keep alive that long after every activity, never pre-warm.
    Fixed(u32),
    /// `hybrid`: Shahrad et al.'s hybrid histogram policy.
    Hybrid,
    /// `kpa`: the live autoscaler's scale-to-zero after its default idle span.
    Kpa,
    /// `predictive`, or `predictive:<w>` with a cold start worth `w` GB-minutes instead
    /// of the host config's costs.
    Predictive(Option<f64>),
}

impl PolicySpec {
    /// Parse one policy name. The error names what is accepted.
    pub fn parse(s: &str) -> Result<PolicySpec, String> {
        let s = s.trim();
        if let Some(w) = s.strip_prefix("predictive:") {
            return match w.parse::<f64>() {
                Ok(w) if w.is_finite() && w > 0.0 => Ok(PolicySpec::Predictive(Some(w))),
                _ => Err(format!(
                    "policy {s:?}: predictive:<w> needs the GB-minutes a cold start is worth, above 0"
                )),
            };
        }
        if let Some(m) = s.strip_prefix("fixed:") {
            return match m.parse::<u32>() {
                Ok(m) if m > 0 => Ok(PolicySpec::Fixed(m)),
                _ => Err(format!(
                    "policy {s:?}: fixed:<minutes> needs a whole number of minutes above 0"
                )),
            };
        }
        match s {
            "hybrid" => Ok(PolicySpec::Hybrid),
            "kpa" => Ok(PolicySpec::Kpa),
            "predictive" => Ok(PolicySpec::Predictive(None)),
            _ => Err(format!(
                "unknown policy {s:?}: the policies are fixed:<minutes> (e.g. fixed:10), hybrid, kpa, predictive and predictive:<w> (e.g. predictive:20)"
            )),
        }
    }

    /// A comma-separated list, in order; the error names the first bad entry.
    pub fn parse_list(s: &str) -> Result<Vec<PolicySpec>, String> {
        let list: Vec<PolicySpec> = s
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(PolicySpec::parse)
            .collect::<Result<_, _>>()?;
        if list.is_empty() {
            return Err("no policy given: e.g. --policy fixed:10,hybrid".into());
        }
        Ok(list)
    }

    /// Fresh state for one function.
    pub fn start(&self, fit: &Fit) -> Box<dyn KeepAlive> {
        match *self {
            PolicySpec::Fixed(m) => Box::new(fixed::Fixed::new(m)),
            PolicySpec::Hybrid => Box::new(hybrid::Hybrid::new(hybrid::Hybrid::params_for(fit))),
            PolicySpec::Kpa => Box::new(kpa::kpa(
                crate::control::autoscale::decider::Params::default().scale_to_zero_after,
            )),
            PolicySpec::Predictive(w) => {
                let fit = Fit {
                    cold_start_gb_s: w.map_or(fit.cold_start_gb_s, |w| w * 60.0),
                    ..*fit
                };
                Box::new(predictive::Predictive::new(predictive::Params {
                    break_even: fit.break_even(),
                    max_keepalive: fit.max_keepalive,
                }))
            }
        }
    }

    /// State saved by [`KeepAlive::save`], for the same spec and fit; a fresh start when
    /// it does not read back (another policy's, or another version's), so a bad row never
    /// keeps a function from deploying.
    pub fn restore(&self, fit: &Fit, saved: &serde_json::Value) -> Box<dyn KeepAlive> {
        let fresh = self.start(fit);
        match self {
            PolicySpec::Hybrid => match serde_json::from_value::<hybrid::Hybrid>(saved.clone()) {
                Ok(h) if h.params() == &hybrid::Hybrid::params_for(fit) => Box::new(h),
                _ => fresh,
            },
            PolicySpec::Predictive(_) => {
                match serde_json::from_value::<predictive::Predictive>(saved.clone()) {
                    // Only for the same costs, memory and bound: else the rungs are stale.
                    Ok(p) if p.save().get("params") == fresh.save().get("params") => Box::new(p),
                    _ => fresh,
                }
            }
            PolicySpec::Fixed(_) | PolicySpec::Kpa => fresh,
        }
    }
}

impl fmt::Display for PolicySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicySpec::Fixed(m) => write!(f, "fixed:{m}"),
            PolicySpec::Hybrid => f.write_str("hybrid"),
            PolicySpec::Kpa => f.write_str("kpa"),
            PolicySpec::Predictive(None) => f.write_str("predictive"),
            PolicySpec::Predictive(Some(w)) => write!(f, "predictive:{w}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_names_parse_and_print_back() {
        let list = PolicySpec::parse_list("fixed:10, fixed:240,hybrid,kpa").unwrap();
        assert_eq!(
            list,
            vec![
                PolicySpec::Fixed(10),
                PolicySpec::Fixed(240),
                PolicySpec::Hybrid,
                PolicySpec::Kpa
            ]
        );
        let back: Vec<String> = list.iter().map(|p| p.to_string()).collect();
        assert_eq!(back, ["fixed:10", "fixed:240", "hybrid", "kpa"]);
        assert_eq!(
            PolicySpec::parse("predictive:20").unwrap().to_string(),
            "predictive:20"
        );
        assert_eq!(
            PolicySpec::parse("predictive").unwrap(),
            PolicySpec::Predictive(None)
        );
        for bad in [
            "fixed:0",
            "fixed:x",
            "fixed:",
            "predictive:0",
            "predictive:-1",
            "predictive:inf",
            "cost:5",
            "lru",
            "",
        ] {
            let e = PolicySpec::parse_list(bad).unwrap_err();
            assert!(e.contains("policy") || e.contains("fixed"), "{bad}: {e}");
        }
        assert!(PolicySpec::parse("lru").unwrap_err().contains("\"lru\""));
        // The live default: 60 s of no traffic, a minute on the minute model.
        assert_eq!(
            PolicySpec::Kpa.start(&Fit::minute(128.0, 840.0)).windows(),
            Windows {
                prewarm: 0,
                keepalive: 1
            }
        );
    }
}

#[cfg(test)]
mod restore_tests {
    use super::*;

    #[test]
    fn saved_state_comes_back_only_for_the_same_policy_and_fit() {
        let fit = Fit::minute(256.0, 840.0);
        for spec in [PolicySpec::Predictive(None), PolicySpec::Hybrid] {
            let mut p = spec.start(&fit);
            for g in [29, 29, 29, 29, 29] {
                p.observe_idle(g);
            }
            let saved = p.save();
            let back = spec.restore(&fit, &saved);
            assert_eq!(back.windows(), p.windows(), "{spec}");
            assert_eq!(back.save(), saved, "{spec}");
            // Another memory size and bound (a redeploy with new limits): fresh.
            let other = Fit {
                max_keepalive: 100,
                ..Fit::minute(2048.0, 840.0)
            };
            let fresh = spec.restore(&other, &saved);
            assert_eq!(fresh.save(), spec.start(&other).save(), "{spec}");
            // Garbage: fresh.
            let junk = spec.restore(&fit, &serde_json::json!({"x": 1}));
            assert_eq!(junk.save(), spec.start(&fit).save(), "{spec}");
        }
    }
}
