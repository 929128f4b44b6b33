//! Checks of resource contents that a JSON schema cannot express (a CIDR that parses, a block
//! size that fits its pool). Used by `weftctl apply` and by every component before it trusts
//! an object from the store.

use std::fmt;

/// The shape of a CIDR, for the CRD schema; [`check_cidr`] does the real parse.
pub const CIDR_PATTERN: &str = r"^([0-9]{1,3}(\.[0-9]{1,3}){3}|[0-9a-fA-F:.]*:[0-9a-fA-F:.]*)/[0-9]{1,3}$";

/// The shape of an IP address, for the CRD schema; [`check_ip`] does the real parse.
pub const IP_PATTERN: &str = r"^([0-9]{1,3}(\.[0-9]{1,3}){3}|[0-9a-fA-F:.]*:[0-9a-fA-F:.]*)$";

/// Every problem found in one object, each with the field it is about.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Problems(pub Vec<(String, String)>);

impl Problems {
    pub fn add(&mut self, field: impl Into<String>, message: String) {
        self.0.push((field.into(), message));
    }

    pub fn into_result(self) -> Result<(), Problems> {
        if self.0.is_empty() { Ok(()) } else { Err(self) }
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (field, message)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{field}: {message}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// Parses a CIDR whose host bits are zero; records a problem otherwise.
pub fn check_cidr(problems: &mut Problems, field: &str, text: &str) -> Option<ipnet::IpNet> {
    match text.parse::<ipnet::IpNet>() {
        Ok(net) if net.trunc() == net => Some(net),
        Ok(net) => {
            problems.add(
                field,
                format!("{text} has host bits set (did you mean {}?)", net.trunc()),
            );
            None
        }
        Err(_) => {
            problems.add(
                field,
                format!("{text:?} is not a CIDR (like 198.18.0.0/16 or 2001:db8::/48)"),
            );
            None
        }
    }
}

/// Parses an IP address; records a problem otherwise.
pub fn check_ip(problems: &mut Problems, field: &str, text: &str) -> Option<std::net::IpAddr> {
    match text.parse() {
        Ok(ip) => Some(ip),
        Err(_) => {
            problems.add(field, format!("{text:?} is not an IP address"));
            None
        }
    }
}

/// An AS number that may be configured: not 0 and not AS_TRANS (RFC 6793).
pub fn check_asn(problems: &mut Problems, field: &str, asn: u32) {
    if asn == 0 {
        problems.add(field, "AS 0 is reserved (RFC 7607)".into());
    } else if asn == 23456 {
        problems.add(field, "AS 23456 is AS_TRANS (RFC 6793), not a real AS".into());
    }
}
