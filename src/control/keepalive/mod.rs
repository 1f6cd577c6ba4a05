//! Pre-warm and keep-alive policies: after a function's activity ends, how long to wait
//! before loading an instance again (pre-warm) and how long to keep it loaded then
//! (keep-alive). One implementation per policy, used alike by `surge replay` on simulated
//! time and by the live control loop: a policy is a pure state machine over what it has
//! seen of one function (its idle times), with no clock and no I/O of its own.
//!
//! Units: whole minutes, the granularity of the production traces the policies are judged
//! on (Shahrad et al., "Serverless in the Wild", USENIX ATC'20) and of their histograms.

pub mod cost;
pub mod fixed;
pub mod hybrid;
pub mod kpa;
pub mod policy;

pub use policy::{KeepAlive, Windows};

use std::fmt;

/// A policy by name, as `surge replay --policy` and the manifest spell it.
#[derive(Clone, Debug, PartialEq)]
pub enum PolicySpec {
    /// `fixed:<minutes>`: keep alive that long after every activity, never pre-warm.
    Fixed(u32),
    /// `hybrid`: Shahrad et al.'s hybrid histogram policy.
    Hybrid,
    /// `kpa`: the live autoscaler's scale-to-zero after its default idle span.
    Kpa,
    /// `cost:<w>`: the least expected cost when a cold start is worth `w` GB-minutes.
    Cost(f64),
}

impl PolicySpec {
    /// Parse one policy name. The error names what is accepted.
    pub fn parse(s: &str) -> Result<PolicySpec, String> {
        let s = s.trim();
        if let Some(w) = s.strip_prefix("cost:") {
            return match w.parse::<f64>() {
                Ok(w) if w.is_finite() && w > 0.0 => Ok(PolicySpec::Cost(w)),
                _ => Err(format!(
                    "policy {s:?}: cost:<w> needs the GB-minutes a cold start is worth, above 0"
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
            _ => Err(format!(
                "unknown policy {s:?}: the policies are fixed:<minutes> (e.g. fixed:10), hybrid, kpa and cost:<w> (e.g. cost:5)"
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

    /// Fresh state for one function of `memory_mb`.
    pub fn start(&self, memory_mb: f64) -> Box<dyn KeepAlive> {
        match *self {
            PolicySpec::Cost(w) => Box::new(cost::Cost::new(w, memory_mb, 240)),
            PolicySpec::Fixed(m) => Box::new(fixed::Fixed::new(m)),
            PolicySpec::Hybrid => Box::new(hybrid::Hybrid::new(hybrid::Params::default())),
            PolicySpec::Kpa => Box::new(kpa::kpa(
                crate::control::autoscale::decider::Params::default().scale_to_zero_after,
            )),
        }
    }
}

impl fmt::Display for PolicySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicySpec::Fixed(m) => write!(f, "fixed:{m}"),
            PolicySpec::Hybrid => f.write_str("hybrid"),
            PolicySpec::Kpa => f.write_str("kpa"),
            PolicySpec::Cost(w) => write!(f, "cost:{w}"),
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
        assert_eq!(PolicySpec::parse("cost:20").unwrap().to_string(), "cost:20");
        assert_eq!(
            PolicySpec::parse("cost:2.5").unwrap(),
            PolicySpec::Cost(2.5)
        );
        for bad in [
            "fixed:0", "fixed:x", "fixed:", "cost:0", "cost:-1", "cost:inf", "lru", "",
        ] {
            let e = PolicySpec::parse_list(bad).unwrap_err();
            assert!(e.contains("policy") || e.contains("fixed"), "{bad}: {e}");
        }
        assert!(PolicySpec::parse("lru").unwrap_err().contains("\"lru\""));
        // The live default: 60 s of no traffic, a minute on the minute model.
        assert_eq!(
            PolicySpec::Kpa.start(128.0).windows(),
            Windows {
                prewarm: 0,
                keepalive: 1
            }
        );
    }
}
