//! `realm list`: directory domains this machine is joined to (realmd).

/// One realm block of `realm list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Realm {
    /// The realm name (first, unindented line of the block).
    pub name: String,
    /// `configured:` value (`kerberos-member`, `no`).
    pub configured: String,
}

impl Realm {
    /// True when this machine is a configured member.
    pub fn joined(&self) -> bool {
        !self.configured.is_empty() && self.configured != "no"
    }
}

/// Parses `realm list`. Empty output means no realm is known (not joined).
pub fn parse_realm_list(text: &str) -> Vec<Realm> {
    let mut realms: Vec<Realm> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(char::is_whitespace) {
            realms.push(Realm {
                name: line.trim().to_owned(),
                configured: String::new(),
            });
        } else if let Some(value) = line.trim().strip_prefix("configured:")
            && let Some(realm) = realms.last_mut()
        {
            realm.configured = value.trim().to_owned();
        }
    }
    realms
}
