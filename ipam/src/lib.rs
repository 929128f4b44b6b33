//! weft's IPAM block allocator (pools → blocks → affinities → handles).
//!
//! Not built yet (issue "IPAM: block allocator on the datastore"): empty on purpose, so that
//! nothing hands out addresses before the allocator is real.
