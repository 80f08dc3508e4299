//! A borrowed view of a request's head, given to user predicates and key functions.

use http::{Extensions, HeaderMap, Method, Request, Uri};

/// The method, URI, headers and extensions of a request, borrowed.
///
/// User closures (sticky keys, override predicates, mirror predicates) receive
/// this instead of `&Request<B>`, so they do not depend on the body type.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    method: &'a Method,
    uri: &'a Uri,
    headers: &'a HeaderMap,
    extensions: &'a Extensions,
}

impl<'a> RequestHead<'a> {
    /// Borrows the head of `req`.
    pub fn of<B>(req: &'a Request<B>) -> Self {
        RequestHead {
            method: req.method(),
            uri: req.uri(),
            headers: req.headers(),
            extensions: req.extensions(),
        }
    }

    /// The request method.
    pub fn method(&self) -> &'a Method {
        self.method
    }

    /// The request URI.
    pub fn uri(&self) -> &'a Uri {
        self.uri
    }

    /// The request headers.
    pub fn headers(&self) -> &'a HeaderMap {
        self.headers
    }

    /// The request extensions (for example a peer address or an authenticated
    /// user put there by an earlier layer).
    pub fn extensions(&self) -> &'a Extensions {
        self.extensions
    }
}

/// The first value of header `name`: a linear scan over the few headers of a
/// typical request or response (cheaper than hashing the name), the map's own
/// lookup beyond that.
#[inline]
pub(crate) fn header<'a>(
    headers: &'a HeaderMap,
    name: &http::HeaderName,
) -> Option<&'a http::HeaderValue> {
    if headers.keys_len() <= 16 {
        headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v)
    } else {
        headers.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn header_finds_the_first_value_in_small_and_large_maps() {
        let name = http::HeaderName::from_static("x-user-id");
        for extra in [0usize, 3, 40] {
            let mut h = HeaderMap::new();
            for i in 0..extra {
                h.insert(
                    http::HeaderName::try_from(format!("x-h{i}")).unwrap(),
                    HeaderValue::from_static("v"),
                );
            }
            assert_eq!(header(&h, &name), None);
            h.append(name.clone(), HeaderValue::from_static("u1"));
            h.append(name.clone(), HeaderValue::from_static("u2"));
            assert_eq!(header(&h, &name).unwrap(), "u1", "{extra} other headers");
            assert_eq!(header(&h, &http::header::CONTENT_TYPE), None);
        }
    }
}
