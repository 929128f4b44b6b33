//! weft's BGP-4 protocol core.
//!
//! Owns the wire codec, the RFC 4271 §8 session state machine, capability negotiation, the RIBs,
//! best-path selection and import/export policy. Pure by
//! construction: this crate depends on no async runtime and reads no clock; the driver in
//! `weft-bgpd` passes bytes, events and the current [`std::time::Instant`] in and carries
//! [`fsm::Action`]s and RIB changes out.
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
//! | [`route`] | prefixes, path attributes, where a path came from | 4271 §3.1, §5 |
//! | [`update`] | UPDATE messages ⇄ routes, End-of-RIB | 4271 §4.3; 4760; 4724 §2 |
//! | [`rib`] | Adj-RIB-In, Loc-RIB, Adj-RIB-Out | 4271 §3.2, §9 |
//! | [`best_path`] | the Decision Process | 4271 §9.1.2 |
//! | [`graceful_restart`] | which stale routes a restarting peer keeps, and when they go; when our own route selection deferral ends | 4724 §4; 8538 |
//! | [`policy`] | named policies: prefix lists with ge/le, communities, AS_PATH; set and prepend | 1997; 8092 |
//! | [`route_reflection`] | what a route reflector reflects, ORIGINATOR_ID, CLUSTER_LIST, loops | 4456 |
//! | [`export`] | import/export policy (accept, reject), attributes sent to a peer | 4271 §5.1, §9.2; 8212 |
//! | [`advertisement_interval`] | the MinRouteAdvertisementIntervalTimer per peer and prefix | 4271 §9.2.1.1 |

pub mod advertisement_interval;
pub mod best_path;
pub mod capabilities;
pub mod codec;
pub mod error_handling;
pub mod export;
pub mod framing;
pub mod fsm;
pub mod graceful_restart;
pub mod intern;
pub mod notification;
pub mod policy;
pub mod prefix_map;
pub mod rib;
pub mod route;
pub mod route_reflection;
pub mod timers;
pub mod update;

pub use capabilities::{LocalConfig, Negotiated};
pub use codec::{CodecContext, DecodeError, Message, Received};
pub use framing::{Frame, Framer, FramingError};
pub use fsm::{Action, Event, Session, State};
pub use notification::Notification;
pub use rib::{AdjRibIn, AdjRibOut, LocRib};
pub use route::{Path, PathAttributes, PathSource, PeerInfo, Prefix};

/// Re-exported so the driver and tests name the same netgauze types this crate does.
pub use netgauze_bgp_pkt as wire;
pub use netgauze_iana::address_family::AddressType;
