//! Reading the captured vectors of `tests/golden/*.hex` and the checks every vector shares.
//!
//! A vector file is one message: comment lines starting with `#` (the first says how it was
//! produced, a `# decode with:` line gives the session's decoding context), then the message's
//! octets in hexadecimal, whitespace ignored.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use weft_bgp_proto::codec::{CodecContext, Message, decode_message, encode};
use weft_bgp_proto::route::{AsPath, AsPathSegment, Origin, PathAttributes, Prefix};
use weft_bgp_proto::update::read_update;
use weft_bgp_proto::wire::capabilities::BgpCapability;
use weft_bgp_proto::wire::open::BgpOpenMessage;
use weft_bgp_proto::wire::update::BgpUpdateMessage;
use weft_bgp_proto::{AddressType, Notification};

/// One captured message.
#[derive(Debug)]
pub struct Vector {
    /// The message, header included.
    pub bytes: Vec<u8>,
    /// The decoding context the capture recorded.
    pub context: CodecContext,
}

pub fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Every vector's name, sorted.
pub fn all_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(golden_dir())
        .expect("tests/golden exists")
        .filter_map(|entry| {
            let name = entry
                .expect("directory entry")
                .file_name()
                .into_string()
                .expect("UTF-8 name");
            name.strip_suffix(".hex").map(str::to_string)
        })
        .collect();
    names.sort();
    names
}

/// Reads `tests/golden/<name>.hex`.
pub fn vector(name: &str) -> Vector {
    let path = golden_dir().join(format!("{name}.hex"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let mut context = CodecContext::default();
    let mut hex = String::new();
    for line in text.lines() {
        if let Some(options) = line.strip_prefix("# decode with:") {
            for option in options.split_whitespace() {
                match option {
                    "four-octet-as" => context.four_octet_as = true,
                    "internal-peer" => context.internal_peer = true,
                    "add-path-receive=Ipv4Unicast" => context.add_path_receive.push(AddressType::Ipv4Unicast),
                    "add-path-receive=Ipv6Unicast" => context.add_path_receive.push(AddressType::Ipv6Unicast),
                    other => panic!("{name}: unknown decode option {other}"),
                }
            }
        } else if !line.starts_with('#') {
            hex.extend(line.chars().filter(|c| !c.is_whitespace()));
        }
    }
    assert!(hex.len().is_multiple_of(2), "{name}: odd number of hex digits");
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap_or_else(|_| panic!("{name}: bad hex at {i}")))
        .collect();
    Vector { bytes, context }
}

/// Decodes a vector: it must decode with nothing overlooked (no RFC 7606 finding, no ignored
/// capability).
pub fn decode(name: &str) -> Message {
    let vector = vector(name);
    let received = decode_message(&vector.bytes, &vector.context)
        .unwrap_or_else(|error| panic!("{name} does not decode: {error} ({error:?})"))
        .unwrap_or_else(|| panic!("{name} was ignored"));
    assert!(
        received.update_errors.is_empty(),
        "{name}: {:?}",
        received.update_errors
    );
    assert!(
        received.ignored_capabilities.is_empty(),
        "{name}: {:?}",
        received.ignored_capabilities
    );
    received.message
}

pub fn open(name: &str) -> BgpOpenMessage {
    match decode(name) {
        Message::Open(open) => open,
        other => panic!("{name} is not an OPEN: {other:?}"),
    }
}

pub fn update(name: &str) -> BgpUpdateMessage {
    match decode(name) {
        Message::Update(update) => update,
        other => panic!("{name} is not an UPDATE: {other:?}"),
    }
}

pub fn notification(name: &str) -> Notification {
    match decode(name) {
        Message::Notification(notification) => notification,
        other => panic!("{name} is not a NOTIFICATION: {other:?}"),
    }
}

/// The capabilities of an OPEN, in the order sent, all parameters together.
pub fn capabilities(open: &BgpOpenMessage) -> Vec<BgpCapability> {
    open.capabilities().into_iter().cloned().collect()
}

/// The header fields of an OPEN: My AS, hold time, BGP Identifier.
pub fn open_header(open: &BgpOpenMessage) -> (u16, u16, Ipv4Addr) {
    (open.my_as(), open.hold_time(), open.bgp_id())
}

/// The routes of an UPDATE, as the RIB reads them.
pub fn routes(name: &str) -> (Vec<Prefix>, Vec<(Prefix, PathAttributes)>) {
    let received = read_update(&update(name));
    let advertised = received
        .advertised
        .into_iter()
        .map(|(prefix, attributes)| (prefix, (*attributes).clone()))
        .collect();
    (received.withdrawn, advertised)
}

pub fn prefix(text: &str) -> Prefix {
    text.parse().expect("prefix")
}

pub fn ip(text: &str) -> IpAddr {
    text.parse().expect("address")
}

/// The attributes every peer puts on what it originates: community 65000:1, large community
/// 4200000001:1:2, MED 50 (the peers' configuration in examples/golden_capture/peers.rs).
pub fn peer_attributes(internal: bool, next_hop: &str) -> PathAttributes {
    PathAttributes {
        origin: Origin::Igp,
        as_path: if internal {
            AsPath::default()
        } else {
            AsPath(vec![AsPathSegment::Sequence(vec![4_200_000_001])])
        },
        next_hop: ip(next_hop),
        med: Some(50),
        local_pref: internal.then_some(100),
        communities: vec![(65000 << 16) | 1],
        large_communities: vec![[4_200_000_001, 1, 2]],
        originator_id: None,
        cluster_list: Vec::new(),
        aggregator: None,
        atomic_aggregate: false,
    }
}

/// Whether our encoder writes the decoded message back to the very same octets.
pub fn reencodes_identically(name: &str) -> bool {
    let vector = vector(name);
    let message = decode(name);
    encode(&message, &vector.context).expect("a decoded message encodes") == vector.bytes
}

/// decode → encode → decode gives the same message.
pub fn assert_round_trip(name: &str) {
    let vector = vector(name);
    let message = decode(name);
    let bytes = encode(&message, &vector.context).expect("a decoded message encodes");
    let again = decode_message(&bytes, &vector.context)
        .expect("our own encoding decodes")
        .expect("not ignored");
    assert_eq!(again.message, message, "{name}: decode → encode → decode differs");
}
