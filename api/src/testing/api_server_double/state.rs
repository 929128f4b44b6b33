//! [`State`]: the objects of every resource, the ONE resourceVersion counter they share, and the
//! event history of the last writes; and the object rules of the Kubernetes REST API that the
//! double keeps (see the parent module): list, get, create (409 `AlreadyExists`; `uid`,
//! `creationTimestamp`, `generation` set), update (409 `Conflict` on a stale `resourceVersion` or
//! another `uid`, an empty one overwrites, nothing written for an update that changes nothing,
//! `generation` grows when more than `metadata`/`status` changes) and delete (`DeleteOptions`
//! preconditions; the DELETED event carries the revision of the deletion).
//!
//! Every write takes the next revision and records its event, encoded once as the line watches
//! send; the history keeps the last `history_limit` writes and remembers, in `compacted`, the
//! newest revision it has forgotten. Pure: no I/O, no clock (the caller passes `now`), no
//! waking of watches (the caller does that after the write). Never panics on a request body:
//! what does not decode is a [`Failure`].

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use hyper::StatusCode;
use serde_json::{Map, Value, json};

use super::status::Failure;
use super::url::{ObjectKey, Target};

/// One write, as watches send it.
#[derive(Debug)]
pub(super) struct Event {
    pub(super) revision: u64,
    pub(super) key: ObjectKey,
    /// `{"type":…,"object":…}\n`, encoded once for every watch.
    pub(super) line: Bytes,
}

pub(super) fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": kind, "object": object}).to_string().into_bytes();
    line.push(b'\n');
    Bytes::from(line)
}

/// The objects and their history.
#[derive(Debug)]
pub(super) struct State {
    /// The resourceVersion of the last write, across every resource.
    pub(super) revision: u64,
    pub(super) objects: BTreeMap<ObjectKey, Value>,
    /// The last writes, oldest first.
    pub(super) history: VecDeque<Event>,
    history_limit: usize,
    /// The newest revision the history no longer holds: a watch must start at or above it.
    pub(super) compacted: u64,
    uids: u64,
}

impl State {
    /// No objects, revision 0, a history of at most `history_limit` writes.
    pub(super) fn new(history_limit: usize) -> State {
        State {
            revision: 0,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            history_limit,
            compacted: 0,
            uids: 0,
        }
    }

    /// Forgets the whole event history: a watch from any revision before now gets 410 Expired.
    pub(super) fn compact(&mut self) {
        self.compacted = self.revision;
        self.history.clear();
    }

    /// Takes the next revision and records the event of an object written at it.
    fn record(&mut self, key: ObjectKey, kind: &str, object: &Value) {
        self.history.push_back(Event {
            revision: self.revision,
            key,
            line: event_line(kind, object),
        });
        while self.history.len() > self.history_limit {
            match self.history.pop_front() {
                Some(event) => self.compacted = event.revision,
                None => break,
            }
        }
    }

    fn next_revision(&mut self) -> u64 {
        self.revision += 1;
        self.revision
    }

    pub(super) fn list(&self, target: &Target) -> Value {
        let items: Vec<&Value> = self
            .objects
            .iter()
            .filter(|(key, _)| target.holds(key))
            .map(|(_, object)| object)
            .collect();
        let kind = items
            .first()
            .and_then(|object| object.get("kind"))
            .and_then(Value::as_str)
            .map_or_else(|| "List".to_owned(), |kind| format!("{kind}List"));
        json!({
            "kind": kind,
            "apiVersion": target.resource.api_version(),
            "metadata": {"resourceVersion": self.revision.to_string()},
            "items": items,
        })
    }

    pub(super) fn get(&self, target: &Target, name: &str) -> Result<Value, Failure> {
        self.objects
            .get(&target.key(name))
            .cloned()
            .ok_or_else(|| Failure::not_found(&target.resource, name))
    }

    pub(super) fn create(&mut self, target: &Target, body: &[u8], now: &str) -> Result<Value, Failure> {
        let mut object = decode_object(target, body)?;
        let name = object_name(&object)?;
        if meta_str(&object, "resourceVersion").is_some_and(|rv| !rv.is_empty()) {
            return Err(Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "resourceVersion should not be set on objects to be created",
            ));
        }
        let key = target.key(&name);
        if self.objects.contains_key(&key) {
            return Err(Failure::new(
                StatusCode::CONFLICT,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", target.resource.qualified()),
            )
            .about(&target.resource, &name));
        }
        self.uids += 1;
        let revision = self.next_revision();
        set_meta(
            &mut object,
            "uid",
            Value::String(format!("00000000-0000-4000-8000-{:012x}", self.uids)),
        );
        set_meta(&mut object, "creationTimestamp", Value::String(now.to_owned()));
        set_meta(&mut object, "generation", Value::from(1));
        set_meta(&mut object, "resourceVersion", Value::String(revision.to_string()));
        self.record(key.clone(), "ADDED", &object);
        self.objects.insert(key, object.clone());
        Ok(object)
    }

    pub(super) fn update(&mut self, target: &Target, name: &str, body: &[u8]) -> Result<Value, Failure> {
        let mut object = decode_object(target, body)?;
        let body_name = object_name(&object)?;
        if body_name != name {
            return Err(Failure::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let key = target.key(name);
        let current = self
            .objects
            .get(&key)
            .ok_or_else(|| Failure::not_found(&target.resource, name))?;
        let current_version = meta_str(current, "resourceVersion").unwrap_or_default().to_owned();
        match meta_str(&object, "resourceVersion").filter(|rv| !rv.is_empty()) {
            None => {}
            Some(rv) if rv.parse::<u64>().is_err() => {
                return Err(Failure::bad_request(format!("invalid resourceVersion {rv:?}")));
            }
            Some(rv) if rv != current_version => {
                return Err(Failure::conflict(
                    &target.resource,
                    name,
                    "the object has been modified; please apply your changes to the latest version and try again"
                        .into(),
                ));
            }
            Some(_) => {}
        }
        let current_uid = meta_str(current, "uid").unwrap_or_default().to_owned();
        if let Some(uid) = meta_str(&object, "uid").filter(|uid| !uid.is_empty() && *uid != current_uid) {
            return Err(Failure::conflict(
                &target.resource,
                name,
                format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {current_uid}"),
            ));
        }
        // A write of the object keeps the stored status, a write of `/status` changes only it.
        if target.status || target.status_is_separate() {
            let (mut merged, status) = if target.status {
                (current.clone(), object.get("status").cloned())
            } else {
                (object, current.get("status").cloned())
            };
            if let Some(map) = merged.as_object_mut() {
                match status {
                    Some(status) => map.insert("status".into(), status),
                    None => map.remove("status"),
                };
            }
            object = merged;
        }
        let generation = current
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let generation = if without_metadata_and_status(current) == without_metadata_and_status(&object) {
            generation
        } else {
            generation + 1
        };
        let current_metadata = current.get("metadata").cloned().unwrap_or_default();
        for field in ["uid", "creationTimestamp"] {
            if let Some(value) = current_metadata.get(field) {
                set_meta(&mut object, field, value.clone());
            }
        }
        set_meta(&mut object, "generation", Value::from(generation));
        set_meta(&mut object, "resourceVersion", Value::String(current_version));
        if object == *current {
            // Kubernetes writes nothing for an update that changes nothing.
            return Ok(object);
        }
        let revision = self.next_revision();
        set_meta(&mut object, "resourceVersion", Value::String(revision.to_string()));
        self.record(key.clone(), "MODIFIED", &object);
        self.objects.insert(key, object.clone());
        Ok(object)
    }

    pub(super) fn delete(&mut self, target: &Target, name: &str, body: &[u8]) -> Result<Value, Failure> {
        let key = target.key(name);
        let current = self
            .objects
            .get(&key)
            .ok_or_else(|| Failure::not_found(&target.resource, name))?;
        if !body.iter().all(u8::is_ascii_whitespace) {
            let options: Value = serde_json::from_slice(body)
                .map_err(|error| Failure::bad_request(format!("DeleteOptions do not decode: {error}")))?;
            for (field, label) in [("resourceVersion", "ResourceVersion"), ("uid", "UID")] {
                let wanted = options
                    .pointer(&format!("/preconditions/{field}"))
                    .and_then(Value::as_str);
                let actual = meta_str(current, field).unwrap_or_default();
                if let Some(wanted) = wanted.filter(|wanted| *wanted != actual) {
                    return Err(Failure::conflict(
                        &target.resource,
                        name,
                        format!(
                            "Precondition failed: {label} in precondition: {wanted}, {label} in object meta: {actual}"
                        ),
                    ));
                }
            }
        }
        let Some(last) = self.objects.remove(&key) else {
            return Err(Failure::not_found(&target.resource, name));
        };
        let revision = self.next_revision();
        let mut deleted = last.clone();
        set_meta(&mut deleted, "resourceVersion", Value::String(revision.to_string()));
        self.record(key, "DELETED", &deleted);
        Ok(last)
    }
}

/// The request body as an object of the URL's resource and namespace.
fn decode_object(target: &Target, body: &[u8]) -> Result<Value, Failure> {
    let mut object: Value = serde_json::from_slice(body)
        .map_err(|error| Failure::bad_request(format!("the request body does not decode as JSON: {error}")))?;
    let Some(map) = object.as_object_mut() else {
        return Err(Failure::bad_request("the request body is not a JSON object"));
    };
    match map.entry("metadata").or_insert_with(|| Value::Object(Map::new())) {
        Value::Object(_) => {}
        _ => return Err(Failure::bad_request("metadata is not a JSON object")),
    }
    let api_version = target.resource.api_version();
    match object.get("apiVersion").and_then(Value::as_str) {
        Some(found) if found == api_version => {}
        found => {
            return Err(Failure::bad_request(format!(
                "the API version in the data ({}) does not match the expected API version ({api_version})",
                found.unwrap_or("")
            )));
        }
    }
    if object.get("kind").and_then(Value::as_str).is_none_or(str::is_empty) {
        return Err(Failure::bad_request("Object 'Kind' is missing in the request body"));
    }
    let url_namespace = target.namespace.as_deref().unwrap_or_default();
    match meta_str(&object, "namespace").filter(|namespace| !namespace.is_empty()) {
        Some(namespace) if namespace != url_namespace => {
            return Err(Failure::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        _ => {}
    }
    if let Some(namespace) = &target.namespace {
        set_meta(&mut object, "namespace", Value::String(namespace.clone()));
    }
    Ok(object)
}

fn object_name(object: &Value) -> Result<String, Failure> {
    match meta_str(object, "name").filter(|name| !name.is_empty()) {
        Some(name) => Ok(name.to_owned()),
        None => Err(Failure::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "metadata.name: Required value: name is required (the API server double does not do generateName)",
        )),
    }
}

fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object.get("metadata")?.get(field)?.as_str()
}

/// Sets `metadata.{field}`; `metadata` is a map in every object that passed [`decode_object`].
fn set_meta(object: &mut Value, field: &str, value: Value) {
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.insert(field.to_owned(), value);
    }
}

fn without_metadata_and_status(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(map) = object.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
    }
    object
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_beyond_its_limit_is_compacted() {
        let mut state = State::new(2);
        let target = Target::parse("/apis/weft.io/v1/ippools").expect("a collection URL");
        for name in ["a", "b", "c"] {
            let body = json!({"apiVersion": "weft.io/v1", "kind": "IPPool", "metadata": {"name": name}});
            state
                .create(&target, body.to_string().as_bytes(), "2026-01-01T00:00:00Z")
                .expect("created");
        }
        assert_eq!(state.history.len(), 2);
        assert_eq!(state.compacted, 1);
    }
}
