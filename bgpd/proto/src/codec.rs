//! Message codec: framed bytes to [`Message`] and back, on netgauze-bgp-pkt.
//!
//! Owns the message types the rest of the speaker handles (RFC 4271 §4.2–4.5 OPEN, UPDATE,
//! NOTIFICATION, KEEPALIVE; RFC 2918 and RFC 7313 ROUTE-REFRESH), the per-session decoding
//! context that negotiation produces (4-octet AS, add-path receive, extended messages, iBGP), and
//! the mapping of every decode error to the NOTIFICATION that RFC 4271 §6 and RFC 7606 say to send.
//! UPDATE error handling follows [`crate::error_handling`]: the UPDATE is planned first, then
//! netgauze parses the withdrawn routes and NLRI together and every path attribute on its own, so
//! an attribute netgauze refuses costs exactly what RFC 7606 says for that attribute type.
//!
//! A treat-as-withdraw UPDATE is handed on already rewritten as a withdrawal: its NLRI moved to
//! the Withdrawn Routes, its MP_REACH_NLRI turned into an MP_UNREACH_NLRI (IPv4 and IPv6 unicast),
//! every other attribute dropped. The RIB therefore never sees a route whose attributes were
//! malformed, and [`Received::update_errors`] says why.
//!
//! Must never: panic on any input, perform I/O, read a clock, or keep state between messages
//! (the session owns the [`CodecContext`]).

use std::collections::HashMap;

use netgauze_bgp_pkt::BgpMessage;
use netgauze_bgp_pkt::open::BgpOpenMessage;
use netgauze_bgp_pkt::path_attribute::{MpReach, MpUnreach, PathAttribute, PathAttributeValue};
use netgauze_bgp_pkt::route_refresh::BgpRouteRefreshMessage;
use netgauze_bgp_pkt::update::BgpUpdateMessage;
use netgauze_bgp_pkt::wire::deserializer::capabilities::BgpCapabilityParsingError;
use netgauze_bgp_pkt::wire::deserializer::open::{BgpOpenMessageParsingError, BgpParameterParsingError};
use netgauze_bgp_pkt::wire::deserializer::route_refresh::BgpRouteRefreshMessageParsingError;
use netgauze_bgp_pkt::wire::deserializer::update::BgpUpdateMessageParsingError;
use netgauze_bgp_pkt::wire::deserializer::{BgpMessageParsingError, BgpParsingContext};
use netgauze_bgp_pkt::wire::serializer::BgpMessageWritingError;
use netgauze_iana::address_family::AddressType;
use netgauze_parse_utils::WritablePdu;
use netgauze_parse_utils::reader::SliceReader;
use netgauze_parse_utils::traits::{ParseFrom, ParseFromWithOneInput};

use crate::error_handling::{
    AttributeError, Rfc7606Outcome, SessionReset, UpdateContext, UpdateErrorKind, UpdatePlan, malformed_outcome,
    missing_mandatory, plan_update,
};
use crate::framing::{self, Frame, FramingError, HEADER_LENGTH, MessageType};
use crate::notification::{Notification, open, route_refresh, update};

/// The BGP version we speak (RFC 4271 §4.2).
pub const BGP_VERSION: u8 = 4;

/// One BGP message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// OPEN (RFC 4271 §4.2).
    Open(BgpOpenMessage),
    /// UPDATE (RFC 4271 §4.3).
    Update(BgpUpdateMessage),
    /// NOTIFICATION (RFC 4271 §4.5).
    Notification(Notification),
    /// KEEPALIVE (RFC 4271 §4.4).
    Keepalive,
    /// ROUTE-REFRESH (RFC 2918, RFC 7313).
    RouteRefresh(BgpRouteRefreshMessage),
}

impl Message {
    /// The message's Type field.
    pub fn message_type(&self) -> MessageType {
        match self {
            Self::Open(_) => MessageType::Open,
            Self::Update(_) => MessageType::Update,
            Self::Notification(_) => MessageType::Notification,
            Self::Keepalive => MessageType::Keepalive,
            Self::RouteRefresh(_) => MessageType::RouteRefresh,
        }
    }
}

/// What decoding depends on, fixed by capability negotiation ([`crate::capabilities`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CodecContext {
    /// Both sides advertised 4-octet AS numbers (RFC 6793): AS_PATH and AGGREGATOR are 4-octet.
    pub four_octet_as: bool,
    /// Families for which we receive add-path identifiers (RFC 7911).
    pub add_path_receive: Vec<AddressType>,
    /// The peer is internal (iBGP).
    pub internal_peer: bool,
    /// RFC 8654 extended messages were negotiated.
    pub extended_messages: bool,
}

impl CodecContext {
    fn update_context(&self) -> UpdateContext {
        UpdateContext {
            four_octet_as: self.four_octet_as,
            add_path_ipv4_unicast: self.add_path_receive.contains(&AddressType::Ipv4Unicast),
            internal_peer: self.internal_peer,
        }
    }

    fn parsing_context(&self) -> BgpParsingContext {
        let add_path = self.add_path_receive.iter().map(|family| (*family, true)).collect();
        // Fail on malformed attributes (we parse them one by one and decide by RFC 7606), ignore
        // non-unicast IPv4 prefixes (RFC 4271 §6.3 "SHOULD be ignored"), ignore capabilities that
        // do not parse (RFC 5492 §3) and report them in `Received`.
        BgpParsingContext::new(self.four_octet_as, HashMap::new(), add_path, false, false, false, true)
    }
}

/// A decoded message and what RFC 7606 or RFC 5492 made us overlook on the way.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// The message; a treat-as-withdraw UPDATE arrives rewritten as a withdrawal.
    pub message: Message,
    /// RFC 7606 findings that did not reset the session.
    pub update_errors: Vec<AttributeError>,
    /// OPEN capabilities that did not parse and were ignored (RFC 5492 §3).
    pub ignored_capabilities: Vec<BgpCapabilityParsingError>,
}

impl Received {
    fn plain(message: Message) -> Self {
        Self {
            message,
            update_errors: Vec::new(),
            ignored_capabilities: Vec::new(),
        }
    }

    /// Whether the UPDATE was turned into a withdrawal (RFC 7606 treat-as-withdraw).
    pub fn treated_as_withdraw(&self) -> bool {
        self.update_errors
            .iter()
            .any(|error| error.outcome == Rfc7606Outcome::TreatAsWithdraw)
    }
}

/// A message that must be answered with a NOTIFICATION and the end of the session.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// The header is malformed (RFC 4271 §6.1).
    #[error("malformed message header: {0}")]
    Header(#[from] FramingError),
    /// The OPEN is malformed (RFC 4271 §6.2).
    #[error("malformed OPEN: {0}")]
    Open(#[source] BgpOpenMessageParsingError),
    /// The UPDATE is malformed beyond what attribute discard or treat-as-withdraw can absorb.
    #[error("malformed UPDATE: {0}")]
    Update(#[from] SessionReset),
    /// The ROUTE-REFRESH is malformed (RFC 7313 §5).
    #[error("malformed ROUTE-REFRESH of {length} octets")]
    RouteRefresh {
        /// Total message length.
        length: usize,
        /// The whole message, which RFC 7313 §5 puts in the NOTIFICATION data.
        message: Vec<u8>,
    },
}

impl DecodeError {
    /// The NOTIFICATION to send before closing.
    pub fn notification(&self) -> Notification {
        match self {
            Self::Header(error) => error.notification(),
            Self::Open(error) => open_error_notification(error),
            Self::Update(reset) => reset.notification.clone(),
            Self::RouteRefresh { message, .. } => Notification::new(
                crate::notification::code::ROUTE_REFRESH,
                route_refresh::INVALID_MESSAGE_LENGTH,
                message.clone(),
            ),
        }
    }
}

/// The OPEN Message Error for a parse failure (RFC 4271 §6.2, RFC 5492 §3).
fn open_error_notification(error: &BgpOpenMessageParsingError) -> Notification {
    match error {
        BgpOpenMessageParsingError::UnsupportedVersionNumber { .. } => Notification::open_message(
            open::UNSUPPORTED_VERSION_NUMBER,
            u16::from(BGP_VERSION).to_be_bytes().to_vec(),
        ),
        BgpOpenMessageParsingError::UnacceptableHoldTime { .. } => {
            Notification::open_message(open::UNACCEPTABLE_HOLD_TIME, Vec::new())
        }
        BgpOpenMessageParsingError::InvalidBgpId { .. } => {
            Notification::open_message(open::BAD_BGP_IDENTIFIER, Vec::new())
        }
        BgpOpenMessageParsingError::ParameterError(BgpParameterParsingError::UndefinedParameterType {
            code, ..
        }) => Notification::open_message(open::UNSUPPORTED_OPTIONAL_PARAMETER, vec![*code]),
        BgpOpenMessageParsingError::Parse(_) | BgpOpenMessageParsingError::ParameterError(_) => {
            Notification::open_message(open::UNSPECIFIC, Vec::new())
        }
    }
}

/// An outgoing message that cannot be encoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EncodeError {
    /// netgauze refused to write it.
    #[error("cannot encode message")]
    Write(#[source] BgpMessageWritingError),
    /// It would exceed the negotiated maximum message length.
    #[error("message of {length} octets exceeds the maximum of {max}")]
    TooLong {
        /// Encoded length.
        length: usize,
        /// Largest allowed.
        max: usize,
    },
}

/// Encodes one message, header included.
pub fn encode(message: &Message, context: &CodecContext) -> Result<Vec<u8>, EncodeError> {
    let bytes = match message {
        Message::Notification(notification) => {
            let body = notification.encode_body();
            let length = HEADER_LENGTH + body.len();
            let mut bytes = header(length, MessageType::Notification);
            bytes.extend_from_slice(&body);
            bytes
        }
        Message::Open(open) => write_netgauze(&BgpMessage::Open(open.clone()))?,
        Message::Update(update) => write_netgauze(&BgpMessage::Update(update.clone()))?,
        Message::Keepalive => header(HEADER_LENGTH, MessageType::Keepalive),
        Message::RouteRefresh(refresh) => write_netgauze(&BgpMessage::RouteRefresh(refresh.clone()))?,
    };
    let (_, max) = message.message_type().length_bounds(context.extended_messages);
    if bytes.len() > usize::from(max) {
        return Err(EncodeError::TooLong {
            length: bytes.len(),
            max: usize::from(max),
        });
    }
    Ok(bytes)
}

fn header(length: usize, message_type: MessageType) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(length);
    bytes.extend_from_slice(&[0xff; 16]);
    // Lengths above u16::MAX are caught by the caller's bound check.
    bytes.extend_from_slice(&u16::try_from(length).unwrap_or(u16::MAX).to_be_bytes());
    bytes.push(message_type.value());
    bytes
}

fn write_netgauze(message: &BgpMessage) -> Result<Vec<u8>, EncodeError> {
    let length = message.len();
    if length > usize::from(u16::MAX) {
        return Err(EncodeError::TooLong {
            length,
            max: usize::from(u16::MAX),
        });
    }
    let mut bytes = Vec::with_capacity(length);
    message.write(&mut bytes).map_err(EncodeError::Write)?;
    Ok(bytes)
}

/// Decodes raw message bytes, header included: checks the header, then [`decode`].
pub fn decode_message(bytes: &[u8], context: &CodecContext) -> Result<Option<Received>, DecodeError> {
    let Some(header) = bytes.first_chunk::<HEADER_LENGTH>() else {
        let length = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
        return Err(FramingError::BadMessageLength {
            length,
            message_type: 0,
        }
        .into());
    };
    let (message_type, length) = framing::check_header(header, context.extended_messages)?;
    if usize::from(length) != bytes.len() {
        let message_type = message_type.value();
        return Err(FramingError::BadMessageLength { length, message_type }.into());
    }
    decode(Frame { message_type, bytes }, context)
}

/// Decodes one framed message. `Ok(None)` is a message the RFCs say to ignore (a ROUTE-REFRESH
/// of an unknown subtype or family, RFC 7313 §5 and RFC 2918 §4).
pub fn decode(frame: Frame<'_>, context: &CodecContext) -> Result<Option<Received>, DecodeError> {
    let body = frame.body();
    match frame.message_type {
        MessageType::Keepalive => Ok(Some(Received::plain(Message::Keepalive))),
        MessageType::Notification => {
            // The framer guarantees at least two octets; stay total anyway.
            let notification = Notification::decode_body(body).unwrap_or_else(|| Notification::new(0, 0, Vec::new()));
            Ok(Some(Received::plain(Message::Notification(notification))))
        }
        MessageType::Open => decode_open(body, context).map(Some),
        MessageType::Update => decode_update(body, context).map(Some),
        MessageType::RouteRefresh => decode_route_refresh(frame.bytes),
    }
}

fn decode_open(body: &[u8], context: &CodecContext) -> Result<Received, DecodeError> {
    let mut parsing = context.parsing_context();
    let mut reader = SliceReader::new(body);
    let open = BgpOpenMessage::parse(&mut reader, &mut parsing).map_err(DecodeError::Open)?;
    if !reader.is_empty() {
        // Octets after the optional parameters: the Optional Parameters Length lied.
        return Err(DecodeError::Open(BgpOpenMessageParsingError::ParameterError(
            BgpParameterParsingError::Parse(netgauze_parse_utils::error::ParseError::eof(
                reader.offset(),
                0,
                reader.remaining(),
            )),
        )));
    }
    let ignored = parsing.reset_parsing_errors().capability_errors().clone();
    Ok(Received {
        message: Message::Open(open),
        update_errors: Vec::new(),
        ignored_capabilities: ignored,
    })
}

fn decode_route_refresh(bytes: &[u8]) -> Result<Option<Received>, DecodeError> {
    let invalid = || DecodeError::RouteRefresh {
        length: bytes.len(),
        message: bytes.to_vec(),
    };
    // RFC 7313 §5: the body is exactly AFI (2), subtype (1), SAFI (1).
    let body = bytes.get(HEADER_LENGTH..).ok_or_else(invalid)?;
    if body.len() != 4 {
        return Err(invalid());
    }
    match BgpRouteRefreshMessage::parse(&mut SliceReader::new(body)) {
        Ok(refresh) => Ok(Some(Received::plain(Message::RouteRefresh(refresh)))),
        Err(BgpRouteRefreshMessageParsingError::Parse(_)) => Err(invalid()),
        // RFC 7313 §5: an unknown subtype is ignored; RFC 2918 §4: so is a family we did not
        // advertise (and netgauze knows no family we advertise that it cannot name).
        Err(_) => Ok(None),
    }
}

fn decode_update(body: &[u8], context: &CodecContext) -> Result<Received, DecodeError> {
    let update_context = context.update_context();
    let mut plan = plan_update(body, &update_context)?;
    let mut parsing = context.parsing_context();

    // Withdrawn Routes and NLRI: netgauze parses them from an UPDATE with no attributes.
    let mut prefixes = Vec::with_capacity(plan.withdrawn.len() + plan.nlri.len() + 4);
    prefixes.extend_from_slice(&body[..plan.withdrawn.end]);
    prefixes.extend_from_slice(&[0, 0]);
    prefixes.extend_from_slice(&body[plan.nlri.clone()]);
    let bare = BgpUpdateMessage::parse(&mut SliceReader::new(&prefixes), &mut parsing).map_err(|error| {
        let subcode = match error {
            BgpUpdateMessageParsingError::Ipv4PrefixError(_) | BgpUpdateMessageParsingError::Parse(_) => {
                update::INVALID_NETWORK_FIELD
            }
            _ => update::MALFORMED_ATTRIBUTE_LIST,
        };
        let error = AttributeError {
            type_code: None,
            kind: UpdateErrorKind::InvalidNetworkField,
            outcome: Rfc7606Outcome::SessionReset,
        };
        DecodeError::Update(SessionReset {
            notification: Notification::update_message(subcode, Vec::new()),
            error,
        })
    })?;

    let attributes = parse_attributes(body, &mut plan, &mut parsing)?;
    let has_mp_reach = attributes
        .iter()
        .any(|a| matches!(a.value(), PathAttributeValue::MpReach(_)));
    let present = |code: u8| {
        attributes
            .iter()
            .any(|a| a.path_attribute_type().map_or_else(|c| c, u8::from) == code)
    };
    if !plan.treat_as_withdraw
        && let Some(code) = missing_mandatory(present, !bare.nlri().is_empty(), has_mp_reach, &update_context)
    {
        plan.treat_as_withdraw = true;
        plan.errors.push(AttributeError {
            type_code: Some(code),
            kind: UpdateErrorKind::MissingWellKnownAttribute,
            outcome: Rfc7606Outcome::TreatAsWithdraw,
        });
    }

    let update = if plan.treat_as_withdraw {
        as_withdrawal(&bare, attributes)
    } else {
        BgpUpdateMessage::new(bare.withdraw_routes().to_vec(), attributes, bare.nlri().to_vec())
    };
    Ok(Received {
        message: Message::Update(update),
        update_errors: plan.errors,
        ignored_capabilities: Vec::new(),
    })
}

/// Parses every attribute the plan keeps, one at a time, applying RFC 7606 to netgauze's
/// refusals. Under treat-as-withdraw only MP_REACH_NLRI and MP_UNREACH_NLRI are parsed.
fn parse_attributes(
    body: &[u8],
    plan: &mut UpdatePlan,
    parsing: &mut BgpParsingContext,
) -> Result<Vec<PathAttribute>, DecodeError> {
    let spans: Vec<_> = plan.kept_attributes().cloned().collect();
    let mut attributes = Vec::with_capacity(spans.len());
    for span in spans {
        let bytes = &body[span.bytes.clone()];
        match PathAttribute::parse(&mut SliceReader::new(bytes), &mut *parsing) {
            Ok(attribute) => attributes.push(attribute),
            Err(_) => {
                let outcome = malformed_outcome(span.type_code);
                let error = AttributeError {
                    type_code: Some(span.type_code),
                    kind: UpdateErrorKind::MalformedValue,
                    outcome,
                };
                match outcome {
                    Rfc7606Outcome::SessionReset => {
                        let notification =
                            Notification::update_message(update::OPTIONAL_ATTRIBUTE_ERROR, bytes.to_vec());
                        return Err(SessionReset { notification, error }.into());
                    }
                    Rfc7606Outcome::TreatAsWithdraw => plan.treat_as_withdraw = true,
                    Rfc7606Outcome::AttributeDiscard => {}
                }
                plan.errors.push(error);
            }
        }
    }
    if plan.treat_as_withdraw {
        attributes.retain(|a| {
            matches!(
                a.value(),
                PathAttributeValue::MpReach(_) | PathAttributeValue::MpUnreach(_)
            )
        });
    }
    Ok(attributes)
}

/// Rewrites an UPDATE as the withdrawal of every prefix it carried (RFC 7606 §2).
fn as_withdrawal(bare: &BgpUpdateMessage, attributes: Vec<PathAttribute>) -> BgpUpdateMessage {
    let withdrawn: Vec<_> = bare.withdraw_routes().iter().chain(bare.nlri()).cloned().collect();
    let mut unreach = Vec::new();
    for attribute in attributes {
        let value = match attribute.value() {
            PathAttributeValue::MpUnreach(_) => Some(attribute),
            PathAttributeValue::MpReach(MpReach::Ipv4Unicast { nlri, .. }) => {
                mp_unreach(MpUnreach::Ipv4Unicast { nlri: nlri.clone() })
            }
            PathAttributeValue::MpReach(MpReach::Ipv6Unicast { nlri, .. }) => {
                mp_unreach(MpUnreach::Ipv6Unicast { nlri: nlri.clone() })
            }
            // Families weft does not negotiate never reach the RIB.
            _ => None,
        };
        unreach.extend(value);
    }
    BgpUpdateMessage::new(withdrawn, unreach, Vec::new())
}

fn mp_unreach(value: MpUnreach) -> Option<PathAttribute> {
    PathAttribute::from(true, false, false, true, PathAttributeValue::MpUnreach(value)).ok()
}

/// Maps a netgauze whole-message parse error to the NOTIFICATION to send, for callers that
/// used netgauze's own `BgpMessage` parser (tests compare against it as an oracle).
pub fn netgauze_error_notification(error: &BgpMessageParsingError) -> Notification {
    match error {
        BgpMessageParsingError::BgpOpenMessageParsingError(open) => open_error_notification(open),
        BgpMessageParsingError::ConnectionNotSynchronized { .. } => {
            FramingError::ConnectionNotSynchronized.notification()
        }
        BgpMessageParsingError::UndefinedBgpMessageType { code, .. } => {
            FramingError::BadMessageType { message_type: *code }.notification()
        }
        BgpMessageParsingError::BadMessageLength { length, .. }
        | BgpMessageParsingError::UnparseableBytes { length, .. } => FramingError::BadMessageLength {
            length: *length,
            message_type: 0,
        }
        .notification(),
        BgpMessageParsingError::BgpUpdateMessageParsingError(_) | BgpMessageParsingError::Parse(_) => {
            Notification::update_message(update::MALFORMED_ATTRIBUTE_LIST, Vec::new())
        }
        BgpMessageParsingError::BgpRouteRefreshMessageParsingError(_) => Notification::new(
            crate::notification::code::ROUTE_REFRESH,
            route_refresh::INVALID_MESSAGE_LENGTH,
            Vec::new(),
        ),
        BgpMessageParsingError::BgpNotificationMessageParsingError(_) => Notification::fsm_error(0),
    }
}
