//! The watch of the `kubernetes` store: one `?watch=true&resourceVersion=R` request after
//! another, as one stream of [`WatchEvent`]s that lasts until the caller drops it.
//!
//! ```text
//!            open(from) ──error──▶ Err(..) from `watch` itself
//!                │ ok
//!                ▼
//!   ┌──────▶ streaming ──ADDED/MODIFIED/DELETED──▶ yield, last := its revision
//!   │            │ ──BOOKMARK──────────────────────▶ last := its revision (nothing yielded)
//!   │            │ ──ERROR 410─────────────────────▶ yield Compacted, end
//!   │            │ ──other ERROR, bad object, I/O──▶ yield the error, end
//!   │            │ ended by the server (its watch timeout, or the connection closed)
//!   │            ▼
//!   └──ok── re-open from `last` ──error──▶ yield the error, end
//! ```
//!
//! Owns only the resumption: the API server sends the events in revision order, each change
//! once, and a re-open asks for the changes above the last revision seen, so none is lost or
//! repeated. A re-open after a watch that ended quickly without an event waits
//! [`REOPEN_PAUSE`] first, so a server that closes every watch at once is not hammered.
//! Must never retry a failed request: the first error ends the stream (the caller watches again
//! from its last revision, or lists again after [`StoreError::Compacted`]).

use std::time::Duration;

use ::kube::api::{Api, DynamicObject, WatchParams};
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::time::Instant;

use super::KubeStore;
use crate::store::{Kind, Revision, StoreError, WatchEvent, WatchStream};

type RawEvent = ::kube::api::WatchEvent<DynamicObject>;

/// A watch that ended sooner than this without delivering anything is re-opened only after
/// [`REOPEN_PAUSE`].
const SHORT_WATCH: Duration = Duration::from_secs(1);
const REOPEN_PAUSE: Duration = Duration::from_secs(1);

/// Opens the first request now, so that an unreachable server fails the `watch` call itself.
pub(super) async fn open(store: KubeStore, kind: Kind, from: Revision) -> Result<WatchStream, StoreError> {
    let api = store.api(&kind, None);
    let mut watch = Watch {
        store,
        kind,
        api,
        last: from,
        events: None,
        opened_at: Instant::now(),
        delivered: false,
        ended: false,
    };
    watch.open().await?;
    Ok(futures::stream::unfold(watch, |mut watch| async move {
        let item = watch.next().await?;
        Some((item, watch))
    })
    .boxed())
}

struct Watch {
    store: KubeStore,
    kind: Kind,
    api: Api<DynamicObject>,
    /// The last revision delivered (or known delivered, from a bookmark): where to re-open.
    last: Revision,
    /// The open request's events, `None` between requests.
    events: Option<BoxStream<'static, Result<RawEvent, ::kube::Error>>>,
    opened_at: Instant,
    /// Whether the open request delivered an event.
    delivered: bool,
    /// Set after the first error: nothing more comes.
    ended: bool,
}

impl Watch {
    async fn open(&mut self) -> Result<(), StoreError> {
        let events = self
            .api
            .watch(&WatchParams::default(), &self.last.to_string())
            .await
            .map_err(|error| match error {
                ::kube::Error::Api(status) if status.code == 410 => self.compacted(&status),
                error => self.store.classify(&self.kind.kind, error),
            })?;
        tracing::debug!(kind = %self.kind, from = %self.last, "watch opened");
        self.events = Some(events.boxed());
        self.opened_at = Instant::now();
        self.delivered = false;
        Ok(())
    }

    /// The next change, `None` once an error has ended the stream.
    async fn next(&mut self) -> Option<Result<WatchEvent, StoreError>> {
        if self.ended {
            return None;
        }
        let item = self.next_item().await;
        if item.is_err() {
            self.ended = true;
            self.events = None;
        }
        Some(item)
    }

    /// Each turn of the loop either returns or moves on by one event or one re-open; re-opens
    /// after short, empty watches are paced by [`REOPEN_PAUSE`]. The caller bounds the rest by
    /// dropping the stream.
    async fn next_item(&mut self) -> Result<WatchEvent, StoreError> {
        loop {
            let Some(events) = self.events.as_mut() else {
                if !self.delivered && self.opened_at.elapsed() < SHORT_WATCH {
                    tokio::time::sleep(REOPEN_PAUSE).await;
                }
                self.open().await?;
                continue;
            };
            match events.next().await {
                None => {
                    tracing::debug!(kind = %self.kind, last = %self.last, "watch ended by the server, re-opening");
                    self.events = None;
                }
                Some(Ok(RawEvent::Added(object))) => return self.deliver(object).map(WatchEvent::Added),
                Some(Ok(RawEvent::Modified(object))) => return self.deliver(object).map(WatchEvent::Modified),
                Some(Ok(RawEvent::Deleted(object))) => return self.deliver(object).map(WatchEvent::Deleted),
                Some(Ok(RawEvent::Bookmark(bookmark))) => {
                    // A bookmark promises every change up to its version was sent: resume from
                    // there. One that is not a number is only a lost shortcut.
                    if let Ok(revision) = bookmark.metadata.resource_version.parse::<u64>() {
                        self.last = self.last.max(Revision(revision));
                    }
                }
                Some(Ok(RawEvent::Error(status))) if status.code == 410 => return Err(self.compacted(&status)),
                Some(Ok(RawEvent::Error(status))) => {
                    return Err(self.store.classify(&self.kind.kind, ::kube::Error::Api(status)));
                }
                Some(Err(error)) => return Err(self.store.classify(&self.kind.kind, error)),
            }
        }
    }

    fn deliver(&mut self, object: DynamicObject) -> Result<crate::store::Object, StoreError> {
        let object = self.store.object_from(&self.kind, object)?;
        self.last = self.last.max(object.revision);
        self.delivered = true;
        Ok(object)
    }

    /// The API server's "410 Gone" for a version older than it keeps. Its message ends with the
    /// oldest version one may still watch from, in parentheses
    /// (`too old resource version: 5 (42)`); 0 when it does not say.
    fn compacted(&self, status: &::kube::core::Status) -> StoreError {
        let oldest = status
            .message
            .rsplit_once('(')
            .and_then(|(_, rest)| rest.strip_suffix(')'))
            .and_then(|number| number.trim().parse().ok())
            .map_or(Revision(0), Revision);
        StoreError::Compacted {
            store: self.store.endpoint.clone(),
            requested: self.last,
            oldest,
        }
    }
}
