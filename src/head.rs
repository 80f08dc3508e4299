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
