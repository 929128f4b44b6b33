//! Netlink handles for the host namespace (the one the plugin runs in) and for a pod's.
//!
//! A netlink socket keeps the network namespace it was opened in. So a pod's socket is opened
//! by a short-lived thread that enters the pod's namespace by file descriptor (`setns`) and
//! hands the socket back; the caller's runtime then drives it like the host's. No thread of the
//! caller's runtime ever changes namespace, and no second runtime is started per pod.
//!
//! Must never: leave a thread of the caller in another namespace.

use std::fs::File;
use std::path::Path;

use rtnetlink::Handle;
use rtnetlink::sys::protocols::NETLINK_ROUTE;
use rtnetlink::sys::{AsyncSocket, TokioSocket};

use super::DataplaneError;

/// A handle on a socket in the plugin's own namespace.
pub(super) fn host() -> Result<Handle, DataplaneError> {
    let (connection, handle, _) = rtnetlink::new_connection().map_err(DataplaneError::Connect)?;
    tokio::spawn(connection);
    Ok(handle)
}

/// Opens the namespace file at `path` (`CNI_NETNS`); a missing one is named as such.
pub(super) fn open(path: &Path) -> Result<File, DataplaneError> {
    File::open(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => DataplaneError::NetnsMissing { path: path.to_owned() },
        _ => DataplaneError::Netns {
            path: path.to_owned(),
            source,
        },
    })
}

/// A handle on a socket inside the namespace `netns` (opened from `path`).
pub(super) async fn pod(netns: &File, path: &Path) -> Result<Handle, DataplaneError> {
    let file = netns.try_clone().map_err(|source| DataplaneError::Netns {
        path: path.to_owned(),
        source,
    })?;
    let path = path.to_owned();
    let runtime = tokio::runtime::Handle::current();
    let (sender, receiver) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let socket = nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|errno| DataplaneError::Netns {
                path,
                source: errno.into(),
            })
            .and_then(|()| {
                // Registered with the caller's reactor, which polls it from then on.
                let _entered = runtime.enter();
                TokioSocket::new(NETLINK_ROUTE).map_err(DataplaneError::Connect)
            });
        let _ = sender.send(socket);
    });
    let socket = receiver
        .await
        .map_err(|_| DataplaneError::Missing("the namespace thread ended without an answer".into()))??;
    let (connection, handle, _) = rtnetlink::from_socket(socket);
    tokio::spawn(connection);
    Ok(handle)
}
