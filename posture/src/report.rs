//! The full result of one collection.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::check::{Check, CheckId, Status};

/// The OS family a report was collected on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    /// Linux, any distribution.
    Linux,
    /// Windows 10 / 11 / Server.
    Windows,
    /// macOS.
    Macos,
    /// Anything else (no collectors).
    Other,
}

impl Platform {
    /// The platform this binary was built for.
    pub fn current() -> Platform {
        if cfg!(target_os = "linux") {
            Platform::Linux
        } else if cfg!(target_os = "windows") {
            Platform::Windows
        } else if cfg!(target_os = "macos") {
            Platform::Macos
        } else {
            Platform::Other
        }
    }
}

/// Every check measured in one collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// When the collection started.
    #[serde(with = "time::serde::rfc3339")]
    pub collected_at: OffsetDateTime,
    /// The OS family.
    pub platform: Platform,
    /// The version of the agent that measured.
    pub agent_version: String,
    /// Wall time the whole collection took.
    pub duration_ms: u64,
    /// The checks, in display order.
    pub checks: Vec<Check>,
}

impl Report {
    /// The check with `id`, if it was collected.
    pub fn check(&self, id: CheckId) -> Option<&Check> {
        self.checks.iter().find(|check| check.id == id)
    }

    /// How many checks have `status`.
    pub fn count(&self, status: Status) -> usize {
        self.checks.iter().filter(|c| c.status == status).count()
    }
}
