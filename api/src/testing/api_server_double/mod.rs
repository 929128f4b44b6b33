//! [`ApiServerDouble`]: a **test double** of the Kubernetes API server, for testing the
//! `kubernetes` store backend and the programs built on it. No kube-apiserver can be installed
//! on the machines weft is built on; this is not one and must never be used as one.
//!
//! An in-process HTTP/1.1 server on `127.0.0.1` (a free port), on the caller's tokio runtime,
//! that speaks enough of the Kubernetes REST API for any group, version and plural, core
//! (`/api/v1/…`) and named groups (`/apis/{group}/{version}/…`), namespaced
//! (`…/namespaces/{namespace}/{plural}[/{name}]`) and cluster-wide (`…/{plural}[/{name}]`).
//! A resource's scope is the URL's: the double has no discovery and no CRDs.
//!
//! What it keeps like a real API server:
//! - one in-memory map of objects and ONE resourceVersion counter for every resource, bumped by
//!   each write, with an event history of the last [`DEFAULT_HISTORY_LIMIT`] writes
//!   (configurable, and [`ApiServerDouble::compact`] forgets all of it);
//! - list (`metadata.resourceVersion` of the list is the current counter), get;
//! - create: POST, 201; 409 `AlreadyExists`; `uid`, `creationTimestamp`, `generation` set;
//! - update: PUT; a `metadata.resourceVersion` other than the current one is 409 `Conflict`, an
//!   empty one overwrites (as for custom resources); 404 `NotFound`; an update that changes
//!   nothing keeps the revision and makes no event; `generation` grows when more than
//!   `metadata`/`status` changes; for Kubernetes' own kinds with a status subresource
//!   (services, pods, nodes, namespaces) a PUT keeps the stored `status` and a PUT of
//!   `…/{name}/status` changes only the `status`;
//! - delete: DELETE with optional `DeleteOptions` (`preconditions.resourceVersion` and `uid`:
//!   409 on a mismatch); answers with the deleted object's last state; the DELETED event carries
//!   the revision of the deletion;
//! - watch: `?watch=true&resourceVersion=R[&timeoutSeconds=S]`, a chunked stream of
//!   `{"type":"ADDED|MODIFIED|DELETED","object":…}` lines: every change with a revision above
//!   `R`, then live ones. `R` older than the history is one `ERROR` event
//!   (`Status` 410 `Expired`, "too old resource version: R (OLDEST)", OLDEST the smallest
//!   version one may still watch from). Without `resourceVersion`, an `ADDED` event for each
//!   object, then live ones;
//! - errors are `Status` objects (`kind: Status`, `status: Failure`, `message`, `reason`,
//!   `code`), so kube-rs turns them into `kube::Error::Api` with the right code.
//!
//! Deliberately left out: authentication and authorization, TLS, discovery (`/api`, `/apis`),
//! CRD registration and schema validation, label and field selectors (refused with 400 rather
//! than ignored), pagination (`limit` is ignored: every list is whole), PATCH and server-side
//! apply, subresources other than `/status`, `generateName`, `dryRun`, finalizers and graceful
//! deletion, namespace existence checks, bookmarks, streaming lists (`sendInitialEvents`),
//! HTTP/2 and protobuf. Departure on purpose: `resourceVersion=0` on a watch means "every change
//! above 0" (the store contract), not Kubernetes' "any recent state".
//!
//! Other processes reach it through [`ApiServerDouble::write_kubeconfig`] (plain HTTP, no
//! user). The process that started it must keep its runtime running: await child processes
//! (`tokio::process`) rather than block on them, or use a multi-thread runtime.
//! [`ApiServerDouble::restart`] cuts every connection, as a restarting API server would,
//! keeping the state and the port; dropping the double shuts it down.
//!
//! Never panics on what a client sends; bodies are limited to 3 MiB as in Kubernetes.
//!
//! This module is the server: starting, restarting and stopping it, the kubeconfig, the accept
//! loop and the routing of each request; it holds no object rules. `url` parses what a URL
//! addresses, `state` keeps the objects, revisions and history and applies the object rules,
//! `watch` streams changes, `status` words refusals as `Status` objects.

mod state;
mod status;
mod url;
mod watch;

use std::convert::Infallible;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};

use state::State;
use status::Failure;
use url::{Query, Target};
use watch::start_watch;

/// How many writes the history keeps unless told otherwise.
pub const DEFAULT_HISTORY_LIMIT: usize = 10_000;

/// The API server's limit on a request body.
const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Why the double could not start or do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum ApiServerDoubleError {
    #[error("the API server double must be started inside a tokio runtime")]
    NoRuntime(#[source] tokio::runtime::TryCurrentError),
    #[error("the API server double cannot listen on 127.0.0.1")]
    Bind(#[source] std::io::Error),
    #[error("cannot write kubeconfig {path}")]
    Kubeconfig {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the API server double has stopped")]
    Stopped,
}

/// A test double of the Kubernetes API server (see the module documentation). Shuts down when
/// dropped.
pub struct ApiServerDouble {
    address: SocketAddr,
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
    server: JoinHandle<()>,
}

impl fmt::Debug for ApiServerDouble {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiServerDouble")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Drop for ApiServerDouble {
    fn drop(&mut self) {
        // Dropping the accept task drops its set of connections, which aborts them all.
        self.server.abort();
    }
}

enum Command {
    /// Cut every connection, answer, then accept again.
    Restart(oneshot::Sender<()>),
}

impl ApiServerDouble {
    /// Starts serving on a free port of 127.0.0.1, on the current tokio runtime.
    pub async fn start() -> Result<ApiServerDouble, ApiServerDoubleError> {
        ApiServerDouble::start_with_history_limit(DEFAULT_HISTORY_LIMIT).await
    }

    /// Starts serving with a history of the last `history_limit` writes: a watch from an older
    /// revision gets 410 Expired.
    pub async fn start_with_history_limit(history_limit: usize) -> Result<ApiServerDouble, ApiServerDoubleError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(ApiServerDoubleError::NoRuntime)?;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(ApiServerDoubleError::Bind)?;
        let address = listener.local_addr().map_err(ApiServerDoubleError::Bind)?;
        let shared = Arc::new(Shared::new(history_limit));
        let (commands, receiver) = mpsc::channel(4);
        let server = runtime.spawn(accept(listener, Arc::clone(&shared), receiver));
        tracing::debug!(%address, "api server double listening");
        Ok(ApiServerDouble {
            address,
            shared,
            commands,
            server,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// A kubeconfig pointing at the double: plain HTTP, no user, namespace `default`.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\n\
             kind: Config\n\
             clusters:\n\
             - name: weft-api-server-double\n  cluster:\n    server: {url}\n\
             contexts:\n\
             - name: weft-api-server-double\n  context:\n    cluster: weft-api-server-double\n    \
             user: weft-api-server-double\n    namespace: default\n\
             current-context: weft-api-server-double\n\
             users:\n\
             - name: weft-api-server-double\n  user: {{}}\n",
            url = self.url()
        )
    }

    /// Writes [`ApiServerDouble::kubeconfig`] to `path`.
    pub fn write_kubeconfig(&self, path: impl AsRef<Path>) -> Result<(), ApiServerDoubleError> {
        let path = path.as_ref();
        std::fs::write(path, self.kubeconfig()).map_err(|source| ApiServerDoubleError::Kubeconfig {
            path: path.display().to_string(),
            source,
        })
    }

    /// Cuts every open connection (requests in flight and watches end as when an API server
    /// restarts) and serves again on the same port with the same state. The listening socket
    /// stays open, so a client that reconnects at once waits in the backlog instead of being
    /// refused.
    pub async fn restart(&self) -> Result<(), ApiServerDoubleError> {
        let (done, restarted) = oneshot::channel();
        self.commands
            .send(Command::Restart(done))
            .await
            .map_err(|_| ApiServerDoubleError::Stopped)?;
        restarted.await.map_err(|_| ApiServerDoubleError::Stopped)?;
        tracing::debug!(address = %self.address, "api server double restarted");
        Ok(())
    }

    /// The current resourceVersion: that of the last write.
    pub fn revision(&self) -> u64 {
        self.shared.lock().revision
    }

    /// Forgets the whole event history: a watch from any revision before now gets 410 Expired.
    pub fn compact(&self) {
        self.shared.lock().compact();
    }
}

/// What every connection shares.
struct Shared {
    state: Mutex<State>,
    /// The revision of the last write; watches wait on it.
    written: tokio::sync::watch::Sender<u64>,
}

impl Shared {
    fn new(history_limit: usize) -> Shared {
        Shared {
            state: Mutex::new(State::new(history_limit)),
            written: tokio::sync::watch::Sender::new(0),
        }
    }

    /// The state; never held across an `.await`. A panic elsewhere cannot leave it half written
    /// (every write is done before the guard drops), so a poisoned lock is still good.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

type Body = UnsyncBoxBody<Bytes, Infallible>;

fn json_response(code: StatusCode, value: &Value) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())).boxed_unsync());
    *response.status_mut() = code;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn answer(code: StatusCode, result: Result<Value, Failure>) -> Response<Body> {
    match result {
        Ok(value) => json_response(code, &value),
        Err(failure) => refuse(failure),
    }
}

fn refuse(failure: Failure) -> Response<Body> {
    json_response(failure.code, &failure.status())
}

/// Accepts connections, one task each, until the double is dropped.
async fn accept(listener: TcpListener, shared: Arc<Shared>, mut commands: mpsc::Receiver<Command>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    connections.spawn(serve_connection(stream, Arc::clone(&shared)));
                }
                Err(error) => {
                    // Out of file descriptors, most likely: give connections time to end.
                    tracing::warn!(%error, "api server double cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            command = commands.recv() => match command {
                Some(Command::Restart(done)) => {
                    connections.shutdown().await;
                    let _ = done.send(());
                }
                None => break,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let service = service_fn(move |request| {
        let shared = Arc::clone(&shared);
        async move { Ok::<_, Infallible>(handle(&shared, request).await) }
    });
    if let Err(error) = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!(%error, "api server double connection ended with an error");
    }
}

async fn handle(shared: &Arc<Shared>, request: Request<Incoming>) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    let query = Query::parse(parts.uri.query().unwrap_or_default());
    tracing::trace!(method = %parts.method, uri = %parts.uri, "api server double request");
    let Some(target) = Target::parse(path) else {
        let message = "the server could not find the requested resource";
        return refuse(Failure::new(StatusCode::NOT_FOUND, "NotFound", message));
    };
    if let Some(parameter) = query.unsupported {
        return refuse(Failure::bad_request(format!(
            "the API server double does not support {parameter}"
        )));
    }
    let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            let message = format!("cannot read the request body: {error}");
            return refuse(Failure::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                message,
            ));
        }
    };
    match (&parts.method, target.name.as_deref()) {
        (method, _) if target.status && !matches!(*method, Method::GET | Method::PUT) => {
            let message = format!("the API server double does not support {method} on {path}");
            refuse(Failure::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                message,
            ))
        }
        (&Method::GET, None) if query.watch => start_watch(shared, target, &query),
        (&Method::GET, None) => json_response(StatusCode::OK, &shared.lock().list(&target)),
        (&Method::GET, Some(name)) => answer(StatusCode::OK, shared.lock().get(&target, name)),
        (&Method::POST, None) => {
            let now = now();
            write(shared, StatusCode::CREATED, |state| state.create(&target, &body, &now))
        }
        (&Method::PUT, Some(name)) => write(shared, StatusCode::OK, |state| state.update(&target, name, &body)),
        (&Method::DELETE, Some(name)) => write(shared, StatusCode::OK, |state| state.delete(&target, name, &body)),
        (method, _) => {
            let message = format!("the API server double does not support {method} on {path}");
            refuse(Failure::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                message,
            ))
        }
    }
}

/// Runs one write and wakes the watches.
fn write(
    shared: &Shared,
    code: StatusCode,
    operation: impl FnOnce(&mut State) -> Result<Value, Failure>,
) -> Response<Body> {
    let result = {
        let mut state = shared.lock();
        let result = operation(&mut state);
        shared.written.send_replace(state.revision);
        result
    };
    answer(code, result)
}

fn now() -> String {
    let now = k8s_openapi::jiff::Timestamp::now();
    now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}
