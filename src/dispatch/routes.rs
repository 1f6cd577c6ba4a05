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

/// What a path or a name resolves to.
pub enum Resolved<'a> {
    Live(&'a Arc<Deployment>),
    /// A function still deploying owns it (by the longest prefix, or by name with no live
    /// version).
    Pending(&'a Pending),
    Unknown,
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
    /// Who serves `path`: the longest route among live and pending functions. A pending
    /// function with a longer route than the live match owns the path (a live `/` must not
    /// answer for a `/hello` still deploying).
    pub fn resolve_path(&self, path: &str) -> Resolved<'_> {
        let live = self.by_prefix.iter().find(|(p, _)| prefix_matches(p, path));
        let pending = self
            .pending
            .iter()
            .filter(|p| p.route.as_deref().is_some_and(|r| prefix_matches(r, path)))
            .max_by_key(|p| p.route.as_ref().map_or(0, String::len));
        match (live, pending) {
            (Some((lp, _)), Some(p)) if p.route.as_ref().map_or(0, String::len) > lp.len() => {
                Resolved::Pending(p)
            }
            (Some((_, d)), _) => Resolved::Live(d),
            (None, Some(p)) => Resolved::Pending(p),
            (None, None) => Resolved::Unknown,
        }
    }

    /// Who serves the name `name`: its live version, or a pending deploy of it.
    pub fn resolve_name(&self, name: &str) -> Resolved<'_> {
        match self.by_name.get(name) {
            Some(d) => Resolved::Live(d),
            None => self
                .pending
                .iter()
                .find(|p| p.name == name)
                .map_or(Resolved::Unknown, Resolved::Pending),
        }
    }

    /// A table that also knows `pending` (functions about to be deployed, live or not).
    pub fn with_pending(&self, pending: Vec<Pending>) -> Routes {
        let mut next = self.clone();
        next.pending = pending;
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

    fn pending(r: Resolved<'_>) -> Option<&str> {
        match r {
            Resolved::Pending(p) => Some(p.name.as_str()),
            _ => None,
        }
    }

    #[test]
    fn pending_functions_by_name_and_longest_route() {
        let w = Duration::from_secs(3);
        let r = Routes::default().with_pending(vec![
            Pending::new("a", Some("/a/"), w),
            Pending::new("ab", Some("/a/b"), w),
            Pending::new("c", None, w),
            // Two routes for one name: its stored version's and its new manifest's.
            Pending::new("d", Some("/old"), w),
            Pending::new("d", Some("/new"), w),
        ]);
        assert_eq!(pending(r.resolve_path("/a/b/c")), Some("ab"));
        assert_eq!(pending(r.resolve_path("/a/x")), Some("a"));
        assert!(matches!(r.resolve_path("/ax"), Resolved::Unknown));
        assert_eq!(pending(r.resolve_name("c")), Some("c"));
        assert_eq!(pending(r.resolve_path("/new")), Some("d"));
        assert_eq!(pending(r.resolve_path("/old/x")), Some("d"));
        let r = r.without_pending("ab").without_pending("d");
        assert_eq!(pending(r.resolve_path("/a/b/c")), Some("a"));
        assert!(matches!(r.resolve_name("ab"), Resolved::Unknown));
        assert!(matches!(r.resolve_path("/new"), Resolved::Unknown));
    }

    fn live(name: &str, route: &str) -> Arc<Deployment> {
        let text = format!("name = \"{name}\"\nhandler = \"h.wasm\"\nroute = \"{route}\"\n");
        let spec = crate::manifest::FunctionSpec::parse(
            std::path::Path::new("f/function.toml"),
            &text,
            &crate::manifest::HostConfig::embedded().defaults,
        )
        .unwrap();
        Arc::new(Deployment::new(
            spec,
            surge_runtime::Kind::Event,
            1,
            String::new(),
            0,
            tokio::sync::watch::channel(None).1,
            Arc::new(tokio::sync::Notify::new()),
            Duration::from_secs(1),
        ))
    }

    #[test]
    fn a_longer_pending_route_wins_over_a_shorter_live_one() {
        let w = Duration::from_secs(3);
        let r = Routes::default()
            .with(live("root", "/"))
            .with(live("api", "/api"))
            .with_pending(vec![
                Pending::new("hello", Some("/hello"), w),
                Pending::new("api", Some("/api"), w),
            ]);
        // A live `/` must not answer for `/hello` while hello deploys.
        assert_eq!(pending(r.resolve_path("/hello/x")), Some("hello"));
        assert!(matches!(r.resolve_path("/other"), Resolved::Live(d) if d.name() == "root"));
        // Same length: the live version serves (a redeploy at start keeps its route).
        assert!(matches!(r.resolve_path("/api/v1"), Resolved::Live(d) if d.name() == "api"));
        assert!(matches!(r.resolve_name("api"), Resolved::Live(_)));
        assert_eq!(pending(r.resolve_name("hello")), Some("hello"));
        let r = r.without_pending("hello");
        assert!(matches!(r.resolve_path("/hello"), Resolved::Live(d) if d.name() == "root"));
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
