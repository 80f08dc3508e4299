//! The names that tell routers and layers apart.

use std::fmt;
use std::sync::Arc;

use crate::error::ConfigError;

/// The name of a router or layer that was given none.
pub const DEFAULT_NAME: &str = "default";

/// The longest name accepted, in bytes.
const MAX_NAME: usize = 64;

/// A validated name for a router or layer.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Name(pub(crate) Arc<str>);

impl Name {
    pub(crate) fn new(name: impl Into<String>) -> Result<Name, ConfigError> {
        let name = name.into();
        let allowed =
            |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'/');
        if name.is_empty() || name.len() > MAX_NAME || !name.bytes().all(allowed) {
            return Err(ConfigError::InvalidName { name });
        }
        Ok(Name(name.into()))
    }
}

impl Default for Name {
    fn default() -> Self {
        Name(Arc::from(DEFAULT_NAME))
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// Which kind of layer owns a mirror engine or a comparator: the `layer` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(any(feature = "metrics", feature = "tracing")), allow(dead_code))]
pub(crate) enum Owner {
    Router,
    Mirror,
    Shadow,
}

impl Owner {
    #[cfg(any(feature = "metrics", feature = "tracing"))]
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Owner::Router => "router",
            Owner::Mirror => "mirror",
            Owner::Shadow => "shadow",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["default", "iris", "iris-v2.1", "fleet/resnet_50:prod", "a"] {
            assert!(Name::new(good).is_ok(), "{good}");
        }
        let long = "x".repeat(MAX_NAME + 1);
        for bad in [
            "",
            "has space",
            "ünï",
            "quote\"",
            "new\nline",
            long.as_str(),
        ] {
            assert_eq!(
                Name::new(bad),
                Err(ConfigError::InvalidName { name: bad.into() }),
                "{bad:?}"
            );
        }
        assert!(Name::new("x".repeat(MAX_NAME)).is_ok());
        assert_eq!(Name::default().0.as_ref(), DEFAULT_NAME);
    }
}
