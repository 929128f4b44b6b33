//! A scripted BGP peer's side of the wire, for tests that play the peer themselves (collision,
//! a peer that stops reading): whole messages written and read with weft's own codec.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Result, bail};
use weft_bgp_proto::Message;
use weft_bgp_proto::codec::{CodecContext, decode_message, encode};

/// How long [`receive`] waits for a message.
pub const READ_TIMEOUT: Duration = Duration::from_secs(20);

/// The session as negotiated by every scripted peer: 4-octet AS numbers.
pub fn context() -> CodecContext {
    CodecContext {
        four_octet_as: true,
        ..CodecContext::default()
    }
}

pub fn send(stream: &mut TcpStream, message: &Message) -> Result<()> {
    stream.write_all(&encode(message, &context())?)?;
    Ok(())
}

/// The next message on `stream`, within [`READ_TIMEOUT`].
pub fn receive(stream: &mut TcpStream) -> Result<Message> {
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    let mut bytes = vec![0u8; 19];
    stream.read_exact(&mut bytes)?;
    let length = usize::from(u16::from_be_bytes([bytes[16], bytes[17]]));
    bytes.resize(length, 0);
    stream.read_exact(&mut bytes[19..])?;
    match decode_message(&bytes, &context())? {
        Some(received) => Ok(received.message),
        None => bail!("an ignorable message"),
    }
}
