//! macOS collectors: thin shims over `crate::parse::macos`.

use super::{CheckId, Collector};

pub(crate) fn collectors() -> Vec<(CheckId, Collector)> {
    vec![(CheckId::AgentVersion, super::agent_version)]
}
