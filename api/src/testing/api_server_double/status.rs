//! [`Failure`]: a refusal, and the Kubernetes `Status` object that carries it (`kind: Status`,
//! `status: Failure`, `message`, `reason`, `code`, and `details` naming the object when there is
//! one), worded as kube-apiserver words it, so that kube-rs turns it into `kube::Error::Api` with
//! the right code and reason.
//!
//! Builds values only: no state, no I/O. Which refusal a request earns is decided by the object
//! rules (`state`), the watch (`watch`) and the request handling (the parent module).

use hyper::StatusCode;
use serde_json::{Value, json};

use super::url::Resource;

/// A refusal, sent as a `Status` object.
#[derive(Debug)]
pub(super) struct Failure {
    pub(super) code: StatusCode,
    reason: &'static str,
    message: String,
    details: Option<Value>,
}

impl Failure {
    pub(super) fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Failure {
        Failure {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    pub(super) fn bad_request(message: impl Into<String>) -> Failure {
        Failure::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    pub(super) fn about(mut self, resource: &Resource, name: &str) -> Failure {
        self.details = Some(json!({"name": name, "group": resource.group, "kind": resource.plural}));
        self
    }

    pub(super) fn not_found(resource: &Resource, name: &str) -> Failure {
        Failure::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{} \"{name}\" not found", resource.qualified()),
        )
        .about(resource, name)
    }

    pub(super) fn conflict(resource: &Resource, name: &str, why: String) -> Failure {
        Failure::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                resource.qualified()
            ),
        )
        .about(resource, name)
    }

    pub(super) fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code.as_u16(),
        });
        if let (Some(details), Some(map)) = (&self.details, status.as_object_mut()) {
            map.insert("details".into(), details.clone());
        }
        status
    }
}
