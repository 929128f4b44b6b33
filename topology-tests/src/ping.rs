//! ICMP echo from inside a test namespace, with no `ping` binary needed.
//!
//! Contract: [`Netns::ping_once`] sends one ICMP (RFC 792) or ICMPv6 (RFC 4443) Echo Request
//! from a raw socket made inside the namespace, connected to the destination so the kernel
//! hands it only that address's packets, and waits a bounded time for the matching Echo Reply
//! (same identifier and sequence number). "No route", "unreachable" and silence all mean
//! `Ok(false)`; only failures of the kit itself are errors. [`Netns::ping`] repeats it until a
//! reply or a deadline. Destinations must be inside the test plan. Needs `CAP_NET_RAW`.

use std::io::{ErrorKind, Read};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::address::plan_address;
use crate::error::{Error, Result};
use crate::netns::Netns;
use crate::wait::wait_until;

const ECHO_REQUEST_V4: u8 = 8;
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REQUEST_V6: u8 = 128;
const ECHO_REPLY_V6: u8 = 129;
const PAYLOAD: &[u8] = b"weft-topology-tests";

/// How long one attempt of [`Netns::ping`] waits for its reply.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(300);

static SEQUENCE: AtomicU16 = AtomicU16::new(1);

impl Netns {
    /// Sends one echo request to `destination` and waits up to `timeout` for the reply.
    pub fn ping_once(&self, destination: &str, timeout: Duration) -> Result<bool> {
        let address = plan_address(destination)?;
        let what = format!("ping {address} from {}", self.name());
        self.within(|| echo(address, timeout))?
            .map_err(|source| Error::io(what, source))
    }

    /// Pings `destination` until it answers, for at most `deadline`.
    pub fn ping(&self, destination: &str, deadline: Duration) -> Result<()> {
        let address = plan_address(destination)?;
        let what = format!("{address} to answer ping from {}", self.name());
        wait_until(&what, deadline, Duration::from_millis(50), || {
            self.ping_once(destination, ATTEMPT_TIMEOUT)
        })
    }
}

/// One echo exchange; runs on a thread inside the namespace.
fn echo(destination: IpAddr, timeout: Duration) -> std::io::Result<bool> {
    let (domain, protocol, request, reply) = match destination {
        IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4, ECHO_REQUEST_V4, ECHO_REPLY_V4),
        IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6, ECHO_REQUEST_V6, ECHO_REPLY_V6),
    };
    let socket = Socket::new(domain, Type::from(libc::SOCK_RAW), Some(protocol))?;
    if let Err(err) = socket.connect(&SockAddr::from(SocketAddr::new(destination, 0))) {
        return unreachable_or(err);
    }
    let identifier = (std::process::id() as u16) ^ 0x5754;
    let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let packet = encode_echo(request, identifier, sequence, destination.is_ipv4());
    if let Err(err) = socket.send(&packet) {
        return unreachable_or(err);
    }
    let start = Instant::now();
    let mut buffer = [0u8; 2048];
    // Bounded by time and by count: a busy link cannot keep us here.
    for _ in 0..1024 {
        let Some(left) = timeout.checked_sub(start.elapsed()).filter(|d| !d.is_zero()) else {
            return Ok(false);
        };
        socket.set_read_timeout(Some(left))?;
        let length = match (&socket).read(&mut buffer) {
            Ok(length) => length,
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return Ok(false),
            Err(err) => return unreachable_or(err),
        };
        let Some(received) = buffer.get(..length) else {
            continue;
        };
        // Raw IPv4 sockets deliver the IP header; raw ICMPv6 sockets do not.
        let icmp = if destination.is_ipv4() {
            skip_ipv4_header(received)
        } else {
            Some(received)
        };
        if icmp.is_some_and(|icmp| is_reply(icmp, reply, identifier, sequence)) {
            return Ok(true);
        }
    }
    Ok(false)
}

fn unreachable_or(err: std::io::Error) -> std::io::Result<bool> {
    match err.kind() {
        ErrorKind::NetworkUnreachable | ErrorKind::HostUnreachable | ErrorKind::ConnectionRefused => Ok(false),
        _ => Err(err),
    }
}

/// An Echo Request: type, code 0, checksum, identifier, sequence number, payload.
fn encode_echo(kind: u8, identifier: u16, sequence: u16, checksum: bool) -> Vec<u8> {
    let mut packet = vec![kind, 0, 0, 0];
    packet.extend_from_slice(&identifier.to_be_bytes());
    packet.extend_from_slice(&sequence.to_be_bytes());
    packet.extend_from_slice(PAYLOAD);
    // ICMPv6 checksums cover a pseudo-header; the kernel fills them in for raw ICMPv6 sockets.
    if checksum {
        let sum = internet_checksum(&packet);
        packet[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    packet
}

fn skip_ipv4_header(packet: &[u8]) -> Option<&[u8]> {
    let header_length = usize::from(packet.first()? & 0x0f) * 4;
    packet.get(header_length..)
}

fn is_reply(icmp: &[u8], reply: u8, identifier: u16, sequence: u16) -> bool {
    icmp.len() >= 8
        && icmp[0] == reply
        && icmp[1] == 0
        && icmp[4..6] == identifier.to_be_bytes()
        && icmp[6..8] == sequence.to_be_bytes()
}

/// RFC 1071 one's-complement sum.
fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_echo_request_checksums_to_zero() {
        let packet = encode_echo(ECHO_REQUEST_V4, 0x1234, 7, true);
        assert_eq!(internet_checksum(&packet), 0);
        assert_eq!(&packet[..8], &[8, 0, packet[2], packet[3], 0x12, 0x34, 0, 7]);
    }

    #[test]
    fn rfc_1071_example_sums() {
        // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (before complement).
        assert_eq!(
            internet_checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
    }

    #[test]
    fn replies_match_on_identifier_and_sequence() {
        let reply = [0u8, 0, 0, 0, 0x12, 0x34, 0, 7];
        assert!(is_reply(&reply, ECHO_REPLY_V4, 0x1234, 7));
        assert!(!is_reply(&reply, ECHO_REPLY_V4, 0x1234, 8));
        assert!(!is_reply(&reply[..6], ECHO_REPLY_V4, 0x1234, 7));
    }
}
