//! Route requests to the kernel in batches: many RTM_NEWROUTE and RTM_DELROUTE messages in one
//! `send` on one netlink socket, without NLM_F_ACK, so that the kernel answers only what it
//! refuses. rtnetlink handles the messages of a `send` one after the other inside that call, so
//! when it returns every refusal is already queued on the socket: one system call per
//! [`CHUNK`] routes, instead of a request and an acknowledgement per route.
//!
//! Owns one netlink socket and its sequence numbers. Must never: run on an async task (the
//! socket blocks; the FIB calls it from a blocking thread), or lose a refusal unnoticed: if the
//! refusals of a chunk overflow the receive buffer (ENOBUFS), its requests are answered
//! [`Reply::Unknown`] and the caller asks again with acknowledgements.

use std::io;

use rtnetlink::packet_core::{
    ErrorMessage, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::route::RouteMessage;
use rtnetlink::sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// Requests per `send`: their refusals (a few hundred octets of buffer each) fit in the receive
/// buffer even if the kernel refuses them all.
pub const CHUNK: usize = 128;

/// Receive buffer asked for (the kernel caps it at `net.core.rmem_max`).
const RECEIVE_BUFFER: usize = 1 << 20;

/// One request of a batch.
#[derive(Debug, Clone)]
pub enum Request {
    /// Install the route, replacing the prefix's route if there is one.
    Replace(RouteMessage),
    /// Remove the route.
    Delete(RouteMessage),
}

/// What the kernel said to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Done.
    Done,
    /// Refused, with the kernel's error.
    Refused(ErrorMessage),
    /// Not known: refusals were lost (the receive buffer overflowed); ask again.
    Unknown,
}

/// A netlink socket for batched route requests.
#[derive(Debug)]
pub struct RouteBatch {
    socket: Socket,
    sequence: u32,
    buffer: Vec<u8>,
}

impl RouteBatch {
    /// Opens the socket in the process's network namespace.
    pub fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        // A smaller buffer only means smaller chunks could overflow it: not fatal.
        let _ = socket.set_rx_buf_sz(RECEIVE_BUFFER);
        Ok(Self {
            socket,
            sequence: 0,
            buffer: Vec::new(),
        })
    }

    /// Sends `requests`, [`CHUNK`] per `send`; one reply per request, in order.
    pub fn apply(&mut self, requests: Vec<Request>) -> io::Result<Vec<Reply>> {
        let mut replies = Vec::with_capacity(requests.len());
        let mut requests = requests.into_iter().peekable();
        while requests.peek().is_some() {
            let chunk: Vec<Request> = requests.by_ref().take(CHUNK).collect();
            replies.extend(self.send_chunk(chunk)?);
        }
        Ok(replies)
    }

    fn send_chunk(&mut self, chunk: Vec<Request>) -> io::Result<Vec<Reply>> {
        let first = self.sequence.wrapping_add(1);
        let count = chunk.len();
        self.buffer.clear();
        for request in chunk {
            self.sequence = self.sequence.wrapping_add(1);
            let (payload, flags) = match request {
                Request::Replace(route) => (
                    RouteNetlinkMessage::NewRoute(route),
                    NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE,
                ),
                Request::Delete(route) => (RouteNetlinkMessage::DelRoute(route), NLM_F_REQUEST),
            };
            let mut header = NetlinkHeader::default();
            header.flags = flags;
            header.sequence_number = self.sequence;
            let mut message = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(payload));
            message.finalize();
            let start = self.buffer.len();
            // Netlink messages are 4-octet aligned; buffer_len includes the padding.
            self.buffer.resize(start + message.buffer_len(), 0);
            message.serialize(&mut self.buffer[start..]);
        }
        self.socket.send(&self.buffer, 0)?;
        let mut replies = vec![Reply::Done; count];
        let mut receive = Vec::with_capacity(8192);
        loop {
            receive.clear();
            match self.socket.recv(&mut receive, libc::MSG_DONTWAIT) {
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.raw_os_error() == Some(libc::ENOBUFS) => {
                    // Refusals were dropped: which of this chunk's requests failed is unknown.
                    replies.iter_mut().for_each(|reply| *reply = Reply::Unknown);
                    continue;
                }
                Err(error) => return Err(error),
            }
            let Ok(message) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&receive) else {
                continue;
            };
            let NetlinkPayload::Error(error) = message.payload else {
                continue;
            };
            let index = message.header.sequence_number.wrapping_sub(first) as usize;
            if let Some(reply) = replies.get_mut(index)
                && *reply == Reply::Done
                && error.code.is_some()
            {
                *reply = Reply::Refused(error);
            }
        }
        Ok(replies)
    }
}
