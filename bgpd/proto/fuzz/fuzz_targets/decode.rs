//! Fuzz target: any byte stream from a peer, framed and decoded under every codec context
//! (2- or 4-octet AS, iBGP or eBGP, with add-path receive), must give messages or a
//! NOTIFICATION to send, never a panic. Run with `cargo fuzz run decode` in `bgpd/proto/fuzz`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_bgp_proto::{CodecContext, Framer};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, stream)) = data.split_first() else {
        return;
    };
    let add_path_receive = if flags & 8 != 0 {
        vec![
            weft_bgp_proto::AddressType::Ipv4Unicast,
            weft_bgp_proto::AddressType::Ipv6Unicast,
        ]
    } else {
        Vec::new()
    };
    let context = CodecContext {
        four_octet_as: flags & 1 != 0,
        internal_peer: flags & 2 != 0,
        extended_messages: flags & 4 != 0,
        add_path_receive,
    };
    let mut framer = Framer::new();
    framer.set_extended_messages(context.extended_messages);
    // Feed the stream in uneven pieces, as TCP would deliver it.
    for chunk in stream.chunks(usize::from(flags >> 4) + 1) {
        framer.extend(chunk);
        loop {
            match framer.next_frame() {
                Ok(Some(frame)) => {
                    if let Err(error) = weft_bgp_proto::codec::decode(frame, &context) {
                        let _ = error.notification();
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    let _ = error.notification();
                    return;
                }
            }
        }
    }
});
