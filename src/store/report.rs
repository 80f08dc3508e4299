//! [`ReplicaReport`]: what each replica says of itself, under a lease key
//! of its own (`models/{model}/replicas/{id}`), so that the fleet view
//! lists the replicas alive and a promote can check them.

use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use crate::control::{Readiness, RolloutHandle};
use crate::Color;

/// One replica's report of itself.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplicaReport {
    /// The replica's id (see
    /// [`ReplicaBuilder::id`](super::ReplicaBuilder::id)).
    pub id: String,
    /// The store revision of the state it applied.
    pub applied_revision: u64,
    /// Whether it serves a state from the store or its snapshot (with a
    /// loader: and its active color holds the version the state names; see
    /// [`Replica::is_ready`](super::Replica::is_ready)).
    pub ready: bool,
    /// The version each color holds there, blue first.
    pub versions: [ReportedVersion; 2],
    /// When it wrote this report (its clock).
    pub at: SystemTime,
}

/// A color's version on a replica, and whether it was seen ready there.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReportedVersion {
    /// The version's label.
    pub version: String,
    /// Not seen pending or failing.
    pub ready: bool,
}

impl ReplicaReport {
    /// The report of the router behind `handle`.
    pub(super) fn of(id: &str, applied_revision: u64, ready: bool, handle: &RolloutHandle) -> Self {
        let status = handle.status();
        let side = |c: Color| {
            let s = status.color(c);
            ReportedVersion {
                version: s.version.to_string(),
                ready: !matches!(s.readiness, Readiness::NotReady | Readiness::Failed),
            }
        };
        ReplicaReport {
            id: id.to_owned(),
            applied_revision,
            ready,
            versions: [side(Color::Blue), side(Color::Green)],
            at: SystemTime::now(),
        }
    }

    /// The version `color` holds there.
    pub fn version(&self, color: Color) -> &ReportedVersion {
        &self.versions[match color {
            Color::Blue => 0,
            Color::Green => 1,
        }]
    }

    pub(super) fn to_json(&self) -> Vec<u8> {
        let side = |v: &ReportedVersion| json!({ "version": v.version, "ready": v.ready });
        let at = self
            .at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        serde_json::to_vec(&json!({
            "id": self.id,
            "applied_revision": self.applied_revision,
            "ready": self.ready,
            "blue": side(&self.versions[0]),
            "green": side(&self.versions[1]),
            "at_unix_ms": at,
        }))
        .unwrap_or_default()
    }

    /// Reads a stored report; `None` for one that does not parse (another
    /// writer's key under the prefix): it is left out of the fleet view.
    pub(super) fn from_json(bytes: &[u8]) -> Option<Self> {
        let v: Value = serde_json::from_slice(bytes).ok()?;
        let side = |c: &str| {
            Some(ReportedVersion {
                version: v[c]["version"].as_str()?.to_owned(),
                ready: v[c]["ready"].as_bool()?,
            })
        };
        Some(ReplicaReport {
            id: v["id"].as_str()?.to_owned(),
            applied_revision: v["applied_revision"].as_u64()?,
            ready: v["ready"].as_bool()?,
            versions: [side("blue")?, side("green")?],
            at: SystemTime::UNIX_EPOCH
                .checked_add(Duration::from_millis(v["at_unix_ms"].as_u64()?))?,
        })
    }
}
