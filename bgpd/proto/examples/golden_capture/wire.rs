//! The scripted speaker's connection: connect, send bytes, hand out each received message whole
//! and exactly as it came off the wire, and keep the session alive with KEEPALIVEs meanwhile.
//!
//! Must never: interpret what it receives (the capture script does), block without a deadline.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use weft_bgp_proto::Framer;
use weft_bgp_proto::codec::{CodecContext, Message, encode};

use super::lab::Result;

/// How often we send a KEEPALIVE while the session is up (we offer a hold time of 90 s).
const KEEPALIVE_EVERY: Duration = Duration::from_secs(5);
/// Our KEEPALIVE, as our encoder writes it.
pub fn keepalive() -> Vec<u8> {
    encode(&Message::Keepalive, &CodecContext::default()).expect("a KEEPALIVE encodes")
}

/// One TCP connection to the peer.
#[derive(Debug)]
pub struct Wire {
    stream: TcpStream,
    framer: Framer,
    keepalive: Vec<u8>,
    last_sent: Instant,
    /// Send KEEPALIVEs on our own (once the OPENs are exchanged).
    pub keepalives: bool,
    /// The peer closed the connection.
    pub closed: bool,
}

impl Wire {
    /// Connects, retrying every 500 ms until `timeout` (the peer may still be starting).
    pub fn connect(address: SocketAddr, timeout: Duration) -> Result<Self> {
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match TcpStream::connect_timeout(&address, Duration::from_secs(2)) {
                Ok(stream) => break stream,
                Err(error) if Instant::now() >= deadline => {
                    return Err(format!("connecting to {address}: {error}").into());
                }
                Err(_) => thread::sleep(Duration::from_millis(500)),
            }
        };
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_millis(200)))?;
        Ok(Self {
            stream,
            framer: Framer::new(),
            keepalive: keepalive(),
            last_sent: Instant::now(),
            keepalives: false,
            closed: false,
        })
    }

    /// Sends raw message bytes.
    pub fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream.write_all(bytes)?;
        self.last_sent = Instant::now();
        Ok(())
    }

    /// The next whole message, or `None` at `deadline` or when the peer closed the connection.
    pub fn next(&mut self, deadline: Instant) -> Result<Option<Vec<u8>>> {
        loop {
            if let Some(frame) = self.framer.next_frame()? {
                return Ok(Some(frame.bytes.to_vec()));
            }
            if self.closed || Instant::now() >= deadline {
                return Ok(None);
            }
            if self.keepalives && self.last_sent.elapsed() >= KEEPALIVE_EVERY {
                // The peer may have closed already; the read below finds out.
                let keepalive = self.keepalive.clone();
                let _ = self.send(&keepalive);
            }
            let mut buffer = [0u8; 8192];
            match self.stream.read(&mut buffer) {
                Ok(0) => self.closed = true,
                Ok(read) => self.framer.extend(&buffer[..read]),
                Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(error) if error.kind() == ErrorKind::ConnectionReset => self.closed = true,
                Err(error) => return Err(error.into()),
            }
        }
    }
}
