//! SASL/PLAIN on the Kafka listener: when the broker has a token, a Kafka connection may send only
//! ApiVersions, SaslHandshake (mechanism PLAIN) and SaslAuthenticate (password = the token) until
//! it has authenticated; anything else, or a wrong password, gets no data and the connection is
//! closed. After a SaslHandshake v0 the credentials come as one bare size-prefixed frame with no
//! request header (Kafka's pre-KIP-152 framing), answered by an empty frame. Until authenticated,
//! frames are limited to `server::PRE_AUTH_MAX_FRAME_BYTES`. Owns the connection's authentication state
//! and the PLAIN message format; never touches the broker.

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::KafkaError;
use super::codec::{self, DecodedRequest};

/// The only mechanism we offer.
const PLAIN: &str = "PLAIN";

/// The frame limit for a connection in `state` (the listeners' shared rule,
/// `server::frame_limit`): small until it has authenticated.
pub(crate) fn frame_limit(token: Option<&str>, state: State, max_frame_bytes: u32) -> u32 {
    crate::server::frame_limit(token.is_some(), state == State::Authenticated, max_frame_bytes)
}

/// Where a connection is in its authentication.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    #[default]
    Start,
    /// A handshake (v1) chose PLAIN: the next SaslAuthenticate carries the credentials.
    HandshakeDone,
    /// A handshake v0 chose PLAIN: the next frame is the bare PLAIN message, no request header.
    RawTokenNext,
    Authenticated,
}

/// What the listener does with a request, decided before any handler sees it.
pub(crate) enum Gate {
    /// Let the handlers answer it (authenticated, no token configured, or ApiVersions).
    Pass,
    /// Send this frame and keep serving.
    Reply(Bytes),
    /// Send this frame (if any) and close the connection: authentication failed.
    Refuse(Option<Bytes>),
}

/// Decides what to do with `req` for a connection in `state` when the broker's token is `token`.
pub(crate) fn gate(
    req: &mut DecodedRequest,
    token: Option<&str>,
    state: &mut State,
) -> Result<Gate, KafkaError> {
    let v = req.header.request_api_version;
    let corr = req.header.correlation_id;
    match req.key {
        ApiKey::SaslHandshake => {
            let r: SaslHandshakeRequest = codec::decode_body(req)?;
            let mut resp = SaslHandshakeResponse::default()
                .with_mechanisms(vec![StrBytes::from_static_str(PLAIN)]);
            if token.is_none() || *state != State::Start {
                resp.error_code = ResponseError::IllegalSaslState.code();
            } else if r.mechanism.as_str() != PLAIN {
                resp.error_code = ResponseError::UnsupportedSaslMechanism.code();
            } else {
                *state = if v == 0 { State::RawTokenNext } else { State::HandshakeDone };
            }
            Ok(Gate::Reply(codec::encode_response(req.key, v, corr, &resp)?))
        }
        ApiKey::SaslAuthenticate => {
            let r: SaslAuthenticateRequest = codec::decode_body(req)?;
            let (Some(token), State::HandshakeDone) = (token, *state) else {
                let resp = SaslAuthenticateResponse::default()
                    .with_error_code(ResponseError::IllegalSaslState.code())
                    .with_error_message(Some(StrBytes::from_static_str("handshake PLAIN first")));
                return Ok(Gate::Refuse(Some(codec::encode_response(req.key, v, corr, &resp)?)));
            };
            if plain_password(&r.auth_bytes)
                .is_some_and(|p| crate::server::tokens_equal(token.as_bytes(), p))
            {
                *state = State::Authenticated;
                let resp = SaslAuthenticateResponse::default();
                return Ok(Gate::Reply(codec::encode_response(req.key, v, corr, &resp)?));
            }
            let resp = SaslAuthenticateResponse::default()
                .with_error_code(ResponseError::SaslAuthenticationFailed.code())
                .with_error_message(Some(StrBytes::from_static_str("authentication failed")));
            Ok(Gate::Refuse(Some(codec::encode_response(req.key, v, corr, &resp)?)))
        }
        _ if token.is_none() || *state == State::Authenticated => Ok(Gate::Pass),
        // Clients ask for versions before they authenticate; that reveals no data.
        ApiKey::ApiVersions => Ok(Gate::Pass),
        _ => Ok(Gate::Refuse(None)),
    }
}

/// Handles the bare PLAIN message that follows a SaslHandshake v0 (the listener calls this
/// instead of decoding a request when `state` is `RawTokenNext`). Success is answered, as Kafka
/// does, by the server's (empty) SASL token as a size-prefixed frame; a wrong password cannot be
/// answered in this framing, so the connection is closed.
pub(crate) fn raw_token(msg: &[u8], token: Option<&str>, state: &mut State) -> Gate {
    let ok = *state == State::RawTokenNext
        && token.is_some_and(|t| {
            plain_password(msg).is_some_and(|p| crate::server::tokens_equal(t.as_bytes(), p))
        });
    if !ok {
        return Gate::Refuse(None);
    }
    *state = State::Authenticated;
    Gate::Reply(Bytes::from_static(&[0, 0, 0, 0]))
}

/// The password of a PLAIN message: `[authzid] NUL authcid NUL passwd` (RFC 4616).
fn plain_password(msg: &[u8]) -> Option<&[u8]> {
    let mut parts = msg.splitn(3, |b| *b == 0);
    let _authzid = parts.next()?;
    let _authcid = parts.next()?;
    parts.next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_message_parts() {
        assert_eq!(plain_password(&Bytes::from_static(b"\0user\0secret")), Some(&b"secret"[..]));
        assert_eq!(plain_password(&Bytes::from_static(b"az\0user\0s\0x")), Some(&b"s\0x"[..]));
        assert_eq!(plain_password(&Bytes::from_static(b"user-secret")), None);
    }

    #[test]
    fn a_bare_plain_message_authenticates_only_after_a_v0_handshake() {
        let mut state = State::RawTokenNext;
        let Gate::Refuse(None) = raw_token(b"\0u\0wrong", Some("tok"), &mut state) else {
            panic!("a wrong password closes the connection")
        };
        assert_eq!(state, State::RawTokenNext);
        let Gate::Reply(frame) = raw_token(b"\0u\0tok", Some("tok"), &mut state) else {
            panic!("the right password is answered")
        };
        assert_eq!(&frame[..], &[0, 0, 0, 0], "an empty server token");
        assert_eq!(state, State::Authenticated);
        let mut start = State::Start;
        assert!(matches!(raw_token(b"\0u\0tok", Some("tok"), &mut start), Gate::Refuse(None)));
    }

    #[test]
    fn frames_are_small_until_authenticated() {
        use crate::server::PRE_AUTH_MAX_FRAME_BYTES;
        let max = 100 << 20;
        assert_eq!(frame_limit(Some("t"), State::Start, max), PRE_AUTH_MAX_FRAME_BYTES);
        assert_eq!(frame_limit(Some("t"), State::RawTokenNext, max), PRE_AUTH_MAX_FRAME_BYTES);
        assert_eq!(frame_limit(Some("t"), State::Authenticated, max), max);
        assert_eq!(frame_limit(None, State::Start, max), max);
    }
}
