//! weft's BGP-4 protocol core.
//!
//! Owns the wire codec, the RFC 4271 §8 session state machine, the RIBs, best-path selection and
//! import/export policy. Pure by construction: this crate depends on no async runtime and reads
//! no clock; the driver in `weft-bgpd` passes time and bytes in and carries actions out.
//!
//! Not built yet (issue "weft-bgpd: a complete BGP-4 speaker"): this crate is empty on purpose so
//! that nothing pretends to speak BGP before it does.
