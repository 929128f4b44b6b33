//! The capture's recorder: names each message by what it carries and saves it as a vector file,
//! drops repeats, keeps the run's notes and the peer's view of our routes.
//!
//! Must never: fail the capture because one vector could not be written (it is noted instead).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use weft_bgp_proto::AddressType;
use weft_bgp_proto::codec::{CodecContext, Message, decode_message};
use weft_bgp_proto::update::{end_of_rib_family, read_update};
use weft_bgp_proto::wire::path_attribute::{MpReach, MpUnreach, PathAttributeValue};
use weft_bgp_proto::wire::update::BgpUpdateMessage;

use super::golden_dir;
use super::lab::{self, Lab, Result};
use super::peers::{OUR_EBGP_AS, Peer};
use super::wire;

pub fn decoded_update(bytes: &[u8], context: &CodecContext) -> Option<BgpUpdateMessage> {
    match decode_message(bytes, context) {
        Ok(Some(received)) => match received.message {
            Message::Update(update) => Some(update),
            _ => None,
        },
        _ => None,
    }
}

/// The `<type>-<what>` part of a vector's name.
fn classify(bytes: &[u8], context: &CodecContext, session: &str) -> String {
    match bytes[18] {
        1 => format!("open-{session}"),
        2 => classify_update(bytes, context, session),
        3 => {
            let (code, subcode) = (bytes.get(19).copied().unwrap_or(0), bytes.get(20).copied().unwrap_or(0));
            let what = match (code, subcode) {
                (2, 6) => "open-unacceptable-hold-time".to_string(),
                (3, 1) => "update-malformed-attribute-list".to_string(),
                (6, 2) => "cease-administrative-shutdown".to_string(),
                (6, 4) => "cease-administrative-reset".to_string(),
                (6, 9) => "cease-hard-reset".to_string(),
                _ => format!("code-{code}-subcode-{subcode}"),
            };
            format!("notification-{what}")
        }
        4 => "keepalive".to_string(),
        5 => {
            let family = match bytes.get(19..22) {
                Some([0, 1, _]) => "ipv4",
                Some([0, 2, _]) => "ipv6",
                _ => "other",
            };
            let subtype = match bytes.get(21) {
                Some(0) => "",
                Some(1) => "-borr",
                Some(2) => "-eorr",
                _ => "-unknown-subtype",
            };
            format!("route-refresh{subtype}-{family}")
        }
        other => format!("type-{other}"),
    }
}

fn classify_update(bytes: &[u8], context: &CodecContext, session: &str) -> String {
    let Some(update) = decoded_update(bytes, context) else {
        return format!("update-{session}-undecoded");
    };
    match end_of_rib_family(&update) {
        Some(AddressType::Ipv4Unicast) => return format!("update-{session}-end-of-rib-ipv4"),
        Some(AddressType::Ipv6Unicast) => return format!("update-{session}-end-of-rib-ipv6"),
        _ => {}
    }
    let mut parts = Vec::new();
    if !update.withdraw_routes().is_empty() {
        parts.push("ipv4-withdrawn".to_string());
    }
    for attribute in update.path_attributes() {
        match attribute.value() {
            PathAttributeValue::MpReach(MpReach::Ipv6Unicast { next_hop_local, .. }) => {
                parts.push(if next_hop_local.is_some() {
                    "ipv6-mp-reach-link-local".to_string()
                } else {
                    "ipv6-mp-reach".to_string()
                });
            }
            PathAttributeValue::MpReach(MpReach::Ipv4Unicast { next_hop, .. }) => parts.push(if next_hop.is_ipv6() {
                "ipv4-mp-reach-ipv6-next-hop".to_string()
            } else {
                "ipv4-mp-reach".to_string()
            }),
            PathAttributeValue::MpUnreach(MpUnreach::Ipv6Unicast { .. }) => parts.push("ipv6-mp-unreach".to_string()),
            PathAttributeValue::MpUnreach(MpUnreach::Ipv4Unicast { .. }) => parts.push("ipv4-mp-unreach".to_string()),
            _ => {}
        }
    }
    if !update.nlri().is_empty() {
        parts.push("ipv4-nlri".to_string());
    }
    if parts.is_empty() {
        parts.push("other".to_string());
    }
    let ours = read_update(&update)
        .advertised
        .iter()
        .any(|(_, attributes)| attributes.as_path.contains(OUR_EBGP_AS));
    if ours {
        parts.push("our-routes-back".to_string());
    }
    let add_path = if context.add_path_receive.is_empty() {
        ""
    } else {
        "-add-path"
    };
    format!("update-{session}-{}{add_path}", parts.join("-and-"))
}

/// Saves vectors, dropping repeats, and keeps the run's notes.
#[derive(Debug)]
pub struct Recorder {
    peer: Peer,
    /// Appended to the names of the UPDATEs recorded now (the answer to our ROUTE-REFRESH).
    pub phase: &'static str,
    pub version: String,
    saved: BTreeMap<String, Vec<u8>>,
    notes: Vec<String>,
    accepted: String,
}

impl Recorder {
    pub fn new(peer: Peer, version: String) -> Self {
        Self {
            peer,
            phase: "",
            version,
            saved: BTreeMap::new(),
            notes: Vec::new(),
            accepted: String::new(),
        }
    }

    pub fn label(&self) -> String {
        format!("{} {}", self.peer.name(), self.version)
    }

    pub fn note(&mut self, note: &str) {
        println!("{}: note: {note}", self.label());
        self.notes.push(note.to_string());
    }

    pub fn expect(&mut self, seen: bool, what: &str) {
        if !seen {
            self.note(&format!("MISSING: {what}"));
        }
    }

    /// Records every message until `done` says so, the deadline, or the end of the connection.
    pub fn collect(
        &mut self,
        wire: &mut wire::Wire,
        context: &CodecContext,
        session: &str,
        how: &str,
        timeout: Duration,
        mut done: impl FnMut(&[u8]) -> bool,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while let Some(bytes) = wire.next(deadline)? {
            let mut name = classify(&bytes, context, session);
            if bytes[18] == 2 && !self.phase.is_empty() {
                // A message sent again in this phase is not a new vector.
                if self.saved.values().any(|previous| *previous == bytes) {
                    if done(&bytes) {
                        return Ok(());
                    }
                    continue;
                }
                name.push_str(self.phase);
            }
            let decode_with = decode_context_line(context);
            self.save(
                &self.file_stem(&name),
                &bytes,
                &format!("{} -> weft capture, {how}", self.label()),
                &decode_with,
            );
            if done(&bytes) {
                return Ok(());
            }
        }
        if wire.closed {
            self.note(&format!("the peer closed the connection ({how})"));
        }
        Ok(())
    }

    fn file_stem(&self, name: &str) -> String {
        format!("{}-{}-{name}", self.peer.name(), self.version)
    }

    /// Saves one of our messages; the same bytes are sent to every peer, so one file serves all.
    /// The peer decodes them with 4-octet AS numbers, without add-path (we never offer to send
    /// path identifiers) and, on the iBGP session, as from an internal peer.
    pub fn sent(&mut self, name: &str, bytes: &[u8], how: &str) {
        let internal = name.contains("ibgp") || how.starts_with("iBGP");
        let stem = format!("weft-{}-{name}", env!("CARGO_PKG_VERSION"));
        let comment = format!("weft-bgp-proto's encoder -> bird, frr and gobgp (accepted: see README), {how}");
        let decode_with = if internal {
            "# decode with: four-octet-as internal-peer"
        } else {
            "# decode with: four-octet-as"
        };
        self.save(&stem, bytes, &comment, decode_with);
    }

    fn save(&mut self, stem: &str, bytes: &[u8], comment: &str, decode_with: &str) {
        let mut candidate = stem.to_string();
        let mut repeat = 1;
        while let Some(previous) = self.saved.get(&candidate) {
            if previous == bytes || repeat == 4 {
                return;
            }
            repeat += 1;
            candidate = format!("{stem}-{repeat}");
        }
        let stem = candidate;
        let mut text = format!("# {comment}\n{decode_with}\n");
        for line in bytes.chunks(16) {
            let hex: Vec<String> = line.iter().map(|octet| format!("{octet:02x}")).collect();
            let _ = writeln!(text, "{}", hex.join(" "));
        }
        let path = golden_dir().join(format!("{stem}.hex"));
        match std::fs::write(&path, text) {
            Ok(()) => println!("{}: saved {}", self.label(), path.display()),
            Err(error) => self.note(&format!("cannot write {}: {error}", path.display())),
        }
        self.saved.insert(stem, bytes.to_vec());
    }

    pub fn check_accepted(&mut self, lab: &Lab, peer: Peer, prefixes: &[&str]) {
        for prefix in prefixes {
            match lab::poll(&format!("{prefix} in the peer's RIB"), Duration::from_secs(20), || {
                peer.route(lab, prefix)
            }) {
                Ok(shown) => {
                    let _ = writeln!(self.accepted, "## {prefix}\n{}", shown.trim_end());
                }
                Err(error) => self.note(&format!("NOT ACCEPTED: {error}")),
            }
        }
    }

    pub fn accepted_notification(&mut self, report: &str) {
        let _ = writeln!(
            self.accepted,
            "## our NOTIFICATION (Cease, Administrative Shutdown, \"weft golden\")\n{}",
            report.trim_end()
        );
    }

    pub fn finish(&mut self) {
        let path = golden_dir().join(format!(
            "{}-accepted-routes.txt",
            self.file_stem("").trim_end_matches('-')
        ));
        let mut text = format!(
            "# {}: our routes as the peer shows them (weft's encoder -> the peer's decoder), written by golden_capture\n",
            self.label()
        );
        text.push_str(&self.accepted);
        if !self.notes.is_empty() {
            text.push_str("\n## notes\n");
            for note in &self.notes {
                let _ = writeln!(text, "- {note}");
            }
        }
        if let Err(error) = std::fs::write(&path, text) {
            eprintln!("cannot write {}: {error}", path.display());
        }
        println!(
            "{}: {} vectors; notes: {:#?}",
            self.label(),
            self.saved.len(),
            self.notes
        );
    }
}

fn decode_context_line(context: &CodecContext) -> String {
    let mut line = "# decode with:".to_string();
    if context.four_octet_as {
        line.push_str(" four-octet-as");
    }
    for family in &context.add_path_receive {
        let _ = write!(line, " add-path-receive={family:?}");
    }
    if context.internal_peer {
        line.push_str(" internal-peer");
    }
    line
}
