//! Watch streaming: [`start_watch`] answers `GET …?watch=true[&resourceVersion=R]
//! [&timeoutSeconds=S]` with a chunked stream of `{"type":"ADDED|MODIFIED|DELETED","object":…}`
//! lines: every change to the watched collection with a revision above `R`, then live ones.
//! `R` older than the history is one `ERROR` event (`Status` 410 `Expired`, "too old resource
//! version: R (OLDEST)") that ends the stream. Without `resourceVersion`, an `ADDED` event for
//! each current object, then live ones. The stream ends at `timeoutSeconds`, after the 410, or
//! when the connection is cut.
//!
//! Reads the `State` under its lock and waits for writes on the revision channel `written`;
//! never holds the lock across an `.await`, never writes.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use tokio::sync::watch;
use tokio::time::Instant;

use super::state::event_line;
use super::status::Failure;
use super::url::{Query, Target};
use super::{Body, Shared, refuse};

/// Answers a watch request with a stream that ends at `timeoutSeconds`, on 410, or when the
/// connection is cut.
pub(super) fn start_watch(shared: &Arc<Shared>, target: Target, query: &Query) -> Response<Body> {
    let mut pending = VecDeque::new();
    let after = match query.resource_version.as_deref() {
        Some(version) => match version.parse::<u64>() {
            Ok(after) => after,
            Err(_) => return refuse(Failure::bad_request(format!("invalid resourceVersion {version:?}"))),
        },
        None => {
            // Kubernetes' "most recent": the current objects, then what changes next.
            let state = shared.lock();
            pending.extend(
                state
                    .objects
                    .iter()
                    .filter(|(key, _)| target.holds(key))
                    .map(|(_, object)| event_line("ADDED", object)),
            );
            state.revision
        }
    };
    let watch = Watch {
        shared: Arc::clone(shared),
        target,
        after,
        pending,
        written: shared.written.subscribe(),
        // A timeout too large to add is no timeout.
        deadline: query
            .timeout_seconds
            .and_then(|seconds| Instant::now().checked_add(Duration::from_secs(seconds))),
        ended: false,
    };
    let lines = futures::stream::unfold(watch, |mut watch| async move {
        let line = watch.next_line().await?;
        Some((Ok::<_, Infallible>(Frame::data(line)), watch))
    });
    let mut response = Response::new(StreamBody::new(lines.boxed()).boxed_unsync());
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// One watch request's position in the history.
struct Watch {
    shared: Arc<Shared>,
    target: Target,
    /// Every event up to this revision has been queued or skipped.
    after: u64,
    pending: VecDeque<Bytes>,
    written: watch::Receiver<u64>,
    deadline: Option<Instant>,
    ended: bool,
}

impl Watch {
    /// The next line to send; `None` ends the response. Each turn either returns, queues what
    /// was written, or waits for the next write or the deadline.
    async fn next_line(&mut self) -> Option<Bytes> {
        loop {
            if let Some(line) = self.pending.pop_front() {
                return Some(line);
            }
            if self.ended || self.deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                return None;
            }
            // Mark what is seen before reading, so a write after the read wakes the wait below.
            self.written.borrow_and_update();
            self.catch_up();
            if !self.pending.is_empty() {
                continue;
            }
            let changed = self.written.changed();
            match self.deadline {
                Some(deadline) => tokio::select! {
                    changed = changed => if changed.is_err() { return None },
                    () = tokio::time::sleep_until(deadline) => return None,
                },
                None => {
                    if changed.await.is_err() {
                        return None;
                    }
                }
            }
        }
    }

    /// Queues the events of this watch's collection written since `after`, or the 410 when the
    /// history no longer reaches back that far.
    fn catch_up(&mut self) {
        let state = self.shared.lock();
        if self.after < state.compacted {
            let failure = Failure::new(
                StatusCode::GONE,
                "Expired",
                format!("too old resource version: {} ({})", self.after, state.compacted),
            );
            self.pending.push_back(event_line("ERROR", &failure.status()));
            self.ended = true;
            return;
        }
        let first = state.history.partition_point(|event| event.revision <= self.after);
        self.pending.extend(
            state
                .history
                .range(first..)
                .filter(|event| self.target.holds(&event.key))
                .map(|event| event.line.clone()),
        );
        self.after = self.after.max(state.revision);
    }
}
