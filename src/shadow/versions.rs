//! Which two versions a comparison is between.

use crate::control::ColorVersion;

/// The two sides of a comparison: the primary (whose answers users got) and
/// the shadow (the candidate that answered the copies), each with its color
/// and version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ComparedVersions {
    /// The version that answered users.
    pub primary: ColorVersion,
    /// The version that answered the mirrored copies.
    pub shadow: ColorVersion,
}

impl ComparedVersions {
    /// Both sides.
    pub fn new(primary: ColorVersion, shadow: ColorVersion) -> Self {
        ComparedVersions { primary, shadow }
    }
}
