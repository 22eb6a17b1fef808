//! SASL/PLAIN on the Kafka listener: when the broker has a token, a Kafka connection may send only
//! ApiVersions, SaslHandshake (mechanism PLAIN) and SaslAuthenticate (password = the token) until
//! it has authenticated; anything else, or a wrong password, gets no data and the connection is
//! closed. Owns the connection's authentication state and the PLAIN message format; never touches
//! the broker.

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

/// Where a connection is in its authentication.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    #[default]
    Start,
    /// A handshake chose PLAIN: the next SaslAuthenticate carries the credentials.
    HandshakeDone,
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
                *state = State::HandshakeDone;
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

/// The password of a PLAIN message: `[authzid] NUL authcid NUL passwd` (RFC 4616).
fn plain_password(msg: &Bytes) -> Option<&[u8]> {
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
}
