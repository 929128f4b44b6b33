//! Revised error handling for UPDATE messages (RFC 7606), as data.
//!
//! Owns the decision of what a malformed UPDATE costs: nothing but one attribute (attribute
//! discard), the routes it carries (treat-as-withdraw), or the session (session reset with a
//! NOTIFICATION). It walks the UPDATE's structure itself — the two length fields, the attribute
//! list framing, each attribute's flags and length, duplicates, NLRI syntax — before netgauze
//! parses anything, because netgauze stops at the first error and cannot say which attribute
//! to drop or whether the NLRI can still be located. [`crate::codec`] applies the resulting
//! [`UpdatePlan`] and then asks netgauze to parse what is left.
//!
//! Implements RFC 7606 §3 (a–j), §4 (attribute length fields), §5.1–5.3 (NLRI location),
//! §7.1–7.15 (per attribute), RFC 6793 §6 (AS4_PATH, AS4_AGGREGATOR), RFC 8092 §6 (large
//! communities), RFC 9234 §5 (ONLY_TO_CUSTOMER), and RFC 4271 §6.3 for what RFC 7606 leaves to it.
//!
//! Must never: panic or index out of bounds on any input; decide anything from attribute
//! *values* it does not need to parse (netgauze does that, and the codec maps its refusals here).
//! Semantic checks that need the speaker's state (a martian or own NEXT_HOP, §7.3; the peer's AS
//! first in AS_PATH, RFC 4271 §6.3) belong to the RIB, not to this module.

use std::fmt;
use std::ops::Range;

use crate::notification::{Notification, update};

/// What RFC 7606 says to do with a malformed UPDATE, from mildest to harshest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rfc7606Outcome {
    /// Drop the attribute, keep processing the UPDATE (RFC 7606 §2 "attribute discard").
    AttributeDiscard,
    /// Handle every prefix of the UPDATE as withdrawn (RFC 7606 §2 "treat-as-withdraw").
    TreatAsWithdraw,
    /// Send the NOTIFICATION and close the session (RFC 7606 §2 "session reset").
    SessionReset,
}

/// Why an UPDATE (or one attribute of it) was found malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpdateErrorKind {
    /// Withdrawn Routes Length and Total Path Attribute Length overrun the message (§3 a).
    LengthFieldsOverrunMessage,
    /// An attribute's length overruns the attribute list, or too few octets remain for an
    /// attribute header (§4).
    AttributeListOverrun,
    /// The Optional or Transitive flag contradicts the attribute type (§3 c).
    FlagsConflict,
    /// The attribute length is not what the attribute's specification allows (§3 c, §7).
    BadLength,
    /// The attribute appears more than once (§3 g).
    Duplicate,
    /// MP_REACH_NLRI or MP_UNREACH_NLRI appears more than once (§3 g).
    DuplicateMultiprotocolAttribute,
    /// A well-known mandatory attribute is missing while the UPDATE carries reachable NLRI
    /// (§3 d).
    MissingWellKnownAttribute,
    /// A well-known attribute (Optional bit clear) of a type we do not know (RFC 4271 §6.3).
    UnrecognizedWellKnownAttribute,
    /// LOCAL_PREF received from an external peer (§7.5).
    LocalPreferenceFromExternalPeer,
    /// The Withdrawn Routes or NLRI field is syntactically incorrect (§3 j, §5.3).
    InvalidNetworkField,
    /// netgauze could not parse the attribute's value.
    MalformedValue,
}

impl fmt::Display for UpdateErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::LengthFieldsOverrunMessage => "withdrawn routes and attribute lengths overrun the message",
            Self::AttributeListOverrun => "attribute overruns the attribute list",
            Self::FlagsConflict => "attribute flags contradict the attribute type",
            Self::BadLength => "attribute length is invalid for its type",
            Self::Duplicate => "attribute appears more than once",
            Self::DuplicateMultiprotocolAttribute => "MP_REACH_NLRI or MP_UNREACH_NLRI appears more than once",
            Self::MissingWellKnownAttribute => "well-known mandatory attribute missing",
            Self::UnrecognizedWellKnownAttribute => "unrecognized well-known attribute",
            Self::LocalPreferenceFromExternalPeer => "LOCAL_PREF received from an external peer",
            Self::InvalidNetworkField => "withdrawn routes or NLRI field is malformed",
            Self::MalformedValue => "attribute value is malformed",
        })
    }
}

/// One finding of RFC 7606 error handling: which attribute, what was wrong, what it costs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttributeError {
    /// The attribute type code, when the error concerns one attribute.
    pub type_code: Option<u8>,
    /// What was wrong.
    pub kind: UpdateErrorKind,
    /// What it costs.
    pub outcome: Rfc7606Outcome,
}

impl fmt::Display for AttributeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.type_code {
            Some(code) => write!(f, "attribute {code}: {} ({:?})", self.kind, self.outcome),
            None => write!(f, "{} ({:?})", self.kind, self.outcome),
        }
    }
}

/// Path attribute type codes this module has rules for (IANA "BGP Path Attributes").
pub mod attribute {
    /// ORIGIN (RFC 4271).
    pub const ORIGIN: u8 = 1;
    /// AS_PATH (RFC 4271).
    pub const AS_PATH: u8 = 2;
    /// NEXT_HOP (RFC 4271).
    pub const NEXT_HOP: u8 = 3;
    /// MULTI_EXIT_DISC (RFC 4271).
    pub const MULTI_EXIT_DISC: u8 = 4;
    /// LOCAL_PREF (RFC 4271).
    pub const LOCAL_PREF: u8 = 5;
    /// ATOMIC_AGGREGATE (RFC 4271).
    pub const ATOMIC_AGGREGATE: u8 = 6;
    /// AGGREGATOR (RFC 4271, RFC 6793).
    pub const AGGREGATOR: u8 = 7;
    /// COMMUNITIES (RFC 1997).
    pub const COMMUNITIES: u8 = 8;
    /// ORIGINATOR_ID (RFC 4456).
    pub const ORIGINATOR_ID: u8 = 9;
    /// CLUSTER_LIST (RFC 4456).
    pub const CLUSTER_LIST: u8 = 10;
    /// MP_REACH_NLRI (RFC 4760).
    pub const MP_REACH_NLRI: u8 = 14;
    /// MP_UNREACH_NLRI (RFC 4760).
    pub const MP_UNREACH_NLRI: u8 = 15;
    /// EXTENDED COMMUNITIES (RFC 4360).
    pub const EXTENDED_COMMUNITIES: u8 = 16;
    /// AS4_PATH (RFC 6793).
    pub const AS4_PATH: u8 = 17;
    /// AS4_AGGREGATOR (RFC 6793).
    pub const AS4_AGGREGATOR: u8 = 18;
    /// IPv6 Address Specific Extended Community (RFC 5701).
    pub const IPV6_EXTENDED_COMMUNITIES: u8 = 25;
    /// AIGP (RFC 7311).
    pub const AIGP: u8 = 26;
    /// LARGE_COMMUNITY (RFC 8092).
    pub const LARGE_COMMUNITY: u8 = 32;
    /// ONLY_TO_CUSTOMER (RFC 9234).
    pub const ONLY_TO_CUSTOMER: u8 = 35;
}

/// Attribute Flags bits (RFC 4271 §4.3).
pub mod flag {
    /// Optional bit.
    pub const OPTIONAL: u8 = 0x80;
    /// Transitive bit.
    pub const TRANSITIVE: u8 = 0x40;
    /// Partial bit.
    pub const PARTIAL: u8 = 0x20;
    /// Extended Length bit.
    pub const EXTENDED_LENGTH: u8 = 0x10;
}

/// What the parser of an UPDATE needs to know about the session (from the negotiation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UpdateContext {
    /// Both sides advertised 4-octet AS numbers (RFC 6793).
    pub four_octet_as: bool,
    /// We receive add-path identifiers for IPv4 unicast in the classic NLRI fields (RFC 7911).
    pub add_path_ipv4_unicast: bool,
    /// The peer is in our AS (iBGP): LOCAL_PREF is mandatory, not discarded (RFC 7606 §7.5).
    pub internal_peer: bool,
}

/// One path attribute as located in the attribute list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeSpan {
    /// Attribute Flags.
    pub flags: u8,
    /// Attribute Type Code.
    pub type_code: u8,
    /// The whole attribute (flags, type, length, value) within the UPDATE body.
    pub bytes: Range<usize>,
    /// The value within the UPDATE body.
    pub value: Range<usize>,
}

/// The verdict on one UPDATE body before netgauze parses it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UpdatePlan {
    /// Every attribute that could be located, in order.
    pub attributes: Vec<AttributeSpan>,
    /// Indexes into `attributes` to drop before parsing.
    pub discard: Vec<usize>,
    /// Whether every prefix of the UPDATE is to be treated as withdrawn.
    pub treat_as_withdraw: bool,
    /// What was found, for logs and counters.
    pub errors: Vec<AttributeError>,
    /// The Withdrawn Routes field within the body.
    pub withdrawn: Range<usize>,
    /// The NLRI field within the body.
    pub nlri: Range<usize>,
}

impl UpdatePlan {
    fn note(&mut self, type_code: Option<u8>, kind: UpdateErrorKind, outcome: Rfc7606Outcome) {
        if outcome == Rfc7606Outcome::TreatAsWithdraw {
            self.treat_as_withdraw = true;
        }
        self.errors.push(AttributeError {
            type_code,
            kind,
            outcome,
        });
    }

    /// The attribute bytes to hand to the parser: all kept attributes, or under
    /// treat-as-withdraw only the MP_REACH_NLRI and MP_UNREACH_NLRI that locate the NLRI.
    pub fn kept_attributes(&self) -> impl Iterator<Item = &AttributeSpan> {
        self.attributes.iter().enumerate().filter_map(|(index, span)| {
            let keep = if self.treat_as_withdraw {
                matches!(span.type_code, attribute::MP_REACH_NLRI | attribute::MP_UNREACH_NLRI)
            } else {
                !self.discard.contains(&index)
            };
            keep.then_some(span)
        })
    }
}

/// A session reset: the NOTIFICATION to send and what caused it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}: session reset with {notification}")]
pub struct SessionReset {
    /// The NOTIFICATION to send.
    pub notification: Notification,
    /// What was found.
    pub error: AttributeError,
}

impl SessionReset {
    fn new(type_code: Option<u8>, kind: UpdateErrorKind, subcode: u8, data: &[u8]) -> Self {
        Self {
            notification: Notification::update_message(subcode, data.to_vec()),
            error: AttributeError {
                type_code,
                kind,
                outcome: Rfc7606Outcome::SessionReset,
            },
        }
    }
}

/// The flags (Optional, Transitive) an attribute must carry, if we know the attribute.
fn expected_flags(type_code: u8) -> Option<u8> {
    use attribute::*;
    let well_known = flag::TRANSITIVE;
    let optional_transitive = flag::OPTIONAL | flag::TRANSITIVE;
    let optional_non_transitive = flag::OPTIONAL;
    match type_code {
        ORIGIN | AS_PATH | NEXT_HOP | LOCAL_PREF | ATOMIC_AGGREGATE => Some(well_known),
        AGGREGATOR
        | COMMUNITIES
        | EXTENDED_COMMUNITIES
        | AS4_PATH
        | AS4_AGGREGATOR
        | IPV6_EXTENDED_COMMUNITIES
        | LARGE_COMMUNITY
        | ONLY_TO_CUSTOMER => Some(optional_transitive),
        MULTI_EXIT_DISC | ORIGINATOR_ID | CLUSTER_LIST | MP_REACH_NLRI | MP_UNREACH_NLRI | AIGP => {
            Some(optional_non_transitive)
        }
        _ => None,
    }
}

/// What a malformed attribute of this type costs (RFC 7606 §7, RFC 6793 §6, RFC 9234 §5).
pub fn malformed_outcome(type_code: u8) -> Rfc7606Outcome {
    use attribute::*;
    match type_code {
        ATOMIC_AGGREGATE | AGGREGATOR | AS4_PATH | AS4_AGGREGATOR | ONLY_TO_CUSTOMER | AIGP => {
            Rfc7606Outcome::AttributeDiscard
        }
        MP_REACH_NLRI | MP_UNREACH_NLRI => Rfc7606Outcome::SessionReset,
        // Unknown optional attributes are passed on untouched: they are not "malformed" to us.
        _ if expected_flags(type_code).is_none() => Rfc7606Outcome::AttributeDiscard,
        _ => Rfc7606Outcome::TreatAsWithdraw,
    }
}

/// Whether a value length is allowed for the attribute type (RFC 7606 §3 f and §7).
fn length_is_valid(type_code: u8, length: usize, context: &UpdateContext) -> bool {
    use attribute::*;
    match type_code {
        ORIGIN => length == 1,
        NEXT_HOP | MULTI_EXIT_DISC | LOCAL_PREF | ORIGINATOR_ID | ONLY_TO_CUSTOMER => length == 4,
        ATOMIC_AGGREGATE => length == 0,
        AGGREGATOR => length == if context.four_octet_as { 8 } else { 6 },
        AS4_AGGREGATOR => length == 8,
        COMMUNITIES | CLUSTER_LIST => length > 0 && length.is_multiple_of(4),
        EXTENDED_COMMUNITIES => length > 0 && length.is_multiple_of(8),
        IPV6_EXTENDED_COMMUNITIES => length > 0 && length.is_multiple_of(20),
        LARGE_COMMUNITY => length > 0 && length.is_multiple_of(12),
        AS_PATH => length == 0 || length >= 2,
        AS4_PATH => length >= 2,
        // RFC 4760 §3/§4: AFI, SAFI and (for MP_REACH) next hop length and reserved octet.
        MP_REACH_NLRI => length >= 5,
        MP_UNREACH_NLRI => length >= 3,
        _ => true,
    }
}

/// Checks the next hop length of an MP_REACH_NLRI value for the families weft carries (RFC 4760
/// §3, RFC 2545 §3, RFC 8950 §3): netgauze 0.13 reads an IPv6 unicast next hop of any declared
/// length as 16 octets, so the check is ours. Other families are left to netgauze.
fn mp_reach_next_hop_is_valid(value: &[u8]) -> bool {
    let [afi_high, afi_low, safi, next_hop_length, ..] = *value else {
        return false;
    };
    let fits = value.len() > 4 + usize::from(next_hop_length);
    match (u16::from_be_bytes([afi_high, afi_low]), safi) {
        (1, 1) => fits && matches!(next_hop_length, 4 | 16 | 32),
        (2, 1) => fits && matches!(next_hop_length, 16 | 32),
        _ => fits,
    }
}

/// Checks the syntax of a Withdrawn Routes or IPv4 NLRI field (RFC 4271 §4.3, RFC 7911 §3).
fn check_prefixes(field: &[u8], add_path: bool) -> bool {
    let mut rest = field;
    while !rest.is_empty() {
        if add_path {
            let Some(after_id) = rest.get(4..) else { return false };
            rest = after_id;
        }
        let Some((&length, after_length)) = rest.split_first() else {
            return false;
        };
        if length > 32 {
            return false;
        }
        let octets = usize::from(length).div_ceil(8);
        let Some(after_prefix) = after_length.get(octets..) else {
            return false;
        };
        rest = after_prefix;
    }
    true
}

fn read_u16(body: &[u8], at: usize) -> Option<usize> {
    let bytes = body.get(at..at + 2)?;
    Some(usize::from(u16::from_be_bytes([bytes[0], bytes[1]])))
}

/// Walks an UPDATE body (the octets after the header) and decides what RFC 7606 makes of it.
pub fn plan_update(body: &[u8], context: &UpdateContext) -> Result<UpdatePlan, SessionReset> {
    use Rfc7606Outcome::{AttributeDiscard, TreatAsWithdraw};
    use UpdateErrorKind::*;
    let overrun = || SessionReset::new(None, LengthFieldsOverrunMessage, update::MALFORMED_ATTRIBUTE_LIST, &[]);
    // §3 a: both length fields must fit in the message; otherwise the NLRI cannot be located.
    let withdrawn_length = read_u16(body, 0).ok_or_else(overrun)?;
    let withdrawn = 2..2 + withdrawn_length;
    let attributes_length = read_u16(body, withdrawn.end).ok_or_else(overrun)?;
    let attributes_start = withdrawn.end + 2;
    let attributes_end = attributes_start + attributes_length;
    if attributes_end > body.len() {
        return Err(overrun());
    }
    let mut plan = UpdatePlan {
        withdrawn,
        nlri: attributes_end..body.len(),
        ..UpdatePlan::default()
    };

    // §3 j, §5.3: a malformed Withdrawn Routes or NLRI field cannot be recovered from.
    let add_path = context.add_path_ipv4_unicast;
    if !check_prefixes(&body[plan.withdrawn.clone()], add_path) || !check_prefixes(&body[plan.nlri.clone()], add_path) {
        return Err(SessionReset::new(
            None,
            InvalidNetworkField,
            update::INVALID_NETWORK_FIELD,
            &[],
        ));
    }

    let mut at = attributes_start;
    let mut seen = [false; 256];
    while at < attributes_end {
        // §4: too few octets for an attribute header, or a length that overruns the list.
        let Some(&[flags, type_code]) = body.get(at..at + 2).and_then(|b| <&[u8; 2]>::try_from(b).ok()) else {
            plan.note(None, AttributeListOverrun, TreatAsWithdraw);
            break;
        };
        let extended = flags & flag::EXTENDED_LENGTH != 0;
        let header_length = if extended { 4 } else { 3 };
        let length = if extended {
            read_u16(body, at + 2).filter(|_| at + 4 <= attributes_end)
        } else {
            body.get(at + 2)
                .map(|&length| usize::from(length))
                .filter(|_| at + 3 <= attributes_end)
        };
        let Some(length) = length.filter(|length| at + header_length + length <= attributes_end) else {
            plan.note(Some(type_code), AttributeListOverrun, TreatAsWithdraw);
            break;
        };
        let span = AttributeSpan {
            flags,
            type_code,
            bytes: at..at + header_length + length,
            value: at + header_length..at + header_length + length,
        };
        at = span.bytes.end;
        let attribute_bytes = &body[span.bytes.clone()];
        let index = plan.attributes.len();
        plan.attributes.push(span);

        // §3 g: duplicates.
        let is_multiprotocol = matches!(type_code, attribute::MP_REACH_NLRI | attribute::MP_UNREACH_NLRI);
        if seen[usize::from(type_code)] {
            if is_multiprotocol {
                return Err(SessionReset::new(
                    Some(type_code),
                    DuplicateMultiprotocolAttribute,
                    update::MALFORMED_ATTRIBUTE_LIST,
                    &[],
                ));
            }
            plan.discard.push(index);
            plan.note(Some(type_code), Duplicate, AttributeDiscard);
            continue;
        }
        seen[usize::from(type_code)] = true;

        let Some(expected) = expected_flags(type_code) else {
            if flags & flag::OPTIONAL == 0 {
                // RFC 4271 §6.3, unchanged by RFC 7606.
                return Err(SessionReset::new(
                    Some(type_code),
                    UnrecognizedWellKnownAttribute,
                    update::UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE,
                    attribute_bytes,
                ));
            }
            continue;
        };
        // §7.5: LOCAL_PREF from an external peer is discarded whatever its shape.
        if type_code == attribute::LOCAL_PREF && !context.internal_peer {
            plan.discard.push(index);
            plan.note(Some(type_code), LocalPreferenceFromExternalPeer, AttributeDiscard);
            continue;
        }
        let kind = if flags & (flag::OPTIONAL | flag::TRANSITIVE) != expected {
            Some(FlagsConflict)
        } else if !length_is_valid(type_code, length, context)
            || (type_code == attribute::MP_REACH_NLRI && !mp_reach_next_hop_is_valid(&attribute_bytes[header_length..]))
        {
            Some(BadLength)
        } else {
            None
        };
        if let Some(kind) = kind {
            match malformed_outcome(type_code) {
                Rfc7606Outcome::SessionReset => {
                    let subcode = if kind == FlagsConflict {
                        update::ATTRIBUTE_FLAGS_ERROR
                    } else {
                        update::OPTIONAL_ATTRIBUTE_ERROR
                    };
                    return Err(SessionReset::new(Some(type_code), kind, subcode, attribute_bytes));
                }
                outcome => {
                    plan.discard.push(index);
                    plan.note(Some(type_code), kind, outcome);
                }
            }
        }
    }
    Ok(plan)
}

/// Whether the UPDATE carries reachable NLRI but lacks a well-known mandatory attribute
/// (RFC 7606 §3 d; RFC 4760 makes NEXT_HOP mandatory only with NLRI in the classic field;
/// LOCAL_PREF is mandatory on iBGP, RFC 4271 §5.1.5). Returns the first missing type code.
pub fn missing_mandatory(
    present: impl Fn(u8) -> bool,
    has_classic_nlri: bool,
    has_mp_reach: bool,
    context: &UpdateContext,
) -> Option<u8> {
    if !has_classic_nlri && !has_mp_reach {
        return None;
    }
    let mut mandatory = vec![attribute::ORIGIN, attribute::AS_PATH];
    if has_classic_nlri {
        mandatory.push(attribute::NEXT_HOP);
    }
    if context.internal_peer {
        mandatory.push(attribute::LOCAL_PREF);
    }
    mandatory.into_iter().find(|&code| !present(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(withdrawn: &[u8], attributes: &[u8], nlri: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&(withdrawn.len() as u16).to_be_bytes());
        body.extend_from_slice(withdrawn);
        body.extend_from_slice(&(attributes.len() as u16).to_be_bytes());
        body.extend_from_slice(attributes);
        body.extend_from_slice(nlri);
        body
    }

    const ORIGIN_IGP: [u8; 4] = [0x40, 1, 1, 0];
    const EMPTY_AS_PATH: [u8; 3] = [0x40, 2, 0];
    const NEXT_HOP: [u8; 7] = [0x40, 3, 4, 198, 18, 0, 1];

    fn valid_attributes() -> Vec<u8> {
        [&ORIGIN_IGP[..], &EMPTY_AS_PATH, &NEXT_HOP].concat()
    }

    #[test]
    fn well_formed_update_has_nothing_to_report() {
        let plan = plan_update(
            &body(&[], &valid_attributes(), &[24, 198, 18, 1]),
            &UpdateContext::default(),
        )
        .expect("well formed");
        assert_eq!(plan.attributes.len(), 3);
        assert!(plan.errors.is_empty());
        assert!(!plan.treat_as_withdraw);
    }

    #[test]
    fn attribute_length_overrunning_the_message_is_a_session_reset() {
        let mut bytes = body(&[], &valid_attributes(), &[]);
        bytes[3] = 200;
        let reset = plan_update(&bytes, &UpdateContext::default()).expect_err("overrun");
        assert_eq!(
            reset.notification,
            Notification::update_message(update::MALFORMED_ATTRIBUTE_LIST, vec![])
        );
    }

    #[test]
    fn origin_of_two_octets_is_treat_as_withdraw() {
        let attributes = [&[0x40, 1, 2, 0, 0][..], &EMPTY_AS_PATH, &NEXT_HOP].concat();
        let plan = plan_update(&body(&[], &attributes, &[]), &UpdateContext::default()).expect("not a reset");
        assert!(plan.treat_as_withdraw);
        assert_eq!(plan.errors[0].kind, UpdateErrorKind::BadLength);
    }

    #[test]
    fn atomic_aggregate_with_a_value_is_discarded() {
        let attributes = [valid_attributes(), vec![0x40, 6, 1, 0]].concat();
        let plan = plan_update(&body(&[], &attributes, &[]), &UpdateContext::default()).expect("not a reset");
        assert!(!plan.treat_as_withdraw);
        assert_eq!(plan.discard, vec![3]);
        assert_eq!(plan.errors[0].outcome, Rfc7606Outcome::AttributeDiscard);
    }

    #[test]
    fn local_preference_from_an_external_peer_is_discarded() {
        let attributes = [valid_attributes(), vec![0x40, 5, 4, 0, 0, 0, 100]].concat();
        let plan = plan_update(&body(&[], &attributes, &[]), &UpdateContext::default()).expect("not a reset");
        assert_eq!(plan.discard, vec![3]);
    }

    #[test]
    fn duplicate_mp_reach_is_a_session_reset() {
        let mp = [0x80, 14, 5, 0, 2, 1, 0, 0];
        let attributes = [&mp[..], &mp].concat();
        assert!(plan_update(&body(&[], &attributes, &[]), &UpdateContext::default()).is_err());
    }

    #[test]
    fn duplicate_communities_keep_the_first() {
        let communities = [0xc0, 8, 4, 0, 1, 0, 1];
        let attributes = [valid_attributes(), communities.to_vec(), communities.to_vec()].concat();
        let plan = plan_update(&body(&[], &attributes, &[]), &UpdateContext::default()).expect("not a reset");
        assert_eq!(plan.discard, vec![4]);
    }

    #[test]
    fn communities_with_wrong_flags_are_treat_as_withdraw() {
        let attributes = [valid_attributes(), vec![0x40, 8, 4, 0, 1, 0, 1]].concat();
        let plan = plan_update(&body(&[], &attributes, &[]), &UpdateContext::default()).expect("not a reset");
        assert!(plan.treat_as_withdraw);
        assert_eq!(plan.errors[0].kind, UpdateErrorKind::FlagsConflict);
    }

    #[test]
    fn attribute_overrunning_the_attribute_list_is_treat_as_withdraw() {
        let mut attributes = valid_attributes();
        attributes.extend_from_slice(&[0xc0, 8, 40, 0, 1]);
        let plan = plan_update(&body(&[], &attributes, &[]), &UpdateContext::default()).expect("not a reset");
        assert!(plan.treat_as_withdraw);
        assert_eq!(plan.errors[0].kind, UpdateErrorKind::AttributeListOverrun);
    }

    #[test]
    fn unknown_well_known_attribute_is_a_session_reset() {
        let attributes = [valid_attributes(), vec![0x40, 99, 0]].concat();
        let reset = plan_update(&body(&[], &attributes, &[]), &UpdateContext::default()).expect_err("reset");
        assert_eq!(reset.notification.subcode, update::UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE);
        assert_eq!(reset.notification.data, vec![0x40, 99, 0]);
    }

    #[test]
    fn prefix_longer_than_thirty_two_bits_is_an_invalid_network_field() {
        let reset = plan_update(
            &body(&[], &valid_attributes(), &[33, 1, 2, 3, 4, 5]),
            &UpdateContext::default(),
        )
        .expect_err("reset");
        assert_eq!(reset.notification.subcode, update::INVALID_NETWORK_FIELD);
    }

    #[test]
    fn missing_next_hop_with_classic_nlri_is_found() {
        let context = UpdateContext::default();
        let present = |code| code == attribute::ORIGIN || code == attribute::AS_PATH;
        assert_eq!(
            missing_mandatory(present, true, false, &context),
            Some(attribute::NEXT_HOP)
        );
        assert_eq!(missing_mandatory(present, false, true, &context), None);
        assert_eq!(missing_mandatory(|_| false, false, false, &context), None);
    }
}
