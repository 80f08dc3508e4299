//! Bearer token checks.

use std::fmt;

use http::header::AUTHORIZATION;
use http::HeaderMap;
use subtle::ConstantTimeEq;

use super::reply::{unauthorized, Reply};
use crate::error::ConfigError;

/// The token every request must present. Never printed.
pub(crate) struct Token(Box<[u8]>);

/// What a request presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Allowed,
    /// No `Authorization` header, or one with another scheme.
    Missing,
    /// A bearer token that is not the one (or several `Authorization` headers).
    Invalid,
}

impl Token {
    /// Checks a configured token: present, non-empty, visible ASCII only
    /// (RFC 6750's `b64token` is a subset; anything a header value can carry
    /// without spaces is accepted).
    pub(crate) fn new(token: Option<String>) -> Result<Token, ConfigError> {
        let token = token
            .filter(|t| !t.is_empty())
            .ok_or(ConfigError::MissingToken)?;
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ConfigError::InvalidToken);
        }
        Ok(Token(token.into_bytes().into_boxed_slice()))
    }

    /// Checks a request's `Authorization` header.
    fn check(&self, headers: &HeaderMap) -> Verdict {
        let mut values = headers.get_all(AUTHORIZATION).iter();
        let Some(value) = values.next() else {
            return Verdict::Missing;
        };
        if values.next().is_some() {
            return Verdict::Invalid;
        }
        let bytes = value.as_bytes();
        let Some(space) = bytes.iter().position(|&b| b == b' ') else {
            return Verdict::Missing;
        };
        // The scheme is case-insensitive (RFC 9110, section 11.1).
        if !bytes[..space].eq_ignore_ascii_case(b"bearer") {
            return Verdict::Missing;
        }
        let presented = bytes[space..].trim_ascii();
        if self.matches(presented) {
            Verdict::Allowed
        } else {
            Verdict::Invalid
        }
    }

    /// The 401 answer, unless `headers` carry the token (`None`): with a
    /// `WWW-Authenticate` challenge that says whether it was missing or
    /// wrong.
    pub(crate) fn refusal(&self, headers: &HeaderMap) -> Option<Reply> {
        match self.check(headers) {
            Verdict::Allowed => None,
            Verdict::Missing => Some(unauthorized("missing bearer token", "Bearer")),
            Verdict::Invalid => Some(unauthorized(
                "invalid bearer token",
                r#"Bearer error="invalid_token""#,
            )),
        }
    }

    /// Compares in time that depends on the presented length only: every
    /// presented byte is compared (without an early exit) with the token's
    /// bytes taken in a cycle, and the lengths are compared in constant time
    /// too. So the answer's timing tells neither where the first wrong byte
    /// is nor how long the token is.
    fn matches(&self, presented: &[u8]) -> bool {
        let expected = &self.0;
        let mut equal = (expected.len() as u64).ct_eq(&(presented.len() as u64));
        for (p, e) in presented.iter().zip(expected.iter().cycle()) {
            equal &= p.ct_eq(e);
        }
        equal.into()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn configured_tokens_are_checked() {
        assert_eq!(Token::new(None).err(), Some(ConfigError::MissingToken));
        assert_eq!(
            Token::new(Some(String::new())).err(),
            Some(ConfigError::MissingToken)
        );
        for bad in ["with space", "tab\t", "new\nline", "é"] {
            assert_eq!(
                Token::new(Some(bad.into())).err(),
                Some(ConfigError::InvalidToken),
                "{bad:?}"
            );
        }
        let t = Token::new(Some("s3cr3t-t0ken".into())).unwrap();
        assert_eq!(format!("{t:?}"), "Token(<redacted>)");
    }

    #[test]
    fn only_the_exact_bearer_token_is_allowed() {
        let t = Token::new(Some("abc123".into())).unwrap();
        assert_eq!(t.check(&headers(&["Bearer abc123"])), Verdict::Allowed);
        assert_eq!(t.check(&headers(&["bearer   abc123"])), Verdict::Allowed);
        assert_eq!(t.check(&headers(&["BEARER abc123"])), Verdict::Allowed);

        assert_eq!(t.check(&headers(&[])), Verdict::Missing);
        assert_eq!(t.check(&headers(&["Basic abc123"])), Verdict::Missing);
        assert_eq!(t.check(&headers(&["abc123"])), Verdict::Missing);
        assert_eq!(t.check(&headers(&["Bearer"])), Verdict::Missing);
        for wrong in [
            "Bearer ",
            "Bearer abc12",
            "Bearer abc1234",
            "Bearer abc123abc123", // the token twice: the cycle must not match it
            "Bearer abd123",
            "Bearer ABC123",
            "Bearer abc 123",
            "Bearer a",
        ] {
            assert_eq!(t.check(&headers(&[wrong])), Verdict::Invalid, "{wrong:?}");
        }
        assert_eq!(
            t.check(&headers(&["Bearer abc123", "Bearer abc123"])),
            Verdict::Invalid,
            "two headers are ambiguous"
        );
        assert_eq!(
            t.check(&headers(&["Bearer abc123", "Bearer x"])),
            Verdict::Invalid
        );
    }
}
