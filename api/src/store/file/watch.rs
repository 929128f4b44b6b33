//! Watches of the file store: a thread per watch tails the journal and turns entries of the
//! watched kind into [`WatchEvent`]s, in revision order, each once.
//!
//! The journal is polled (`FileStoreOptions::watch_poll`, 50 ms by default), so an event is
//! seen at most one poll interval after its commit. Compaction replaces the journal file (a new
//! inode): the watch then rereads the new file from the start and skips what it already sent;
//! if entries it had not sent yet were compacted away it ends with `Compacted`.
//! The thread ends when the stream is dropped. It never takes the store lock: the journal is
//! append-only and only complete lines (ending in a newline) are read.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::Inner;
use super::journal::{self, Change, Line, io_error};
use crate::store::{Key, Kind, Object, Revision, StoreError, WatchEvent, WatchStream};

pub(super) fn start(inner: Arc<Inner>, kind: Kind, from: Revision) -> Result<WatchStream, StoreError> {
    let (sender, receiver) = mpsc::channel(1024);
    let mut tail = JournalTail::open(&inner, from)?;
    let describe = inner.describe();
    std::thread::Builder::new()
        .name(format!("watch-{}", kind.plural))
        .spawn(move || {
            let poll = inner.options.watch_poll;
            loop {
                if sender.is_closed() {
                    return;
                }
                match tail.poll(&inner, &kind) {
                    Ok(events) => {
                        for event in events {
                            if sender.blocking_send(Ok(event)).is_err() {
                                return;
                            }
                        }
                    }
                    Err(error) => {
                        let _ = sender.blocking_send(Err(error));
                        return;
                    }
                }
                std::thread::sleep(poll);
            }
        })
        .map_err(|source| StoreError::Io {
            operation: "start a watch thread for",
            path: describe,
            source,
        })?;
    Ok(Box::pin(ReceiverStream::new(receiver)))
}

/// Where a watch is in the journal.
struct JournalTail {
    inode: u64,
    /// Bytes of the current journal file already consumed (always at a line start).
    offset: u64,
    /// The newest revision already handled (sent or skipped as another kind).
    seen: Revision,
}

impl JournalTail {
    fn open(inner: &Inner, from: Revision) -> Result<JournalTail, StoreError> {
        let path = inner.journal_path();
        let inode = std::fs::metadata(&path).map_err(io_error("stat", &path))?.ino();
        Ok(JournalTail {
            inode: inode.wrapping_add(1), // forces a read from the start on the first poll
            offset: 0,
            seen: from,
        })
    }

    fn poll(&mut self, inner: &Inner, kind: &Kind) -> Result<Vec<WatchEvent>, StoreError> {
        let path = inner.journal_path();
        let mut file = File::open(&path).map_err(io_error("open", &path))?;
        let metadata = file.metadata().map_err(io_error("stat", &path))?;
        if metadata.ino() != self.inode {
            self.inode = metadata.ino();
            self.offset = 0;
        }
        if metadata.len() <= self.offset {
            return Ok(Vec::new());
        }
        file.seek(SeekFrom::Start(self.offset))
            .map_err(io_error("seek", &path))?;
        let mut bytes = Vec::with_capacity((metadata.len() - self.offset) as usize);
        file.take(metadata.len() - self.offset)
            .read_to_end(&mut bytes)
            .map_err(io_error("read", &path))?;
        let api_version = kind.api_version();
        let mut events = Vec::new();
        let mut consumed = 0usize;
        for line in bytes.split_inclusive(|&b| b == b'\n') {
            if !line.ends_with(b"\n") {
                break; // an append in progress, or a torn one recovery will cut
            }
            let line_offset = self.offset + consumed as u64;
            consumed += line.len();
            match journal::parse_line(&path, line_offset, &line[..line.len() - 1])? {
                Line::Header(header) => {
                    if header.compacted_through > self.seen {
                        return Err(StoreError::Compacted {
                            store: inner.describe(),
                            requested: self.seen,
                            oldest: header.compacted_through,
                        });
                    }
                }
                Line::Entries(entries) => {
                    for entry in entries {
                        if entry.revision <= self.seen {
                            continue;
                        }
                        self.seen = entry.revision;
                        if entry.key.kind != kind.kind || entry.key.api_version != api_version {
                            continue;
                        }
                        let key = Key::new(kind, entry.key.namespace.as_deref(), &entry.key.name);
                        let object = Object::new(key, entry.revision, entry.object);
                        events.push(match entry.change {
                            Change::Create => WatchEvent::Added(object),
                            Change::Update => WatchEvent::Modified(object),
                            Change::Delete => WatchEvent::Deleted(object),
                        });
                    }
                }
            }
        }
        self.offset += consumed as u64;
        Ok(events)
    }
}
