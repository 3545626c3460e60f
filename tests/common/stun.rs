//! STUN requests and answers for the tests, built and parsed with the `stun-types` codec (plus
//! the TURN attributes of `turn-types`), not ours. We sign with MESSAGE-INTEGRITY (HMAC-SHA1,
//! long-term key MD5(username:realm:password)) only: stun-types derives its
//! MESSAGE-INTEGRITY-SHA256 key with SHA-256, which RFC 8489 §9.2.2 does not do without
//! PASSWORD-ALGORITHM.

use std::net::SocketAddr;

use stun_types::attribute::{AttributeWrite, ErrorCode, Nonce, Realm, Username, XorMappedAddress};
use stun_types::message::{
    IntegrityAlgorithm, LongTermKeyCredentials, Message, MessageClass, MessageType, MessageWrite,
    MessageWriteExt, MessageWriteVec, Method, TransactionId,
};
use turn_client_proto::types::attribute::{RequestedTransport, XorRelayedAddress};

use super::Server;

/// Long-term credentials plus the realm and nonce a server handed out.
#[derive(Clone, Debug)]
pub struct Auth {
    pub username: String,
    pub password: String,
    pub realm: String,
    pub nonce: String,
}

impl Auth {
    pub fn credentials(&self) -> LongTermKeyCredentials {
        LongTermKeyCredentials::new(
            self.username.clone(),
            self.password.clone(),
            self.realm.clone(),
        )
    }
}

/// A request of `method` with `attrs`, signed with `auth` (USERNAME, REALM, NONCE,
/// MESSAGE-INTEGRITY) when given. `attrs` get the transaction id (XOR addresses need it).
pub fn request(
    method: Method,
    auth: Option<&Auth>,
    attrs: impl FnOnce(&mut MessageWriteVec, TransactionId),
) -> Vec<u8> {
    let id = TransactionId::generate();
    let mtype = MessageType::from_class_method(MessageClass::Request, method);
    let mut msg = Message::builder(mtype, id, MessageWriteVec::new());
    attrs(&mut msg, id);
    if let Some(auth) = auth {
        add(&mut msg, &Username::new(&auth.username).unwrap());
        add(&mut msg, &Realm::new(&auth.realm).unwrap());
        add(&mut msg, &Nonce::new(&auth.nonce).unwrap());
        msg.add_message_integrity(&auth.credentials().into(), IntegrityAlgorithm::Sha1)
            .expect("add MESSAGE-INTEGRITY");
    }
    msg.finish()
}

pub fn add(msg: &mut MessageWriteVec, attr: &dyn AttributeWrite) {
    msg.add_attribute(attr).expect("add an attribute");
}

pub fn udp_transport(msg: &mut MessageWriteVec, _: TransactionId) {
    add(msg, &RequestedTransport::new(RequestedTransport::UDP));
}

pub fn no_attributes(_: &mut MessageWriteVec, _: TransactionId) {}

/// Parses an answer, checking it answers `method`.
pub fn parse<'a>(answer: &'a [u8], method: Method) -> Message<'a> {
    let msg = Message::from_bytes(answer)
        .unwrap_or_else(|e| panic!("unparsable answer {answer:02x?}: {e:?}"));
    assert!(msg.has_method(method), "answer to the wrong method: {msg}");
    msg
}

pub fn error_code(msg: &Message) -> Option<u16> {
    msg.attribute::<ErrorCode>().ok().map(|e| e.code())
}

/// Asserts an error answer with `code`, returning it.
pub fn expect_error<'a>(
    answer: &'a [u8],
    method: Method,
    code: u16,
    server: &Server,
) -> Message<'a> {
    let msg = parse(answer, method);
    assert!(
        msg.has_class(MessageClass::Error) && error_code(&msg) == Some(code),
        "expected a {code} error, got {msg} (error code {:?})\n--- server log ---\n{}",
        error_code(&msg),
        server.log()
    );
    msg
}

/// Asserts a success answer whose MESSAGE-INTEGRITY verifies with `auth`, returning it.
pub fn expect_success<'a>(
    answer: &'a [u8],
    method: Method,
    auth: &Auth,
    server: &Server,
) -> Message<'a> {
    let msg = parse(answer, method);
    assert!(
        msg.has_class(MessageClass::Success),
        "expected success, got {msg} (error code {:?})\n--- server log ---\n{}",
        error_code(&msg),
        server.log()
    );
    let key = auth.credentials().make_key(IntegrityAlgorithm::Sha1);
    msg.validate_integrity_with_key(&key)
        .unwrap_or_else(|e| panic!("success answer fails MESSAGE-INTEGRITY: {e:?}: {msg}"));
    msg
}

/// XOR-MAPPED-ADDRESS of an answer (Binding, Allocate); panics when it has none.
pub fn mapped_address(msg: &Message) -> SocketAddr {
    msg.attribute::<XorMappedAddress>()
        .unwrap_or_else(|e| panic!("no XOR-MAPPED-ADDRESS ({e:?}): {msg}"))
        .addr(msg.transaction_id())
}

/// The (first) XOR-RELAYED-ADDRESS of an Allocate answer; panics when it has none.
pub fn relayed_address(msg: &Message) -> SocketAddr {
    msg.attribute::<XorRelayedAddress>()
        .unwrap_or_else(|e| panic!("no XOR-RELAYED-ADDRESS ({e:?}): {msg}"))
        .addr(msg.transaction_id())
}
