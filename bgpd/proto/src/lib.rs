//! weft's BGP-4 protocol core.
//!
//! Owns the wire codec, the RFC 4271 §8 session state machine, capability negotiation and, later,
//! the RIBs, best-path selection and import/export policy. Pure by construction: this crate
//! depends on no async runtime and reads no clock; the driver in `weft-bgpd` passes bytes, events
//! and the current [`std::time::Instant`] in and carries [`fsm::Action`]s out.
//!
//! | module | owns | RFC |
//! | --- | --- | --- |
//! | [`framing`] | cutting a byte stream into messages, header checks | 4271 §4.1, §6.1; 8654 |
//! | [`notification`] | NOTIFICATION codes, subcodes, data | 4271 §4.5, §6; 4486; 8538; 9003 |
//! | [`codec`] | decode and encode of every message on netgauze | 4271 §4, §6; 2918; 7313 |
//! | [`error_handling`] | what a malformed UPDATE costs | 7606; 6793 §6; 8092 §6 |
//! | [`capabilities`] | our OPEN, and what both OPENs negotiate | 5492; 4760; 6793; 2918; 7313; 4724; 7911; 8950; 8654 |
//! | [`timers`] | the session's timers as deadlines | 4271 §8, §10 |
//! | [`fsm`] | the session state machine, OPEN checks, collision detection | 4271 §6.2, §6.8, §8 |

pub mod capabilities;
pub mod codec;
pub mod error_handling;
pub mod framing;
pub mod fsm;
pub mod notification;
pub mod timers;

pub use capabilities::{LocalConfig, Negotiated};
pub use codec::{CodecContext, DecodeError, Message, Received};
pub use framing::{Frame, Framer, FramingError};
pub use fsm::{Action, Event, Session, State};
pub use notification::Notification;

/// Re-exported so the driver and tests name the same netgauze types this crate does.
pub use netgauze_bgp_pkt as wire;
pub use netgauze_iana::address_family::AddressType;
