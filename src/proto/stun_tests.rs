use super::*;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

// RFC 5769 §2.1-2.4, as hex.
const V1: &str = "000100582112a442b7e7a701bc34d686fa87dfae802200105354554e207465737420636c69656e74002400046e0001ff80290008932ff9b151263b36000600096576746a3a68367659202020000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a280280004e57a3bcf";
const V2: &str = "0101003c2112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f7220002000080001a147e112a643000800142b91f599fd9e90c38c7489f92af9ba53f06be7d780280004c07d4c96";
const V3: &str = "010100482112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f7220002000140002a1470113a9faa5d3f179bc25f4b5bed2b9d900080014a382954e4be67bf11784c97c8292c275bfe3ed4180280004c8fb0b4c";
const V4: &str = "000100602112a44278ad3433c6ad72c029da412e00060012e3839ee38388e383aae38383e382afe382b900000015001c662f2f3439396b39353464364f4c33346f4c394653547679363473410014000b6578616d706c652e6f72670000080014f67024656dd64a3e02b8e0712e85c9a28ca89666";
const SHORT_TERM: &[u8] = b"VOkJxbRl1RmTxUk/WvJxBt";

#[test]
fn rfc5769_sample_request() {
    let data = hex(V1);
    let m = Message::parse(&data).unwrap();
    assert_eq!((m.class(), m.method()), (Class::Request, method::BINDING));
    assert!(m.has_fingerprint());
    assert_eq!(m.get(attr::USERNAME), Some(&b"evtj:h6vY"[..]));
    assert_eq!(m.get(attr::SOFTWARE), Some(&b"STUN test client"[..]));
    assert_eq!(m.verify_integrity(SHORT_TERM), Some(Integrity::Sha1));
    assert_eq!(m.verify_integrity(b"wrong"), None);
}

#[test]
fn rfc5769_ipv4_response() {
    let data = hex(V2);
    let m = Message::parse(&data).unwrap();
    assert_eq!(m.class(), Class::Success);
    let a = m
        .xor_address(m.get(attr::XOR_MAPPED_ADDRESS).unwrap())
        .unwrap();
    assert_eq!(a, "192.0.2.1:32853".parse().unwrap());
    assert_eq!(m.verify_integrity(SHORT_TERM), Some(Integrity::Sha1));
}

#[test]
fn rfc5769_ipv6_response() {
    let data = hex(V3);
    let m = Message::parse(&data).unwrap();
    let a = m
        .xor_address(m.get(attr::XOR_MAPPED_ADDRESS).unwrap())
        .unwrap();
    assert_eq!(
        a,
        "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
            .parse()
            .unwrap()
    );
    assert_eq!(m.verify_integrity(SHORT_TERM), Some(Integrity::Sha1));
}

#[test]
fn rfc5769_long_term_request() {
    use md5::{Digest, Md5};
    let data = hex(V4);
    let m = Message::parse(&data).unwrap();
    let user = std::str::from_utf8(m.get(attr::USERNAME).unwrap()).unwrap();
    assert_eq!(user, "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}");
    assert_eq!(m.get(attr::REALM), Some(&b"example.org"[..]));
    assert_eq!(
        m.get(attr::NONCE),
        Some(&b"f//499k954d6OL34oL9FSTvy64sA"[..])
    );
    let key = Md5::digest(format!("{user}:example.org:TheMatrIX"));
    assert_eq!(m.verify_integrity(&key), Some(Integrity::Sha1));
}

#[test]
fn a_flipped_bit_breaks_the_fingerprint() {
    let mut data = hex(V1);
    data[30] ^= 1;
    assert_eq!(Message::parse(&data).unwrap_err(), ParseError::Fingerprint);
}

#[test]
fn truncated_and_misframed_input_is_refused() {
    let data = hex(V2);
    for n in 0..data.len() {
        assert!(Message::parse(&data[..n]).is_err(), "prefix {n} parsed");
    }
    let mut longer = data.clone();
    longer.extend_from_slice(&[0, 0, 0, 0]);
    assert_eq!(Message::parse(&longer).unwrap_err(), ParseError::Length);
}

#[test]
fn writer_output_verifies_and_cross_checks_with_stun_types() {
    let tid = [7u8; 12];
    let key = b"0123456789abcdef";
    let mut buf = Vec::new();
    let peer: SocketAddr = "[2001:db8::1]:4000".parse().unwrap();
    for alg in [Integrity::Sha1, Integrity::Sha256] {
        let mut w = Writer::new(&mut buf, Class::Success, method::ALLOCATE, tid);
        w.xor_addr(attr::XOR_RELAYED_ADDRESS, peer)
            .u32_attr(attr::LIFETIME, 600)
            .error_code(438, "Stale")
            .integrity(alg, key)
            .fingerprint();
        let m = Message::parse(&buf).unwrap();
        assert_eq!(m.verify_integrity(key), Some(alg));
        assert_eq!(
            m.xor_address(m.get(attr::XOR_RELAYED_ADDRESS).unwrap()),
            Some(peer)
        );
        // An independent decoder agrees on the framing, the address and the fingerprint.
        let other = stun_types::message::Message::from_bytes(&buf).unwrap();
        let relayed = other
            .attribute::<stun_types::attribute::XorMappedAddress>()
            .map(|_| ());
        assert!(relayed.is_err(), "no XOR-MAPPED-ADDRESS was written");
        assert_eq!(
            other.transaction_id(),
            stun_types::message::TransactionId::from(u128::from_be_bytes({
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
                b[4..].copy_from_slice(&tid);
                b
            }))
        );
        let ec = other
            .attribute::<stun_types::attribute::ErrorCode>()
            .unwrap();
        assert_eq!(ec.code(), 438);
    }
}

#[test]
fn message_type_round_trips() {
    for m in [
        method::BINDING,
        method::ALLOCATE,
        method::CHANNEL_BIND,
        0xfff,
    ] {
        for c in [
            Class::Request,
            Class::Indication,
            Class::Success,
            Class::Error,
        ] {
            assert_eq!(split_type(message_type(c, m)), (c, m));
        }
    }
    assert_eq!(message_type(Class::Success, method::BINDING), 0x0101);
    assert_eq!(message_type(Class::Error, method::ALLOCATE), 0x0113);
    assert_eq!(message_type(Class::Indication, method::DATA), 0x0017);
}

proptest::proptest! {
    #[test]
    fn parsing_never_panics(data in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
        if let Ok(m) = Message::parse(&data) {
            for (_, v) in m.attributes() { let _ = m.xor_address(v); }
            let _ = m.verify_integrity(b"k");
            let _ = m.unknown_required().count();
        }
    }

    #[test]
    fn stun_shaped_input_never_panics(tail in proptest::collection::vec(proptest::num::u8::ANY, 0..120)) {
        let mut data = vec![0x00, 0x01, 0, 0, 0x21, 0x12, 0xa4, 0x42];
        data.extend_from_slice(&[1; 12]);
        let len = (tail.len() & !3) as u16;
        data[2..4].copy_from_slice(&len.to_be_bytes());
        data.extend_from_slice(&tail[..len as usize]);
        if let Ok(m) = Message::parse(&data) {
            for (_, v) in m.attributes() { let _ = m.xor_address(v); }
            let _ = m.verify_integrity(b"k");
        }
    }

    #[test]
    fn xor_addresses_round_trip(ip in proptest::num::u128::ANY, v4 in proptest::num::u32::ANY, port in proptest::num::u16::ANY, six in proptest::bool::ANY) {
        let tid = [3u8; 12];
        let a = if six { SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port) } else { SocketAddr::new(IpAddr::V4(Ipv4Addr::from(v4)), port) };
        let mut out = [0u8; 20];
        let n = encode_xor_address(a, &tid, &mut out);
        proptest::prop_assert_eq!(decode_xor_address(&out[..n], &tid), Some(a));
    }
}
