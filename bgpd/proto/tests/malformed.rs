//! Malformed input never panics: random bytes and random truncations or corruptions of valid
//! messages through the framer and the decoder always end in a frame, a wait, or a NOTIFICATION.

use proptest::prelude::*;
use weft_bgp_proto::codec::{CodecContext, decode, decode_message};
use weft_bgp_proto::framing::Framer;

fn with_header(message_type: u8, body: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0xff; 16];
    bytes.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
    bytes.push(message_type);
    bytes.extend_from_slice(body);
    bytes
}

fn valid_messages() -> Vec<Vec<u8>> {
    let mut ipv6_update = vec![
        0, 0, 0, 46, 0x40, 1, 1, 0, 0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xe8, 0x80, 14, 30, 0, 2, 1, 16,
    ];
    ipv6_update.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    ipv6_update.extend_from_slice(&[0, 64, 0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0]);
    vec![
        with_header(4, &[]),
        with_header(
            1,
            &[
                4, 0xfd, 0xe9, 0, 90, 198, 19, 0, 2, 14, 2, 12, 1, 4, 0, 1, 0, 1, 65, 4, 0, 0, 0xfd, 0xe9,
            ],
        ),
        with_header(
            2,
            &[
                0, 0, 0, 20, 0x40, 1, 1, 0, 0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xe8, 0x40, 3, 4, 198, 19, 0, 1, 24, 198, 18,
                1,
            ],
        ),
        with_header(2, &ipv6_update),
        with_header(3, &[6, 2, 3, b'b', b'y', b'e']),
        with_header(5, &[0, 2, 0, 1]),
    ]
}

fn contexts() -> impl Strategy<Value = CodecContext> {
    (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(four_octet_as, internal_peer, add_path)| CodecContext {
        four_octet_as,
        internal_peer,
        add_path_receive: if add_path {
            vec![
                weft_bgp_proto::AddressType::Ipv4Unicast,
                weft_bgp_proto::AddressType::Ipv6Unicast,
            ]
        } else {
            vec![]
        },
        extended_messages: false,
    })
}

/// Frames and decodes everything; returns how many messages decoded.
fn run_stream(chunks: &[Vec<u8>], context: &CodecContext) -> usize {
    let mut framer = Framer::new();
    let mut decoded = 0;
    for chunk in chunks {
        framer.extend(chunk);
        loop {
            match framer.next_frame() {
                Ok(Some(frame)) => {
                    if let Ok(Some(_)) = decode(frame, context) {
                        decoded += 1;
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    let _ = error.notification();
                    return decoded;
                }
            }
        }
    }
    decoded
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600), context in contexts()) {
        let _ = decode_message(&bytes, &context).map_err(|error| error.notification());
        run_stream(&[bytes], &context);
    }

    #[test]
    fn random_bodies_behind_a_valid_header_never_panic(
        message_type in 1u8..=5,
        body in proptest::collection::vec(any::<u8>(), 0..300),
        context in contexts(),
    ) {
        let _ = decode_message(&with_header(message_type, &body), &context).map_err(|error| error.notification());
    }

    #[test]
    fn truncated_or_corrupted_valid_messages_never_panic(
        index in 0usize..6,
        cut in 0usize..80,
        flips in proptest::collection::vec((0usize..80, any::<u8>()), 0..4),
        context in contexts(),
    ) {
        let mut bytes = valid_messages()[index].clone();
        for (at, value) in flips {
            if let Some(octet) = bytes.get_mut(at) {
                *octet = value;
            }
        }
        let truncated = &bytes[..cut.min(bytes.len())];
        let _ = decode_message(truncated, &context).map_err(|error| error.notification());
        // The body cut short but the Length field kept: the framer waits, never panics.
        run_stream(&[truncated.to_vec()], &context);
    }

    #[test]
    fn valid_stream_split_anywhere_decodes_every_message(split in 0usize..200) {
        let stream: Vec<u8> = valid_messages().concat();
        let split = split.min(stream.len());
        let context = CodecContext { four_octet_as: true, ..CodecContext::default() };
        let decoded = run_stream(&[stream[..split].to_vec(), stream[split..].to_vec()], &context);
        prop_assert_eq!(decoded, valid_messages().len());
    }
}
