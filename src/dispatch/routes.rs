//! The route table the data path reads: functions by name (Invoke API) and by path prefix
//! (longest prefix wins, on a segment boundary). Immutable; a change builds a new table.

use std::collections::HashMap;
use std::sync::Arc;

use crate::dispatch::Deployment;

#[derive(Default, Clone)]
pub struct Routes {
    by_name: HashMap<String, Arc<Deployment>>,
    /// (prefix without trailing '/', deployment), longest prefix first.
    by_prefix: Vec<(String, Arc<Deployment>)>,
}

impl Routes {
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
    use super::prefix_matches;

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        assert!(prefix_matches("/hello", "/hello"));
        assert!(prefix_matches("/hello", "/hello/x/y"));
        assert!(!prefix_matches("/hello", "/helloworld"));
        assert!(!prefix_matches("/hello/x", "/hello"));
        assert!(prefix_matches("", "/anything"));
    }
}
