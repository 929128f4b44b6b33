//! The sender: hand-encoded messages (RFC 4271 §4, RFC 4760 §3–4, RFC 6793), the whole stream
//! built before the session opens, and one session from the sender's side.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use socket2::SockRef;
use weft_topology_tests::{Netns, wait_for};

use super::{Family, HOLD_TIME, KEEPALIVE_EVERY, MAX_MESSAGE, READY_LIMIT, SENDER_ASN, SENDER_V4, SENDER_V6};

fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![0xff; 16];
    m.extend_from_slice(&u16::try_from(19 + body.len()).unwrap().to_be_bytes());
    m.push(kind);
    m.extend_from_slice(body);
    m
}

fn open(family: Family) -> Vec<u8> {
    let mut capabilities = Vec::new();
    // Multiprotocol (1): AFI, reserved, SAFI unicast.
    capabilities.extend_from_slice(&[1, 4]);
    capabilities.extend_from_slice(&family.afi().to_be_bytes());
    capabilities.extend_from_slice(&[0, 1]);
    // 4-octet AS (65).
    capabilities.extend_from_slice(&[65, 4]);
    capabilities.extend_from_slice(&SENDER_ASN.to_be_bytes());
    let mut body = vec![4];
    body.extend_from_slice(&u16::try_from(SENDER_ASN).unwrap().to_be_bytes());
    body.extend_from_slice(&HOLD_TIME.to_be_bytes());
    body.extend_from_slice(&SENDER_V4.parse::<Ipv4Addr>().unwrap().octets());
    body.push(u8::try_from(capabilities.len() + 2).unwrap());
    body.push(2);
    body.push(u8::try_from(capabilities.len()).unwrap());
    body.extend_from_slice(&capabilities);
    message(1, &body)
}

fn keepalive() -> Vec<u8> {
    message(4, &[])
}

fn cease() -> Vec<u8> {
    // Cease (6), Administrative Shutdown (2).
    message(3, &[6, 2])
}

/// ORIGIN IGP and AS_PATH (AS_SEQUENCE of our AS, 4 octets).
fn common_attributes() -> Vec<u8> {
    let mut a = vec![0x40, 1, 1, 0, 0x40, 2, 6, 2, 1];
    a.extend_from_slice(&SENDER_ASN.to_be_bytes());
    a
}

fn update(attributes: &[u8], nlri: &[u8]) -> Vec<u8> {
    let mut body = vec![0, 0];
    body.extend_from_slice(&u16::try_from(attributes.len()).unwrap().to_be_bytes());
    body.extend_from_slice(attributes);
    body.extend_from_slice(nlri);
    message(2, &body)
}

fn prefix_v4(i: usize) -> [u8; 5] {
    let a = (u32::from(Ipv4Addr::new(198, 18, 0, 0)) + u32::try_from(i).unwrap()).to_be_bytes();
    [32, a[0], a[1], a[2], a[3]]
}

fn prefix_v6(i: usize) -> [u8; 9] {
    // 2001:db8:XXXX:XXXX::/64 with XXXXXXXX = 0x10000 + i: from 2001:db8:1::/64 up, far below
    // the link's 2001:db8:ff00::/64.
    let low = (0x1_0000u32 + u32::try_from(i).unwrap()).to_be_bytes();
    [64, 0x20, 0x01, 0x0d, 0xb8, low[0], low[1], low[2], low[3]]
}

/// The whole UPDATE stream for `n` prefixes of `family`, End-of-RIB last.
pub(crate) fn encode_stream(family: Family, n: usize) -> Vec<u8> {
    let mut stream = Vec::with_capacity(n * 10 + 4096);
    match family {
        Family::V4 => {
            let mut attributes = common_attributes();
            attributes.extend_from_slice(&[0x40, 3, 4]);
            attributes.extend_from_slice(&SENDER_V4.parse::<Ipv4Addr>().unwrap().octets());
            let per_update = (MAX_MESSAGE - 19 - 4 - attributes.len()) / 5;
            let mut nlri = Vec::with_capacity(per_update * 5);
            for chunk in (0..n).collect::<Vec<_>>().chunks(per_update) {
                nlri.clear();
                for &i in chunk {
                    nlri.extend_from_slice(&prefix_v4(i));
                }
                stream.extend_from_slice(&update(&attributes, &nlri));
            }
            stream.extend_from_slice(&update(&[], &[]));
        }
        Family::V6 => {
            let next_hop = SENDER_V6.parse::<Ipv6Addr>().unwrap().octets();
            let fixed = 19 + 4 + common_attributes().len() + 4 + 5 + 16;
            let per_update = (MAX_MESSAGE - fixed) / 9;
            for start in (0..n).step_by(per_update) {
                let end = (start + per_update).min(n);
                let mut reach = vec![0, 2, 1, 16];
                reach.extend_from_slice(&next_hop);
                reach.push(0);
                for i in start..end {
                    reach.extend_from_slice(&prefix_v6(i));
                }
                let mut attributes = common_attributes();
                attributes.extend_from_slice(&[0x90, 14]);
                attributes.extend_from_slice(&u16::try_from(reach.len()).unwrap().to_be_bytes());
                attributes.extend_from_slice(&reach);
                stream.extend_from_slice(&update(&attributes, &[]));
            }
            // End-of-RIB: an empty MP_UNREACH_NLRI for IPv6 unicast.
            stream.extend_from_slice(&update(&[0x80, 15, 3, 0, 2, 1], &[]));
        }
    }
    stream
}

/// Time to write `stream` over loopback into a thread that only reads and discards: what the
/// sender alone can do.
pub(crate) fn sender_ceiling(stream: &[u8]) -> Duration {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let reader = std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().unwrap();
        let mut buffer = vec![0u8; 1 << 20];
        let mut total = 0usize;
        loop {
            match socket.read(&mut buffer) {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n,
            }
        }
    });
    let mut socket = TcpStream::connect(address).unwrap();
    SockRef::from(&socket).set_send_buffer_size(4 << 20).unwrap();
    let started = Instant::now();
    socket.write_all(stream).unwrap();
    socket.shutdown(Shutdown::Write).unwrap();
    let total = reader.join().unwrap();
    assert_eq!(total, stream.len());
    started.elapsed()
}

/// One BGP session from the sender's side.
pub(crate) struct Session {
    pub(crate) socket: TcpStream,
    stop: mpsc::Sender<()>,
    writer: Option<std::thread::JoinHandle<()>>,
    reader: Option<std::thread::JoinHandle<Option<String>>>,
    pub(crate) written: Arc<AtomicBool>,
    /// When our KEEPALIVE went out: the receiver's Established.
    pub(crate) established: Instant,
}

fn read_message(socket: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut header = [0u8; 19];
    socket.read_exact(&mut header)?;
    let length = usize::from(u16::from_be_bytes([header[16], header[17]]));
    if !(19..=65535).contains(&length) {
        return Err(std::io::Error::other(format!("bad BGP length {length}")));
    }
    let mut body = vec![0u8; length - 19];
    socket.read_exact(&mut body)?;
    Ok((header[18], body))
}

impl Session {
    /// Connects from `sender` to the receiver (retrying while it does not listen yet), exchanges
    /// OPENs, sends KEEPALIVE and the whole stream.
    pub(crate) fn start(sender: &Netns, family: Family, stream: Arc<Vec<u8>>) -> Result<Self> {
        let port = 179;
        let address = SocketAddr::new(family.receiver().parse()?, port);
        let mut socket = wait_for(
            "the receiver to accept on port 179",
            READY_LIMIT,
            Duration::from_millis(100),
            || {
                let connected = sender
                    .within(|| TcpStream::connect_timeout(&address, Duration::from_secs(2)))
                    .map_err(anyhow::Error::from)?;
                Ok::<_, anyhow::Error>(connected.ok())
            },
        )?;
        socket.set_nodelay(true)?;
        SockRef::from(&socket).set_send_buffer_size(4 << 20)?;
        socket.set_read_timeout(Some(READY_LIMIT))?;
        socket.write_all(&open(family))?;
        let (kind, body) = read_message(&mut socket).context("read the receiver's OPEN")?;
        match kind {
            1 => {}
            3 => bail!("the receiver sent a NOTIFICATION instead of an OPEN: {body:?}"),
            other => bail!("the receiver sent message type {other} instead of an OPEN"),
        }
        socket.set_read_timeout(None)?;
        let mut reader_socket = socket.try_clone()?;
        let reader = std::thread::spawn(move || {
            // Drains what the receiver sends (KEEPALIVEs, End-of-RIB); bounded by the socket's
            // life: ends at EOF or an error.
            let mut notification = None;
            while let Ok((kind, body)) = read_message(&mut reader_socket) {
                if kind == 3 {
                    notification = Some(format!("NOTIFICATION {body:?}"));
                }
            }
            notification
        });
        let mut writer_socket = socket.try_clone()?;
        let written = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = mpsc::channel::<()>();
        writer_socket.write_all(&keepalive())?;
        let established = Instant::now();
        let written_flag = written.clone();
        let writer = std::thread::spawn(move || {
            if writer_socket.write_all(&stream).is_err() {
                return;
            }
            written_flag.store(true, Ordering::Release);
            // KEEPALIVEs until told to stop (or the bench is gone), then Cease and close.
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(KEEPALIVE_EVERY) {
                if writer_socket.write_all(&keepalive()).is_err() {
                    return;
                }
            }
            let _ = writer_socket.write_all(&cease());
            let _ = writer_socket.shutdown(Shutdown::Both);
        });
        Ok(Self {
            socket,
            stop,
            writer: Some(writer),
            reader: Some(reader),
            written,
            established,
        })
    }

    /// Sends a Cease and closes; returns when the close happened.
    pub(crate) fn close(&mut self) -> Instant {
        let _ = self.stop.send(());
        if let Some(writer) = self.writer.take() {
            // A writer still blocked in the stream (the receiver stopped reading) is unblocked
            // by shutting the socket down.
            if !self.written.load(Ordering::Acquire) {
                let _ = self.socket.shutdown(Shutdown::Both);
            }
            let _ = writer.join();
        }
        let closed = Instant::now();
        let _ = self.socket.shutdown(Shutdown::Both);
        if let Some(reader) = self.reader.take()
            && let Ok(Some(notification)) = reader.join()
        {
            eprintln!("bgp_ingest: the receiver sent {notification}");
        }
        closed
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.writer.is_some() || self.reader.is_some() {
            self.close();
        }
    }
}
