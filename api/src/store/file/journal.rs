//! The file store's journal: the commit log every write goes through, and what watches read.
//!
//! One JSON document a line. The first line is a [`Header`]; every other line is an [`Entry`]
//! with the next revision, or a [`Batch`] of entries with consecutive revisions that were
//! committed together (all or none: they share one line). A write is committed when its line,
//! newline included, is fsynced.
//! A line without its newline is a torn append of a writer that died: it was never committed
//! and recovery cuts it off. Revisions at or below the header's `compactedThrough` are gone.
//!
//! This module owns the byte format and nothing else: no locking (the caller holds the store
//! lock), no object files.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::store::{Revision, StoreError};

pub(super) const FORMAT: &str = "weft-file-store/1";

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(super) struct Header {
    pub format: String,
    /// Every revision up to this one has been compacted away.
    pub compacted_through: Revision,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub(super) enum Change {
    Create,
    Update,
    Delete,
}

/// Where an entry's object lives, as plain strings (kinds are looked up by the reader).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub(super) struct EntryKey {
    pub api_version: String,
    pub kind: String,
    pub plural: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(super) struct Entry {
    pub revision: Revision,
    pub change: Change,
    pub key: EntryKey,
    /// The object after the change; for a deletion, its last state.
    pub object: Value,
}

/// Entries committed together, in one line.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub(super) struct Batch {
    pub batch: Vec<Entry>,
}

/// One line of the journal, parsed.
#[derive(Debug)]
pub(super) enum Line {
    Header(Header),
    /// One entry, or the entries of a batch in revision order; never empty.
    Entries(Vec<Entry>),
}

pub(super) fn parse_line(path: &Path, offset: u64, bytes: &[u8]) -> Result<Line, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        location: format!("{} at byte {offset}", path.display()),
        reason,
    };
    let value: Value = serde_json::from_slice(bytes).map_err(|error| corrupt(format!("not JSON: {error}")))?;
    if value.get("format").is_some() {
        let header: Header =
            serde_json::from_value(value).map_err(|error| corrupt(format!("bad journal header: {error}")))?;
        if header.format != FORMAT {
            return Err(corrupt(format!(
                "journal format {:?}, this weft reads {FORMAT:?}",
                header.format
            )));
        }
        Ok(Line::Header(header))
    } else if value.get("batch").is_some() {
        let Batch { batch } =
            serde_json::from_value(value).map_err(|error| corrupt(format!("bad journal batch: {error}")))?;
        let consecutive = batch
            .windows(2)
            .all(|pair| pair[1].revision.0 == pair[0].revision.0 + 1);
        if batch.is_empty() || !consecutive {
            return Err(corrupt("a batch without entries or with revisions out of order".into()));
        }
        Ok(Line::Entries(batch))
    } else {
        let entry: Entry =
            serde_json::from_value(value).map_err(|error| corrupt(format!("bad journal entry: {error}")))?;
        Ok(Line::Entries(vec![entry]))
    }
}

pub(super) fn io_error(operation: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + use<> {
    let path = path.display().to_string();
    move |source| StoreError::Io {
        operation,
        path,
        source,
    }
}

/// The journal's state as recovery finds it.
#[derive(Debug)]
pub(super) struct Tail {
    /// The newest committed revision (the header's when there are no entries).
    pub head: Revision,
    /// The entries of the last line (one write or one batch); empty when only the header is
    /// there.
    pub last: Vec<Entry>,
    /// Length of the committed part: everything after it is a torn append.
    pub committed_len: u64,
    pub file_len: u64,
}

/// Reads the last committed line of the journal without reading the whole file.
pub(super) fn read_tail(path: &Path) -> Result<Tail, StoreError> {
    let mut file = File::open(path).map_err(io_error("open", path))?;
    let file_len = file.metadata().map_err(io_error("stat", path))?.len();
    // Find the end of the committed part: the byte after the last newline.
    let mut committed_len = 0;
    let mut end = file_len;
    const CHUNK: u64 = 8 * 1024;
    let mut buffer = Vec::new();
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        buffer.resize((end - start) as usize, 0);
        file.seek(SeekFrom::Start(start)).map_err(io_error("seek", path))?;
        file.read_exact(&mut buffer).map_err(io_error("read", path))?;
        if let Some(position) = buffer.iter().rposition(|&b| b == b'\n') {
            committed_len = start + position as u64 + 1;
            break;
        }
        end = start;
    }
    if committed_len == 0 {
        return Err(StoreError::Corrupt {
            location: path.display().to_string(),
            reason: "the journal has no complete header line".into(),
        });
    }
    // Find the start of the last committed line.
    let mut line_end = committed_len - 1;
    let mut line = Vec::new();
    loop {
        let start = line_end.saturating_sub(CHUNK);
        let mut chunk = vec![0; (line_end - start) as usize];
        file.seek(SeekFrom::Start(start)).map_err(io_error("seek", path))?;
        file.read_exact(&mut chunk).map_err(io_error("read", path))?;
        match chunk.iter().rposition(|&b| b == b'\n') {
            Some(position) => {
                chunk.drain(..=position);
                chunk.extend_from_slice(&line);
                line = chunk;
                break;
            }
            None => {
                chunk.extend_from_slice(&line);
                line = chunk;
                if start == 0 {
                    break;
                }
                line_end = start;
            }
        }
    }
    let line_offset = committed_len - 1 - line.len() as u64;
    match parse_line(path, line_offset, &line)? {
        Line::Header(header) => Ok(Tail {
            head: header.compacted_through,
            last: Vec::new(),
            committed_len,
            file_len,
        }),
        Line::Entries(entries) => Ok(Tail {
            head: entries.last().map_or(Revision(0), |entry| entry.revision),
            last: entries,
            committed_len,
            file_len,
        }),
    }
}

/// Creates a journal holding only a header.
pub(super) fn create(path: &Path, compacted_through: Revision) -> Result<(), StoreError> {
    let header = Header {
        format: FORMAT.into(),
        compacted_through,
    };
    let mut line = serde_json::to_vec(&header).map_err(|error| StoreError::Invalid {
        key: path.display().to_string(),
        reason: error.to_string(),
    })?;
    line.push(b'\n');
    super::atomic_write(path, &line, true)
}

/// Cuts off a torn append.
pub(super) fn truncate(path: &Path, len: u64) -> Result<(), StoreError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_error("open", path))?;
    file.set_len(len).map_err(io_error("truncate", path))?;
    file.sync_all().map_err(io_error("fsync", path))
}

/// Appends one line, the entry or (more than one) the batch, and makes it durable: the commit
/// point of a write.
pub(super) fn append(path: &Path, entries: &[Entry]) -> Result<u64, StoreError> {
    let invalid = |error: serde_json::Error| StoreError::Invalid {
        key: entries
            .iter()
            .map(|entry| format!("{}/{}", entry.key.kind, entry.key.name))
            .collect::<Vec<_>>()
            .join(", "),
        reason: error.to_string(),
    };
    let mut line = match entries {
        [entry] => serde_json::to_vec(entry).map_err(invalid)?,
        _ => serde_json::to_vec(&Batch {
            batch: entries.to_vec(),
        })
        .map_err(invalid)?,
    };
    line.push(b'\n');
    let mut file = OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io_error("open", path))?;
    // One write call: a process killed mid-way leaves no newline, so no committed line.
    file.write_all(&line).map_err(io_error("append to", path))?;
    file.sync_data().map_err(io_error("fsync", path))?;
    let len = file.metadata().map_err(io_error("stat", path))?.len();
    Ok(len)
}

/// Rewrites the journal keeping only the newest entries, about `keep_bytes` of them.
pub(super) fn compact(path: &Path, keep_bytes: u64) -> Result<(), StoreError> {
    let bytes = std::fs::read(path).map_err(io_error("read", path))?;
    let mut lines: Vec<(u64, &[u8])> = Vec::new();
    let mut offset = 0u64;
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        if line.ends_with(b"\n") {
            lines.push((offset, line));
        }
        offset += line.len() as u64;
    }
    let mut kept: Vec<&[u8]> = Vec::new();
    let mut size = 0u64;
    let mut compacted_through = Revision(0);
    for (offset, line) in lines.iter().rev() {
        match parse_line(path, *offset, &line[..line.len() - 1])? {
            Line::Header(header) => {
                compacted_through = compacted_through.max(header.compacted_through);
                break;
            }
            Line::Entries(entries) => {
                if size + line.len() as u64 > keep_bytes && !kept.is_empty() {
                    compacted_through = entries.last().map_or(compacted_through, |entry| entry.revision);
                    break;
                }
                size += line.len() as u64;
                kept.push(line);
            }
        }
    }
    let header = Header {
        format: FORMAT.into(),
        compacted_through,
    };
    let mut out = serde_json::to_vec(&header).map_err(|error| StoreError::Invalid {
        key: path.display().to_string(),
        reason: error.to_string(),
    })?;
    out.push(b'\n');
    for line in kept.iter().rev() {
        out.extend_from_slice(line);
    }
    super::atomic_write(path, &out, true)
}
