//! Which instance(s) serve a call.
//!
//! - no route: round-robin over the connector's ready instances;
//! - `instance`: that instance;
//! - `display_name`: round-robin over the ready instances with that display name;
//! - `tag`: every ready instance with that tag (a broadcast, one result each).
//!
//! A route that matches no instance at all is `NOT_FOUND` (the message lists
//! what exists); one whose instances are all draining or disconnected, or a
//! connector without instances, is `UNAVAILABLE`. But when one of the
//! route's instances is disconnected inside its resume window (a network
//! blip), [`select_or_await`] says to wait for it: the call is routed when
//! an instance is ready again, or fails when the session expires.

use spoke_proto::v1::{Route, route};
use tonic::Status;

use crate::routing::registry::{Instance, InstanceKey, InstanceStatus, Registry};
use spoke_runtime::suggest;

/// A call's route, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// Any ready instance.
    Any,
    /// The instance with this id.
    Instance(String),
    /// Any ready instance with this display name.
    DisplayName(String),
    /// Every ready instance with this tag.
    Tag(String),
}

impl Target {
    /// The target of a request's route; an empty route value is
    /// `INVALID_ARGUMENT`.
    pub(crate) fn from_route(route: Option<Route>) -> Result<Target, Status> {
        let empty = |what: &str| Status::invalid_argument(format!("route.{what} is empty"));
        Ok(match route.and_then(|r| r.target) {
            None => Target::Any,
            Some(route::Target::Instance(id)) if id.is_empty() => return Err(empty("instance")),
            Some(route::Target::DisplayName(n)) if n.is_empty() => {
                return Err(empty("display_name"));
            }
            Some(route::Target::Tag(t)) if t.is_empty() => return Err(empty("tag")),
            Some(route::Target::Instance(id)) => Target::Instance(id),
            Some(route::Target::DisplayName(n)) => Target::DisplayName(n),
            Some(route::Target::Tag(t)) => Target::Tag(t),
        })
    }

    /// Whether a failed read may be retried on another instance along this
    /// route (not when the caller named the instance, nor for broadcasts).
    pub(crate) fn allows_retry(&self) -> bool {
        matches!(self, Target::Any | Target::DisplayName(_))
    }

    fn matches(&self, instance: &Instance) -> bool {
        match self {
            Target::Any => true,
            Target::Instance(id) => instance.info.id == *id,
            Target::DisplayName(name) => instance.info.display_name == *name,
            Target::Tag(tag) => instance.info.tags.iter().any(|t| t == tag),
        }
    }

    /// The round-robin cursor this route advances: one for the connector,
    /// one per display name.
    pub(crate) fn cursor_name(&self) -> Option<&str> {
        match self {
            Target::DisplayName(name) => Some(name),
            _ => None,
        }
    }

    fn describe(&self) -> String {
        match self {
            Target::Any => String::new(),
            Target::Instance(id) => format!(" with id `{id}`"),
            Target::DisplayName(name) => format!(" named `{name}`"),
            Target::Tag(tag) => format!(" with tag `{tag}`"),
        }
    }
}

/// Where a call goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Selection {
    /// One instance.
    One(InstanceKey),
    /// Several instances, one result each (sorted by id).
    Broadcast(Vec<InstanceKey>),
}

/// Picks the instance(s) of `connector` for `target`, skipping `exclude`
/// (the instance a retried call was lost on).
///
/// Runs under the hub's lock for every call, so the common routes allocate
/// nothing but the chosen key: a named instance is looked up directly, and
/// round-robin counts the eligible instances, then takes the cursor-th.
pub(crate) fn select(
    registry: &mut Registry,
    tenant: &str,
    connector: &str,
    target: &Target,
    exclude: Option<&str>,
) -> Result<Selection, Status> {
    let eligible = |key: &InstanceKey, i: &Instance| {
        i.status == InstanceStatus::Ready && Some(key.id.as_str()) != exclude
    };
    match target {
        Target::Instance(id) => {
            let key = InstanceKey {
                tenant: tenant.to_owned(),
                connector: connector.to_owned(),
                id: id.clone(),
            };
            match registry.instance(&key) {
                None => Err(no_match(registry, tenant, connector, target)),
                Some(i) if eligible(&key, i) => Ok(Selection::One(key)),
                Some(_) => Err(none_ready(registry, tenant, connector, target)),
            }
        }
        Target::Tag(_) => {
            let mut matched = false;
            let mut ready = Vec::new();
            for (key, i) in registry.instances_of(tenant, connector) {
                if target.matches(i) {
                    matched = true;
                    if eligible(key, i) {
                        ready.push(key.clone());
                    }
                }
            }
            if !matched {
                return Err(no_match(registry, tenant, connector, target));
            }
            if ready.is_empty() {
                return Err(none_ready(registry, tenant, connector, target));
            }
            Ok(Selection::Broadcast(ready))
        }
        Target::Any => {
            let ready = registry
                .connector(tenant, connector)
                .map_or(&[][..], |ty| ty.ready());
            let skipped =
                exclude.is_some_and(|id| ready.binary_search_by(|r| r.as_str().cmp(id)).is_ok());
            let count = ready.len() - usize::from(skipped);
            if count == 0 {
                return Err(match registry.instances_of(tenant, connector).next() {
                    None => no_match(registry, tenant, connector, target),
                    Some(_) => none_ready(registry, tenant, connector, target),
                });
            }
            let at = registry.next_cursor(tenant, connector, target.cursor_name()) % count;
            let ready = registry
                .connector(tenant, connector)
                .map_or(&[][..], |ty| ty.ready());
            let id = if skipped {
                ready
                    .iter()
                    .filter(|id| Some(id.as_str()) != exclude)
                    .nth(at)
            } else {
                ready.get(at)
            }
            .ok_or_else(|| Status::internal("the ready instances changed under the lock"))?;
            Ok(Selection::One(InstanceKey {
                tenant: tenant.to_owned(),
                connector: connector.to_owned(),
                id: id.clone(),
            }))
        }
        Target::DisplayName(_) => {
            let (mut matched, mut ready) = (false, 0usize);
            for (key, i) in registry.instances_of(tenant, connector) {
                if target.matches(i) {
                    matched = true;
                    ready += usize::from(eligible(key, i));
                }
            }
            if !matched {
                return Err(no_match(registry, tenant, connector, target));
            }
            if ready == 0 {
                return Err(none_ready(registry, tenant, connector, target));
            }
            let at = registry.next_cursor(tenant, connector, target.cursor_name()) % ready;
            registry
                .instances_of(tenant, connector)
                .filter(|(key, i)| target.matches(i) && eligible(key, i))
                .nth(at)
                .map(|(key, _)| Selection::One(key.clone()))
                .ok_or_else(|| Status::internal("the ready instances changed under the lock"))
        }
    }
}

/// [`select`], unless no instance along the route is ready but one it
/// matches is disconnected, inside its resume window: then `Ok(None)`, and
/// the caller waits for an instance to become ready (most likely that one
/// resuming) before selecting again.
pub(crate) fn select_or_await(
    registry: &mut Registry,
    tenant: &str,
    connector: &str,
    target: &Target,
    exclude: Option<&str>,
) -> Result<Option<Selection>, Status> {
    match select(registry, tenant, connector, target, exclude) {
        Ok(selection) => Ok(Some(selection)),
        Err(status)
            if status.code() == tonic::Code::Unavailable
                && registry.instances_of(tenant, connector).any(|(key, i)| {
                    i.status == InstanceStatus::Disconnected
                        && target.matches(i)
                        && Some(key.id.as_str()) != exclude
                }) =>
        {
            Ok(None)
        }
        Err(status) => Err(status),
    }
}

/// The error for a route whose instances are all draining or disconnected.
fn none_ready(registry: &Registry, tenant: &str, connector: &str, target: &Target) -> Status {
    let states = suggest::list(
        registry
            .instances_of(tenant, connector)
            .filter(|(_, i)| target.matches(i))
            .map(|(k, i)| format!("{} ({})", k.id, i.status.as_str())),
    );
    let awaiting = registry
        .instances_of(tenant, connector)
        .any(|(_, i)| target.matches(i) && i.status == InstanceStatus::Pending);
    Status::unavailable(format!(
        "no ready instance of connector `{connector}`{}: {states}{}",
        target.describe(),
        if awaiting {
            "; a pending instance awaits an administrator's approval (spoke approve <instance>)"
        } else {
            ""
        }
    ))
}

/// The error for a route that matches no instance, naming what exists.
fn no_match(registry: &Registry, tenant: &str, connector: &str, target: &Target) -> Status {
    let instances: Vec<&Instance> = registry
        .instances_of(tenant, connector)
        .map(|(_, i)| i)
        .collect();
    match target {
        Target::Any => Status::unavailable(format!(
            "no instance of connector `{connector}` is attached"
        )),
        Target::Instance(id) => {
            let ids: Vec<&str> = instances.iter().map(|i| i.info.id.as_str()).collect();
            Status::not_found(format!(
                "connector `{connector}` has no instance `{id}`{}; its instances: {}",
                suggest::hint(id, ids.iter().copied()),
                suggest::list(&ids)
            ))
        }
        Target::DisplayName(name) => {
            let mut names: Vec<&str> = instances
                .iter()
                .map(|i| i.info.display_name.as_str())
                .filter(|n| !n.is_empty())
                .collect();
            names.sort_unstable();
            names.dedup();
            Status::not_found(format!(
                "no instance of connector `{connector}` is named `{name}`{}; display names: {}",
                suggest::hint(name, names.iter().copied()),
                suggest::list(&names)
            ))
        }
        Target::Tag(tag) => {
            let mut tags: Vec<&str> = instances
                .iter()
                .flat_map(|i| i.info.tags.iter().map(String::as_str))
                .collect();
            tags.sort_unstable();
            tags.dedup();
            Status::not_found(format!(
                "no instance of connector `{connector}` has the tag `{tag}`{}; tags in use: {}",
                suggest::hint(tag, tags.iter().copied()),
                suggest::list(&tags)
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use spoke_proto::v1::InstanceInfo;
    use tokio::sync::mpsc;

    use super::*;
    use crate::routing::registry::Registration;

    fn registration(id: &str, name: &str, tags: &[&str]) -> Registration {
        let manifest_json = serde_json::json!({
            "spoke": 1, "name": "c", "version": "1", "display_name": "C",
            "description": "", "config": {}, "actions": [], "search_operators": [],
            "capabilities": []
        })
        .to_string();
        Registration {
            manifest: serde_json::from_str(&manifest_json).unwrap(),
            manifest_json,
            info: InstanceInfo {
                id: id.into(),
                display_name: name.into(),
                tags: tags.iter().map(|t| (*t).to_owned()).collect(),
                ..Default::default()
            },
            tenant: String::new(),
            scope: "default".into(),
            credentials: None,
            sdk_version: String::new(),
            session_token: String::new(),
            max_in_flight: 0,
        }
    }

    fn registry() -> Registry {
        let mut registry = Registry::default();
        for (id, name, tags) in [
            ("a", "Alpha", &["eu"][..]),
            ("b", "Beta", &["eu", "us"][..]),
            ("c", "Beta", &[][..]),
        ] {
            let (tx, rx) = mpsc::channel(1);
            std::mem::forget(rx);
            registry
                .admit(registration(id, name, tags), tx, true, None)
                .unwrap();
        }
        registry
    }

    fn one(s: Selection) -> String {
        match s {
            Selection::One(k) => k.id,
            Selection::Broadcast(_) => panic!("broadcast"),
        }
    }

    #[test]
    fn round_robin_over_ready_instances() {
        let mut r = registry();
        let picks: Vec<String> = (0..6)
            .map(|_| one(select(&mut r, "default", "c", &Target::Any, None).unwrap()))
            .collect();
        assert_eq!(picks, ["a", "b", "c", "a", "b", "c"]);
    }

    #[test]
    fn round_robin_follows_instances_that_leave_and_return() {
        let mut r = Registry::default();
        let mut generations = Vec::new();
        for id in ["a", "b", "c"] {
            let (tx, rx) = mpsc::channel(1);
            std::mem::forget(rx);
            generations.push(
                r.admit(registration(id, "C", &[]), tx, true, None)
                    .unwrap()
                    .generation,
            );
        }
        let b = InstanceKey {
            tenant: "default".into(),
            connector: "c".into(),
            id: "b".into(),
        };
        assert!(r.disconnect(&b, generations[1]));
        let picks: Vec<String> = (0..4)
            .map(|_| one(select(&mut r, "default", "c", &Target::Any, None).unwrap()))
            .collect();
        assert_eq!(picks, ["a", "c", "a", "c"], "b is not ready");
        // Excluding one of the two left leaves the other.
        for _ in 0..3 {
            assert_eq!(
                one(select(&mut r, "default", "c", &Target::Any, Some("a")).unwrap()),
                "c"
            );
        }
        // Every instance draining: nothing is ready, but they exist.
        for (id, generation) in [("a", generations[0]), ("c", generations[2])] {
            let key = InstanceKey {
                tenant: "default".into(),
                connector: "c".into(),
                id: id.into(),
            };
            r.set_draining(&key, generation);
        }
        let err = select(&mut r, "default", "c", &Target::Any, None).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable);
        assert!(err.message().contains("a (draining)"), "{}", err.message());
        // But b is disconnected, inside its resume window: a call waits for
        // it, unless its route names another instance or excludes b.
        let route = |r: &mut Registry, target: &Target, exclude| {
            select_or_await(r, "default", "c", target, exclude).map_err(|e| e.code())
        };
        assert_eq!(route(&mut r, &Target::Any, None), Ok(None));
        assert_eq!(
            route(&mut r, &Target::DisplayName("C".into()), None),
            Ok(None)
        );
        let a = Target::Instance("a".into());
        assert_eq!(route(&mut r, &a, None), Err(tonic::Code::Unavailable));
        assert_eq!(
            route(&mut r, &Target::Any, Some("b")),
            Err(tonic::Code::Unavailable)
        );
        // Once its session expired, there is nothing to wait for.
        assert!(r.expire(&b, generations[1]).is_some());
        assert_eq!(
            route(&mut r, &Target::Any, None),
            Err(tonic::Code::Unavailable)
        );
    }

    #[test]
    fn routes_by_id_name_and_tag() {
        let mut r = registry();
        let by_id = select(&mut r, "default", "c", &Target::Instance("b".into()), None).unwrap();
        assert_eq!(one(by_id), "b");
        let beta = Target::DisplayName("Beta".into());
        let names: Vec<String> = (0..4)
            .map(|_| one(select(&mut r, "default", "c", &beta, None).unwrap()))
            .collect();
        assert_eq!(names, ["b", "c", "b", "c"]);
        let eu = select(&mut r, "default", "c", &Target::Tag("eu".into()), None).unwrap();
        let Selection::Broadcast(keys) = eu else {
            panic!("not a broadcast")
        };
        assert_eq!(
            keys.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
    }

    #[test]
    fn unknown_targets_name_what_exists() {
        let mut r = registry();
        let err = select(&mut r, "default", "c", &Target::Instance("x".into()), None).unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound);
        assert!(
            err.message().contains("its instances: a, b, c"),
            "{}",
            err.message()
        );
        let err = select(&mut r, "default", "c", &Target::Tag("asia".into()), None).unwrap_err();
        assert!(
            err.message().contains("tags in use: eu, us"),
            "{}",
            err.message()
        );
        let err = select(
            &mut r,
            "default",
            "c",
            &Target::DisplayName("Bета".into()),
            None,
        )
        .unwrap_err();
        assert!(
            err.message().contains("display names: Alpha, Beta"),
            "{}",
            err.message()
        );
    }

    #[test]
    fn excluded_or_unready_instances_are_skipped() {
        let mut r = registry();
        let only = Target::Instance("a".into());
        let err = select(&mut r, "default", "c", &only, Some("a")).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable);
        assert!(err.message().contains("a (ready)"), "{}", err.message());
        let empty = select(&mut r, "default", "nope", &Target::Any, None).unwrap_err();
        assert_eq!(empty.code(), tonic::Code::Unavailable);
    }
}
