//! Windows collectors: thin shims over `crate::parse::windows`.

use super::{CheckId, Collector};

pub(crate) fn collectors() -> Vec<(CheckId, Collector)> {
    vec![(CheckId::AgentVersion, super::agent_version)]
}
