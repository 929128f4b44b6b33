//! What a request's URL addresses: the [`Target`] its path names (the collection of a resource
//! or one object; core `/api/{version}/…` or a named group `/apis/{group}/{version}/…`;
//! namespaced `…/namespaces/{namespace}/{plural}[/{name}]` or cluster-wide
//! `…/{plural}[/{name}]`), the [`ObjectKey`] an object is stored under, and the [`Query`]
//! parameters the double reads.
//!
//! Pure parsing: no state, no I/O, no answers. Never panics on a URL: a path it does not know
//! parses to `None` (the caller answers 404 `NotFound`), a parameter asking for what the double
//! does not do lands in [`Query::unsupported`] (the caller answers 400), and a malformed percent
//! escape is kept as text.

/// A resource as its URLs name it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Resource {
    pub(super) group: String,
    pub(super) version: String,
    pub(super) plural: String,
}

impl Resource {
    pub(super) fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `plural.group`, as Kubernetes names a resource in messages.
    pub(super) fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

/// What one URL addresses: a collection (`name` is `None`) or one object.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Target {
    pub(super) resource: Resource,
    /// `None` for cluster-wide URLs (cluster-scoped objects, or every namespace).
    pub(super) namespace: Option<String>,
    pub(super) name: Option<String>,
    /// `…/{name}/status`: the object's status alone.
    pub(super) status: bool,
}

impl Target {
    pub(super) fn parse(path: &str) -> Option<Target> {
        let (group, rest) = if let Some(rest) = path.strip_prefix("/api/") {
            ("", rest)
        } else {
            let rest = path.strip_prefix("/apis/")?;
            rest.split_once('/')?
        };
        let segments: Vec<&str> = rest.split('/').collect();
        if (group.is_empty() && path.starts_with("/apis/")) || segments.iter().any(|s| s.is_empty()) {
            return None;
        }
        let (segments, status) = match segments.as_slice() {
            [rest @ .., "status"] if rest.len() == 3 || (rest.len() == 5 && rest[1] == "namespaces") => (rest, true),
            all => (all, false),
        };
        let (version, namespace, plural, name) = match segments {
            [version, plural] => (version, None, plural, None),
            [version, plural, name] => (version, None, plural, Some(name)),
            [version, "namespaces", namespace, plural] => (version, Some(namespace), plural, None),
            [version, "namespaces", namespace, plural, name] => (version, Some(namespace), plural, Some(name)),
            _ => return None,
        };
        if status && !has_status_subresource(group, plural) {
            return None;
        }
        Some(Target {
            resource: Resource {
                group: group.to_owned(),
                version: (*version).to_owned(),
                plural: (*plural).to_owned(),
            },
            namespace: namespace.map(|n| (*n).to_owned()),
            name: name.map(|n| (*n).to_owned()),
            status,
        })
    }

    /// Whether the resource's status is written only through `…/status`, as for Kubernetes'
    /// own kinds that have one (weft's CRDs declare no status subresource).
    pub(super) fn status_is_separate(&self) -> bool {
        has_status_subresource(&self.resource.group, &self.resource.plural)
    }

    pub(super) fn key(&self, name: &str) -> ObjectKey {
        ObjectKey {
            resource: self.resource.clone(),
            namespace: self.namespace.clone().unwrap_or_default(),
            name: name.to_owned(),
        }
    }

    /// Whether an object under `key` is in this collection.
    pub(super) fn holds(&self, key: &ObjectKey) -> bool {
        key.resource == self.resource
            && self
                .namespace
                .as_ref()
                .is_none_or(|namespace| *namespace == key.namespace)
    }
}

fn has_status_subresource(group: &str, plural: &str) -> bool {
    group.is_empty() && matches!(plural, "services" | "pods" | "nodes" | "namespaces")
}

/// Where an object lives; ordered as etcd orders keys (resource, namespace, name).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct ObjectKey {
    resource: Resource,
    /// Empty for objects stored through a cluster-wide URL.
    namespace: String,
    name: String,
}

/// The query parameters the double reads.
#[derive(Debug, Default)]
pub(super) struct Query {
    pub(super) watch: bool,
    pub(super) resource_version: Option<String>,
    pub(super) timeout_seconds: Option<u64>,
    /// A parameter asking for something the double does not do.
    pub(super) unsupported: Option<String>,
}

impl Query {
    pub(super) fn parse(query: &str) -> Query {
        let mut parsed = Query::default();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value);
            match name {
                "watch" => parsed.watch = value == "true" || value == "1",
                "resourceVersion" => parsed.resource_version = Some(value).filter(|v| !v.is_empty()),
                "timeoutSeconds" => parsed.timeout_seconds = value.parse().ok(),
                "labelSelector" | "fieldSelector" | "dryRun" if !value.is_empty() => {
                    parsed.unsupported = Some(name.to_owned());
                }
                "sendInitialEvents" if value == "true" => parsed.unsupported = Some(name.to_owned()),
                _ => {}
            }
        }
        parsed
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |at: usize| bytes.get(at).and_then(|b| (*b as char).to_digit(16));
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(high), Some(low)) => {
                decoded.push((high * 16 + low) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                decoded.push(b' ');
                i += 1;
            }
            (byte, _, _) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_of_core_and_named_groups_parse_into_targets() {
        let pods = Target::parse("/api/v1/namespaces/ns-a/pods/pod-1").expect("a pod URL");
        assert_eq!(pods.resource.api_version(), "v1");
        assert_eq!(pods.namespace.as_deref(), Some("ns-a"));
        assert_eq!(pods.name.as_deref(), Some("pod-1"));
        let namespace = Target::parse("/api/v1/namespaces/ns-a").expect("a namespace URL");
        assert_eq!(namespace.resource.plural, "namespaces");
        assert_eq!(namespace.name.as_deref(), Some("ns-a"));
        let pools = Target::parse("/apis/weft.io/v1/ippools").expect("a collection URL");
        assert_eq!(pools.resource.qualified(), "ippools.weft.io");
        assert_eq!((pools.namespace, pools.name), (None, None));
        for bad in [
            "/",
            "/apis/weft.io",
            "/apis//v1/ippools",
            "/api/v1/",
            "/apis/weft.io/v1/a/b/c/d/e/f",
        ] {
            assert_eq!(Target::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn query_parameters_are_decoded_and_selectors_refused() {
        let query = Query::parse("&watch=true&timeoutSeconds=290&allowWatchBookmarks=true&resourceVersion=12");
        assert!(query.watch);
        assert_eq!(query.resource_version.as_deref(), Some("12"));
        assert_eq!(query.timeout_seconds, Some(290));
        assert!(query.unsupported.is_none());
        let query = Query::parse("labelSelector=app%3Dweb");
        assert_eq!(query.unsupported.as_deref(), Some("labelSelector"));
        assert_eq!(percent_decode("a%3Db+c%zz"), "a=b c%zz");
    }
}
