//! Framing: cutting a TCP byte stream into BGP messages (RFC 4271 §4.1, §6.1; RFC 8654).
//!
//! Owns the message header checks of RFC 4271 §6.1: the 16-octet marker of all ones, the Length
//! field (19 to 4096 octets, or to 65535 for UPDATE, NOTIFICATION and ROUTE-REFRESH once RFC
//! 8654 extended messages are negotiated), the per-type minimum and exact lengths, and the Type
//! field. Each failure is a [`FramingError`] that names the NOTIFICATION to send.
//!
//! Must never: parse a message body (that is [`crate::codec`]), panic or allocate on a hostile
//! Length field (the header is checked as soon as its 19 octets arrive, before waiting for the
//! body), or read past what it was given.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                                                               |
//! +                                                               +
//! |                           Marker                              |
//! +                                                               +
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          Length               |      Type     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use crate::notification::{Notification, header};

/// Octets in the message header: marker, length, type.
pub const HEADER_LENGTH: usize = 19;
/// Largest message without extended messages (RFC 4271 §4.1).
pub const MAX_MESSAGE_LENGTH: u16 = 4096;
/// Largest message with extended messages (RFC 8654 §4), except OPEN and KEEPALIVE.
pub const MAX_EXTENDED_MESSAGE_LENGTH: u16 = 65535;

/// The Type field of the header (RFC 4271 §4.1, RFC 2918 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// 1
    Open,
    /// 2
    Update,
    /// 3
    Notification,
    /// 4
    Keepalive,
    /// 5
    RouteRefresh,
}

impl MessageType {
    /// The Type octet.
    pub const fn value(self) -> u8 {
        match self {
            Self::Open => 1,
            Self::Update => 2,
            Self::Notification => 3,
            Self::Keepalive => 4,
            Self::RouteRefresh => 5,
        }
    }

    /// The type for a Type octet, if it is one we know.
    pub const fn from_value(value: u8) -> Option<Self> {
        match value {
            1 => Some(Self::Open),
            2 => Some(Self::Update),
            3 => Some(Self::Notification),
            4 => Some(Self::Keepalive),
            5 => Some(Self::RouteRefresh),
            _ => None,
        }
    }

    /// Smallest and largest Length allowed for this type (RFC 4271 §4.2–4.5, §6.1; RFC 2918 §3;
    /// RFC 8654 §4 for `extended`).
    pub const fn length_bounds(self, extended: bool) -> (u16, u16) {
        let max = if extended {
            MAX_EXTENDED_MESSAGE_LENGTH
        } else {
            MAX_MESSAGE_LENGTH
        };
        match self {
            Self::Open => (29, MAX_MESSAGE_LENGTH),
            Self::Update => (23, max),
            Self::Notification => (21, max),
            Self::Keepalive => (19, 19),
            // RFC 7313 §5: a ROUTE-REFRESH of another length is a ROUTE-REFRESH Message Error, not a
            // header error, so the framer lets any length through and the codec decides.
            Self::RouteRefresh => (19, max),
        }
    }
}

/// A message header that RFC 4271 §6.1 says to answer with a NOTIFICATION.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// The marker is not all ones.
    #[error("connection not synchronized: the message marker is not all ones")]
    ConnectionNotSynchronized,
    /// The Length field is out of range for the message type.
    #[error("bad message length {length} for message type {message_type}")]
    BadMessageLength {
        /// The erroneous Length field.
        length: u16,
        /// The Type field.
        message_type: u8,
    },
    /// The Type field names no message we know.
    #[error("bad message type {message_type}")]
    BadMessageType {
        /// The erroneous Type field.
        message_type: u8,
    },
}

impl FramingError {
    /// The Message Header Error to send (RFC 4271 §6.1): the data is the erroneous Length or
    /// Type field.
    pub fn notification(&self) -> Notification {
        match self {
            Self::ConnectionNotSynchronized => {
                Notification::message_header(header::CONNECTION_NOT_SYNCHRONIZED, Vec::new())
            }
            Self::BadMessageLength { length, .. } => {
                Notification::message_header(header::BAD_MESSAGE_LENGTH, length.to_be_bytes().to_vec())
            }
            Self::BadMessageType { message_type } => {
                Notification::message_header(header::BAD_MESSAGE_TYPE, vec![*message_type])
            }
        }
    }
}

/// Checks a 19-octet header and returns the message type and total length.
pub fn check_header(header: &[u8; HEADER_LENGTH], extended: bool) -> Result<(MessageType, u16), FramingError> {
    if header[..16].iter().any(|&octet| octet != 0xff) {
        return Err(FramingError::ConnectionNotSynchronized);
    }
    let length = u16::from_be_bytes([header[16], header[17]]);
    let message_type = header[18];
    // RFC 4271 §6.1 checks the length before the type: a length below 19 is an error whatever
    // the type.
    if usize::from(length) < HEADER_LENGTH {
        return Err(FramingError::BadMessageLength { length, message_type });
    }
    let Some(kind) = MessageType::from_value(message_type) else {
        return Err(FramingError::BadMessageType { message_type });
    };
    let (min, max) = kind.length_bounds(extended);
    if length < min || length > max {
        return Err(FramingError::BadMessageLength { length, message_type });
    }
    Ok((kind, length))
}

/// One framed message: its type and all its octets, header included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The Type field.
    pub message_type: MessageType,
    /// The whole message, header included.
    pub bytes: &'a [u8],
}

impl<'a> Frame<'a> {
    /// The octets after the header.
    pub fn body(&self) -> &'a [u8] {
        self.bytes.get(HEADER_LENGTH..).unwrap_or_default()
    }
}

/// Accumulates stream bytes and hands out whole messages.
///
/// After an error the stream is out of sync for good: the caller sends the NOTIFICATION and
/// closes the connection (RFC 4271 §6.1), and every later call returns the same error.
#[derive(Debug, Default)]
pub struct Framer {
    buffer: Vec<u8>,
    consumed: usize,
    extended: bool,
    failed: Option<FramingError>,
}

impl Framer {
    /// A framer for a fresh connection: 4096-octet messages until told otherwise.
    pub fn new() -> Self {
        Self::default()
    }

    /// Allows RFC 8654 extended messages once both sides advertised the capability.
    pub fn set_extended_messages(&mut self, extended: bool) {
        self.extended = extended;
    }

    /// Appends bytes read from the connection.
    pub fn extend(&mut self, bytes: &[u8]) {
        if self.consumed > 0 {
            self.buffer.drain(..self.consumed);
            self.consumed = 0;
        }
        self.buffer.extend_from_slice(bytes);
    }

    /// Octets received but not yet handed out as a frame.
    pub fn buffered(&self) -> usize {
        self.buffer.len() - self.consumed
    }

    /// The next whole message, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, FramingError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let pending = &self.buffer[self.consumed..];
        let Some(header) = pending.first_chunk::<HEADER_LENGTH>() else {
            return Ok(None);
        };
        let (message_type, length) = match check_header(header, self.extended) {
            Ok(checked) => checked,
            Err(error) => {
                self.failed = Some(error.clone());
                return Err(error);
            }
        };
        let length = usize::from(length);
        if pending.len() < length {
            return Ok(None);
        }
        let start = self.consumed;
        self.consumed += length;
        Ok(Some(Frame {
            message_type,
            bytes: &self.buffer[start..start + length],
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(length: u16, message_type: u8) -> [u8; HEADER_LENGTH] {
        let mut bytes = [0xff; HEADER_LENGTH];
        bytes[16..18].copy_from_slice(&length.to_be_bytes());
        bytes[18] = message_type;
        bytes
    }

    #[test]
    fn keepalive_is_framed_when_its_last_octet_arrives() {
        let bytes = header(19, 4);
        let mut framer = Framer::new();
        framer.extend(&bytes[..10]);
        assert_eq!(framer.next_frame(), Ok(None));
        framer.extend(&bytes[10..]);
        let frame = framer.next_frame().expect("valid header").expect("whole message");
        assert_eq!(frame.message_type, MessageType::Keepalive);
        assert!(frame.body().is_empty());
        assert_eq!(framer.next_frame(), Ok(None));
        assert_eq!(framer.buffered(), 0);
    }

    #[test]
    fn two_messages_in_one_read_are_two_frames() {
        let mut framer = Framer::new();
        framer.extend(&[header(19, 4), header(19, 4)].concat());
        assert!(matches!(framer.next_frame(), Ok(Some(_))));
        assert!(matches!(framer.next_frame(), Ok(Some(_))));
        assert_eq!(framer.next_frame(), Ok(None));
    }

    #[test]
    fn marker_not_all_ones_is_connection_not_synchronized() {
        let mut bytes = header(19, 4);
        bytes[3] = 0;
        let mut framer = Framer::new();
        framer.extend(&bytes);
        let error = framer.next_frame().expect_err("bad marker");
        assert_eq!(error.notification(), Notification::message_header(1, vec![]));
        assert_eq!(framer.next_frame(), Err(error), "the framer stays failed");
    }

    #[test]
    fn length_above_4096_is_a_bad_message_length_carrying_the_length() {
        let error = check_header(&header(4097, 2), false).expect_err("too long");
        assert_eq!(error.notification(), Notification::message_header(2, vec![0x10, 0x01]));
    }

    #[test]
    fn extended_messages_allow_long_updates_but_not_long_opens() {
        assert_eq!(check_header(&header(65535, 2), true), Ok((MessageType::Update, 65535)));
        assert!(check_header(&header(4097, 1), true).is_err());
    }

    #[test]
    fn keepalive_with_a_body_is_a_bad_message_length() {
        assert!(matches!(
            check_header(&header(20, 4), false),
            Err(FramingError::BadMessageLength {
                length: 20,
                message_type: 4
            })
        ));
    }

    #[test]
    fn length_below_nineteen_is_a_bad_message_length_even_with_an_unknown_type() {
        assert!(matches!(
            check_header(&header(18, 9), false),
            Err(FramingError::BadMessageLength { .. })
        ));
    }

    #[test]
    fn unknown_type_is_a_bad_message_type_carrying_the_type() {
        let error = check_header(&header(19, 9), false).expect_err("unknown type");
        assert_eq!(error.notification(), Notification::message_header(3, vec![9]));
    }
}
