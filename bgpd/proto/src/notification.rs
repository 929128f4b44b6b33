//! The NOTIFICATION message (RFC 4271 §4.5) as plain data: error code, error subcode, data.
//!
//! Owns the names of every error code and subcode weft sends or reports (RFC 4271 §4.5 and
//! §6, RFC 4486 and RFC 8538 Cease subcodes, RFC 7313 ROUTE-REFRESH errors, RFC 9003 shutdown
//! communication) and the constructors the rest of the crate uses to say *why* a session ends.
//!
//! It is deliberately not netgauze's `BgpNotificationMessage`: that type cannot represent a code
//! or subcode it does not know (a Cease with subcode 0, RFC 9687's Send Hold Timer Expired,
//! anything registered after its release), and a NOTIFICATION we receive must never fail to
//! decode, because RFC 4271 §6 forbids answering a NOTIFICATION with one. Encoding and decoding
//! here are therefore total: every byte string of at least two octets is a NOTIFICATION.
//!
//! Must never: panic on any input, allocate more than the data it is given.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | Error code    | Error subcode |   Data (variable)             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use std::fmt;

/// Error codes (RFC 4271 §4.5, IANA "BGP Error (Notification) Codes").
pub mod code {
    /// Message Header Error (RFC 4271 §6.1).
    pub const MESSAGE_HEADER: u8 = 1;
    /// OPEN Message Error (RFC 4271 §6.2).
    pub const OPEN_MESSAGE: u8 = 2;
    /// UPDATE Message Error (RFC 4271 §6.3).
    pub const UPDATE_MESSAGE: u8 = 3;
    /// Hold Timer Expired (RFC 4271 §6.5).
    pub const HOLD_TIMER_EXPIRED: u8 = 4;
    /// Finite State Machine Error (RFC 4271 §6.6, subcodes RFC 6608).
    pub const FSM: u8 = 5;
    /// Cease (RFC 4271 §6.7, subcodes RFC 4486).
    pub const CEASE: u8 = 6;
    /// ROUTE-REFRESH Message Error (RFC 7313 §5).
    pub const ROUTE_REFRESH: u8 = 7;
    /// Send Hold Timer Expired (RFC 9687).
    pub const SEND_HOLD_TIMER_EXPIRED: u8 = 8;
}

/// Message Header Error subcodes (RFC 4271 §6.1).
pub mod header {
    /// Connection Not Synchronized: the marker is not all ones.
    pub const CONNECTION_NOT_SYNCHRONIZED: u8 = 1;
    /// Bad Message Length; the data is the erroneous Length field.
    pub const BAD_MESSAGE_LENGTH: u8 = 2;
    /// Bad Message Type; the data is the erroneous Type field.
    pub const BAD_MESSAGE_TYPE: u8 = 3;
}

/// OPEN Message Error subcodes (RFC 4271 §6.2, RFC 5492, RFC 9234).
pub mod open {
    /// Unspecific: a recognised optional parameter is malformed.
    pub const UNSPECIFIC: u8 = 0;
    /// Unsupported Version Number; the data is the largest version we support (2 octets).
    pub const UNSUPPORTED_VERSION_NUMBER: u8 = 1;
    /// Bad Peer AS.
    pub const BAD_PEER_AS: u8 = 2;
    /// Bad BGP Identifier.
    pub const BAD_BGP_IDENTIFIER: u8 = 3;
    /// Unsupported Optional Parameter.
    pub const UNSUPPORTED_OPTIONAL_PARAMETER: u8 = 4;
    /// Unacceptable Hold Time.
    pub const UNACCEPTABLE_HOLD_TIME: u8 = 6;
    /// Unsupported Capability (RFC 5492 §5).
    pub const UNSUPPORTED_CAPABILITY: u8 = 7;
    /// Role Mismatch (RFC 9234).
    pub const ROLE_MISMATCH: u8 = 11;
}

/// UPDATE Message Error subcodes (RFC 4271 §6.3).
pub mod update {
    /// Malformed Attribute List.
    pub const MALFORMED_ATTRIBUTE_LIST: u8 = 1;
    /// Unrecognized Well-known Attribute.
    pub const UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE: u8 = 2;
    /// Missing Well-known Attribute.
    pub const MISSING_WELL_KNOWN_ATTRIBUTE: u8 = 3;
    /// Attribute Flags Error.
    pub const ATTRIBUTE_FLAGS_ERROR: u8 = 4;
    /// Attribute Length Error.
    pub const ATTRIBUTE_LENGTH_ERROR: u8 = 5;
    /// Invalid ORIGIN Attribute.
    pub const INVALID_ORIGIN_ATTRIBUTE: u8 = 6;
    /// Invalid NEXT_HOP Attribute.
    pub const INVALID_NEXT_HOP_ATTRIBUTE: u8 = 8;
    /// Optional Attribute Error.
    pub const OPTIONAL_ATTRIBUTE_ERROR: u8 = 9;
    /// Invalid Network Field.
    pub const INVALID_NETWORK_FIELD: u8 = 10;
    /// Malformed AS_PATH.
    pub const MALFORMED_AS_PATH: u8 = 11;
}

/// Finite State Machine Error subcodes (RFC 6608).
pub mod fsm {
    /// Unspecified Error.
    pub const UNSPECIFIED: u8 = 0;
    /// Receive Unexpected Message in OpenSent State.
    pub const UNEXPECTED_MESSAGE_IN_OPEN_SENT: u8 = 1;
    /// Receive Unexpected Message in OpenConfirm State.
    pub const UNEXPECTED_MESSAGE_IN_OPEN_CONFIRM: u8 = 2;
    /// Receive Unexpected Message in Established State.
    pub const UNEXPECTED_MESSAGE_IN_ESTABLISHED: u8 = 3;
}

/// ROUTE-REFRESH Message Error subcodes (RFC 7313 §5).
pub mod route_refresh {
    /// Invalid Message Length.
    pub const INVALID_MESSAGE_LENGTH: u8 = 1;
}

/// Cease subcodes (RFC 4486, RFC 8538 §3.1 Hard Reset, RFC 9384 BFD Down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CeaseSubcode {
    /// Subcode 1.
    MaximumNumberOfPrefixesReached,
    /// Subcode 2; may carry a shutdown communication (RFC 9003).
    AdministrativeShutdown,
    /// Subcode 3.
    PeerDeconfigured,
    /// Subcode 4; may carry a shutdown communication (RFC 9003).
    AdministrativeReset,
    /// Subcode 5.
    ConnectionRejected,
    /// Subcode 6.
    OtherConfigurationChange,
    /// Subcode 7.
    ConnectionCollisionResolution,
    /// Subcode 8.
    OutOfResources,
    /// Subcode 9 (RFC 8538).
    HardReset,
    /// Subcode 10 (RFC 9384).
    BfdDown,
}

impl CeaseSubcode {
    /// The subcode octet.
    pub const fn value(self) -> u8 {
        match self {
            Self::MaximumNumberOfPrefixesReached => 1,
            Self::AdministrativeShutdown => 2,
            Self::PeerDeconfigured => 3,
            Self::AdministrativeReset => 4,
            Self::ConnectionRejected => 5,
            Self::OtherConfigurationChange => 6,
            Self::ConnectionCollisionResolution => 7,
            Self::OutOfResources => 8,
            Self::HardReset => 9,
            Self::BfdDown => 10,
        }
    }
}

/// Longest shutdown communication in octets (RFC 9003 §2).
pub const MAX_SHUTDOWN_COMMUNICATION: usize = 255;

/// One NOTIFICATION: what the RFCs call (code, subcode, data).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Notification {
    /// Error code ([`code`]).
    pub code: u8,
    /// Error subcode; its meaning depends on `code`.
    pub subcode: u8,
    /// Data whose meaning depends on code and subcode.
    pub data: Vec<u8>,
}

impl Notification {
    /// A NOTIFICATION with the given fields.
    pub fn new(code: u8, subcode: u8, data: impl Into<Vec<u8>>) -> Self {
        Self {
            code,
            subcode,
            data: data.into(),
        }
    }

    /// Message Header Error with a subcode of [`header`].
    pub fn message_header(subcode: u8, data: impl Into<Vec<u8>>) -> Self {
        Self::new(code::MESSAGE_HEADER, subcode, data)
    }

    /// OPEN Message Error with a subcode of [`open`].
    pub fn open_message(subcode: u8, data: impl Into<Vec<u8>>) -> Self {
        Self::new(code::OPEN_MESSAGE, subcode, data)
    }

    /// UPDATE Message Error with a subcode of [`update`].
    pub fn update_message(subcode: u8, data: impl Into<Vec<u8>>) -> Self {
        Self::new(code::UPDATE_MESSAGE, subcode, data)
    }

    /// Hold Timer Expired (RFC 4271 §6.5).
    pub fn hold_timer_expired() -> Self {
        Self::new(code::HOLD_TIMER_EXPIRED, 0, Vec::new())
    }

    /// Finite State Machine Error with a subcode of [`fsm`] (RFC 6608).
    pub fn fsm_error(subcode: u8) -> Self {
        Self::new(code::FSM, subcode, Vec::new())
    }

    /// Cease with a subcode and no data.
    pub fn cease(subcode: CeaseSubcode) -> Self {
        Self::new(code::CEASE, subcode.value(), Vec::new())
    }

    /// Cease, Administrative Shutdown or Reset, with a shutdown communication (RFC 9003 §2):
    /// one length octet then UTF-8, cut at a character boundary to at most 255 octets.
    pub fn cease_with_communication(subcode: CeaseSubcode, communication: &str) -> Self {
        let mut end = communication.len().min(MAX_SHUTDOWN_COMMUNICATION);
        while !communication.is_char_boundary(end) {
            end -= 1;
        }
        let text = &communication.as_bytes()[..end];
        let mut data = Vec::with_capacity(1 + text.len());
        data.push(end as u8);
        data.extend_from_slice(text);
        Self::new(code::CEASE, subcode.value(), data)
    }

    /// The shutdown communication of a Cease Administrative Shutdown or Reset (RFC 9003), if the
    /// data holds a well-formed one.
    pub fn shutdown_communication(&self) -> Option<&str> {
        let is_shutdown = self.code == code::CEASE
            && (self.subcode == CeaseSubcode::AdministrativeShutdown.value()
                || self.subcode == CeaseSubcode::AdministrativeReset.value());
        let (&length, text) = self.data.split_first()?;
        if !is_shutdown || usize::from(length) != text.len() || text.is_empty() {
            return None;
        }
        std::str::from_utf8(text).ok()
    }

    /// Whether this is a Cease Hard Reset (RFC 8538 §3.1), which ends graceful restart.
    pub fn is_hard_reset(&self) -> bool {
        self.code == code::CEASE && self.subcode == CeaseSubcode::HardReset.value()
    }

    /// The NOTIFICATION body: the octets after the 19-octet message header.
    pub fn encode_body(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(2 + self.data.len());
        body.push(self.code);
        body.push(self.subcode);
        body.extend_from_slice(&self.data);
        body
    }

    /// Decodes a NOTIFICATION body. `None` only if it is shorter than the two fixed octets,
    /// which the framer already rejects as a Bad Message Length (RFC 4271 §6.1).
    pub fn decode_body(body: &[u8]) -> Option<Self> {
        match body {
            [code, subcode, data @ ..] => Some(Self::new(*code, *subcode, data)),
            _ => None,
        }
    }

    /// The RFC name of the error code.
    pub fn code_name(&self) -> &'static str {
        match self.code {
            code::MESSAGE_HEADER => "Message Header Error",
            code::OPEN_MESSAGE => "OPEN Message Error",
            code::UPDATE_MESSAGE => "UPDATE Message Error",
            code::HOLD_TIMER_EXPIRED => "Hold Timer Expired",
            code::FSM => "Finite State Machine Error",
            code::CEASE => "Cease",
            code::ROUTE_REFRESH => "ROUTE-REFRESH Message Error",
            code::SEND_HOLD_TIMER_EXPIRED => "Send Hold Timer Expired",
            _ => "unknown error code",
        }
    }
}

impl fmt::Display for Notification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (code {}, subcode {}", self.code_name(), self.code, self.subcode)?;
        if let Some(text) = self.shutdown_communication() {
            write!(f, ", \"{}\"", text.escape_debug())?;
        } else if !self.data.is_empty() {
            write!(f, ", {} octet(s) of data", self.data.len())?;
        }
        write!(f, ")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notification_body_round_trips_through_bytes() {
        let notification = Notification::open_message(open::UNACCEPTABLE_HOLD_TIME, vec![0, 2]);
        let body = notification.encode_body();
        assert_eq!(body, vec![2, 6, 0, 2]);
        assert_eq!(Notification::decode_body(&body), Some(notification));
    }

    #[test]
    fn unknown_codes_decode_without_loss() {
        let body = [8, 0];
        let notification = Notification::decode_body(&body).expect("two octets are a notification");
        assert_eq!(notification.code, code::SEND_HOLD_TIMER_EXPIRED);
        assert_eq!(Notification::decode_body(&[99, 42, 1]).map(|n| n.data), Some(vec![1]));
    }

    #[test]
    fn body_shorter_than_two_octets_is_not_a_notification() {
        assert_eq!(Notification::decode_body(&[6]), None);
    }

    #[test]
    fn shutdown_communication_is_cut_at_a_character_boundary() {
        let long = "é".repeat(200);
        let notification = Notification::cease_with_communication(CeaseSubcode::AdministrativeShutdown, &long);
        let text = notification
            .shutdown_communication()
            .expect("well-formed communication");
        assert_eq!(text.len(), 254);
        assert_eq!(notification.data[0], 254);
    }

    #[test]
    fn shutdown_communication_is_read_back() {
        let notification = Notification::cease_with_communication(CeaseSubcode::AdministrativeReset, "maintenance");
        assert_eq!(notification.shutdown_communication(), Some("maintenance"));
        assert_eq!(notification.to_string(), "Cease (code 6, subcode 4, \"maintenance\")");
    }
}
