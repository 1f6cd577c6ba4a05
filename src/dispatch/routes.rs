//! The route table the data path reads: functions by name (Invoke API) and by path prefix
//! (longest prefix wins, on a segment boundary), and the functions the host is still
//! deploying at start. Immutable; a change builds a new table.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::dispatch::Deployment;

#[derive(Default, Clone)]
pub struct Routes {
    by_name: HashMap<String, Arc<Deployment>>,
    /// (prefix without trailing '/', deployment), longest prefix first.
    by_prefix: Vec<(String, Arc<Deployment>)>,
    /// Known functions with no live version yet (the host is starting): a request for one
    /// waits for it as in the activator queue, rather than being told it does not exist.
    pending: Vec<Pending>,
}

/// A function the host is deploying and does not serve yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    pub name: String,
    /// Its route, normalized (no trailing '/').
    pub route: Option<String>,
    /// How long a request may wait for it: its `queue_timeout`.
    pub wait: Duration,
}

impl Pending {
    pub fn new(name: &str, route: Option<&str>, wait: Duration) -> Self {
        Pending {
            name: name.to_string(),
            route: route.map(normalize),
            wait,
        }
    }
}

impl Routes {
    /// The pending function `name`, if it is not live yet.
    pub fn pending_named(&self, name: &str) -> Option<&Pending> {
        self.pending.iter().find(|p| p.name == name)
    }

    /// The pending function whose route is the longest prefix of `path`, if no live one
    /// serves it.
    pub fn pending_route(&self, path: &str) -> Option<&Pending> {
        self.pending
            .iter()
            .filter(|p| p.route.as_deref().is_some_and(|r| prefix_matches(r, path)))
            .max_by_key(|p| p.route.as_ref().map_or(0, String::len))
    }

    /// A table that also knows `pending` (functions not live yet).
    pub fn with_pending(&self, pending: Vec<Pending>) -> Routes {
        let mut next = self.clone();
        next.pending = pending;
        next.pending.retain(|p| !next.by_name.contains_key(&p.name));
        next
    }

    /// A table where `name` is no longer pending (its deploy ended, either way).
    pub fn without_pending(&self, name: &str) -> Routes {
        let mut next = self.clone();
        next.pending.retain(|p| p.name != name);
        next
    }

    pub fn get(&self, name: &str) -> Option<Arc<Deployment>> {
        self.by_name.get(name).cloned()
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<Deployment>> {
        self.by_name.values()
    }

    /// The function whose route is the longest prefix of `path`.
    pub fn lookup(&self, path: &str) -> Option<&Arc<Deployment>> {
        self.by_prefix
            .iter()
            .find(|(p, _)| prefix_matches(p, path))
            .map(|(_, d)| d)
    }

    /// Which function, if any, already has exactly this route.
    pub fn owner_of(&self, route: &str) -> Option<&Arc<Deployment>> {
        let want = normalize(route);
        self.by_prefix
            .iter()
            .find(|(p, _)| *p == want)
            .map(|(_, d)| d)
    }

    /// A table with `d` in place of any version of the same function.
    pub fn with(&self, d: Arc<Deployment>) -> Routes {
        let mut next = self.without(d.name());
        if let Some(r) = &d.spec.route {
            next.by_prefix.push((normalize(r), d.clone()));
            next.by_prefix
                .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        }
        next.pending.retain(|p| p.name != d.name());
        next.by_name.insert(d.name().to_string(), d);
        next
    }

    pub fn without(&self, name: &str) -> Routes {
        let mut next = self.clone();
        next.by_name.remove(name);
        next.by_prefix.retain(|(_, d)| d.name() != name);
        next
    }
}

fn normalize(route: &str) -> String {
    route.trim_end_matches('/').to_string()
}

/// `/hello` matches `/hello`, `/hello/x`, `/hello?q`, not `/helloworld`; `` (the route `/`)
/// matches everything.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_functions_by_name_and_longest_route() {
        let w = Duration::from_secs(3);
        let r = Routes::default().with_pending(vec![
            Pending::new("a", Some("/a/"), w),
            Pending::new("ab", Some("/a/b"), w),
            Pending::new("c", None, w),
        ]);
        assert_eq!(r.pending_route("/a/b/c").unwrap().name, "ab");
        assert_eq!(r.pending_route("/a/x").unwrap().name, "a");
        assert!(r.pending_route("/ax").is_none());
        assert_eq!(r.pending_named("c").unwrap().wait, w);
        let r = r.without_pending("ab");
        assert_eq!(r.pending_route("/a/b/c").unwrap().name, "a");
        assert!(r.pending_named("ab").is_none());
    }

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        assert!(prefix_matches("/hello", "/hello"));
        assert!(prefix_matches("/hello", "/hello/x/y"));
        assert!(!prefix_matches("/hello", "/helloworld"));
        assert!(!prefix_matches("/hello/x", "/hello"));
        assert!(prefix_matches("", "/anything"));
    }
}
