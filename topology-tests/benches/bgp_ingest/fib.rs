//! Counting the receiver's kernel routes: a netlink route dump inside its namespace.

use std::io::Read;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use socket2::{Domain, Protocol, Socket, Type};
use weft_topology_tests::Netns;

use super::Family;

pub(crate) struct FibCounter {
    socket: Socket,
    sequence: u32,
    buffer: Vec<u8>,
}

impl FibCounter {
    pub(crate) fn new(netns: &Netns) -> Result<Self> {
        let socket = netns.within(|| -> std::io::Result<Socket> {
            let socket = Socket::new(
                Domain::from(libc::AF_NETLINK),
                Type::from(libc::SOCK_RAW),
                Some(Protocol::from(libc::NETLINK_ROUTE)),
            )?;
            socket.set_recv_buffer_size(8 << 20)?;
            socket.set_read_timeout(Some(Duration::from_secs(20)))?;
            Ok(socket)
        })??;
        Ok(Self {
            socket,
            sequence: 0,
            buffer: vec![0; 1 << 20],
        })
    }

    /// Routes of `family` and `protocol` in the main table.
    pub(crate) fn count(&mut self, family: Family, protocol: u8) -> Result<u64> {
        const RTM_NEWROUTE: u16 = 24;
        const RTM_GETROUTE: u16 = 26;
        const NLMSG_ERROR: u16 = 2;
        const NLMSG_DONE: u16 = 3;
        const FLAGS: u16 = 0x1 | 0x300; // NLM_F_REQUEST | NLM_F_DUMP
        const MAIN_TABLE: u8 = 254;
        self.sequence += 1;
        let mut request = Vec::with_capacity(28);
        request.extend_from_slice(&28u32.to_ne_bytes());
        request.extend_from_slice(&RTM_GETROUTE.to_ne_bytes());
        request.extend_from_slice(&FLAGS.to_ne_bytes());
        request.extend_from_slice(&self.sequence.to_ne_bytes());
        request.extend_from_slice(&0u32.to_ne_bytes());
        request.extend_from_slice(&[family.netlink(), 0, 0, 0, 0, 0, 0, 0]);
        request.extend_from_slice(&0u32.to_ne_bytes());
        self.socket.send(&request)?;
        let mut count = 0;
        // A dump of a few million routes is a few thousand reads; bounded well above that.
        for _ in 0..1_000_000 {
            let n = (&self.socket).read(&mut self.buffer).context("read the route dump")?;
            let data = &self.buffer[..n];
            let mut offset = 0;
            while offset + 16 <= data.len() {
                let field = |at: usize, len: usize| &data[offset + at..offset + at + len];
                let length = u32::from_ne_bytes(field(0, 4).try_into()?) as usize;
                let kind = u16::from_ne_bytes(field(4, 2).try_into()?);
                let sequence = u32::from_ne_bytes(field(8, 4).try_into()?);
                if length < 16 || offset + length > data.len() {
                    bail!("malformed netlink message");
                }
                if sequence == self.sequence {
                    match kind {
                        NLMSG_DONE => return Ok(count),
                        NLMSG_ERROR => bail!("netlink error on the route dump"),
                        RTM_NEWROUTE if length >= 28 => {
                            let rtm = field(16, 12);
                            if rtm[0] == family.netlink() && rtm[4] == MAIN_TABLE && rtm[5] == protocol {
                                count += 1;
                            }
                        }
                        _ => {}
                    }
                }
                offset += (length + 3) & !3;
            }
        }
        bail!("the route dump did not end")
    }
}
