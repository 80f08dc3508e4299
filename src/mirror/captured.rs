//! A whole response, as collected for a comparison.

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

/// One side's response as the comparator sees it: status, headers, the body
/// (whole: responses over the byte cap are not compared) and trailers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// The response status.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// The whole response body.
    pub body: Bytes,
    /// Trailers, if the body ended with some (gRPC puts `grpc-status` there).
    pub trailers: Option<HeaderMap>,
}

impl Captured {
    /// A response with an empty body, no headers and no trailers.
    pub fn new(status: StatusCode, body: impl Into<Bytes>) -> Self {
        Captured {
            status,
            headers: HeaderMap::new(),
            body: body.into(),
            trailers: None,
        }
    }

    /// The gRPC status code, from the trailers or (trailers-only responses)
    /// the headers; `None` when there is none.
    pub fn grpc_status(&self) -> Option<&str> {
        fn from(h: &HeaderMap) -> Option<&str> {
            h.get("grpc-status").and_then(|v| v.to_str().ok())
        }
        self.trailers
            .as_ref()
            .and_then(from)
            .or_else(|| from(&self.headers))
    }
}
