//! Linux firewall rulesets: `nft list ruleset`, `iptables -S`, `/etc/ufw/ufw.conf`.
//!
//! "Active" is not enough: a ruleset whose input hooks accept everything
//! protects nothing. A ruleset *filters inbound traffic* when some input-hook
//! filter chain either has `policy drop`, or ends in an unconditional
//! `drop`/`reject` (how firewalld and many hand-written rulesets close a
//! chain whose policy stays `accept`).

use super::super::ParseError;

const NFT: &str = "`nft list ruleset`";
const IPTABLES: &str = "`iptables -S`";

/// One base chain hooked on input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputChain {
    /// `family table/chain`, e.g. `inet filter/input`.
    pub name: String,
    /// The chain policy (`accept` / `drop`).
    pub policy: String,
    /// Number of rules in the chain.
    pub rules: usize,
    /// True when the last rule drops or rejects everything that reaches it.
    pub ends_in_drop: bool,
}

impl InputChain {
    /// True when this chain denies what it does not explicitly allow.
    pub fn default_deny(&self) -> bool {
        self.policy == "drop" || self.ends_in_drop
    }
}

/// Input chains found in a ruleset.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ruleset {
    /// Base chains with an input hook (nft) or the INPUT chain (iptables).
    pub input_chains: Vec<InputChain>,
}

impl Ruleset {
    /// True when inbound traffic is filtered (see the module docs).
    pub fn filters_inbound(&self) -> bool {
        self.input_chains.iter().any(InputChain::default_deny)
    }
}

/// Parses the text form of `nft list ruleset`. Empty text is a valid, empty
/// ruleset (nothing loaded).
pub fn parse_nft_ruleset(text: &str) -> Result<Ruleset, ParseError> {
    let mut ruleset = Ruleset::default();
    let mut table = String::new();
    let mut chain: Option<(String, Vec<String>)> = None;
    let mut depth = 0usize;
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if depth == 0 {
            let Some(rest) = line.strip_prefix("table ") else {
                return Err(ParseError::new(
                    NFT,
                    format!("expected 'table', got: {line:.60}"),
                ));
            };
            table = rest.trim_end_matches('{').trim().to_owned();
        } else if depth == 1 {
            if let Some(rest) = line.strip_prefix("chain ") {
                chain = Some((rest.trim_end_matches('{').trim().to_owned(), Vec::new()));
            }
        } else if depth == 2
            && let Some((_, lines)) = chain.as_mut()
            && line != "}"
        {
            lines.push(line.to_owned());
        }
        let opens = line.matches('{').count();
        let closes = line.matches('}').count();
        depth = (depth + opens)
            .checked_sub(closes)
            .ok_or_else(|| ParseError::new(NFT, "unbalanced braces"))?;
        if depth == 1
            && let Some((name, lines)) = chain.take()
            && let Some(input) = input_chain(&table, &name, &lines)
        {
            ruleset.input_chains.push(input);
        }
    }
    if depth != 0 {
        return Err(ParseError::new(
            NFT,
            "output ends inside a block (cut off?)",
        ));
    }
    Ok(ruleset)
}

/// Builds an [`InputChain`] when `lines` declare a filter chain on the input hook.
fn input_chain(table: &str, chain: &str, lines: &[String]) -> Option<InputChain> {
    let header = lines.iter().find(|l| l.starts_with("type "))?;
    let words: Vec<&str> = header
        .split(|c: char| c.is_whitespace() || c == ';')
        .filter(|w| !w.is_empty())
        .collect();
    let hooked_input = words.windows(2).any(|w| w == ["hook", "input"]);
    let filter = words.get(1) == Some(&"filter");
    if !hooked_input || !filter {
        return None;
    }
    let policy = words
        .windows(2)
        .find(|w| w.first() == Some(&"policy"))
        .and_then(|w| w.get(1))
        .map_or("accept", |p| p)
        .to_owned();
    let rules: Vec<&String> = lines.iter().filter(|l| !l.starts_with("type ")).collect();
    let ends_in_drop = rules.last().is_some_and(|rule| unconditional_drop(rule));
    Some(InputChain {
        name: format!("{table}/{chain}"),
        policy,
        rules: rules.len(),
        ends_in_drop,
    })
}

/// A rule made only of a verdict (optionally counted or logged):
/// `drop`, `counter packets 0 bytes 0 reject with icmpx admin-prohibited`.
fn unconditional_drop(rule: &str) -> bool {
    let mut words = rule.split_whitespace().peekable();
    loop {
        match words.next() {
            Some("counter") => {
                // `counter packets N bytes M`
                while words
                    .peek()
                    .is_some_and(|w| *w == "packets" || *w == "bytes" || w.parse::<u64>().is_ok())
                {
                    words.next();
                }
            }
            Some("log") => {
                // `log prefix "..."` — skip the prefix words up to the verdict.
                while words.peek().is_some_and(|w| *w != "drop" && *w != "reject") {
                    words.next();
                }
            }
            Some("drop") => return words.next().is_none(),
            Some("reject") => return words.next().is_none_or(|w| w == "with"),
            _ => return false,
        }
    }
}

/// Parses `iptables -S` (or `ip6tables -S`): the `INPUT` policy and rules.
pub fn parse_iptables_rules(text: &str) -> Result<Ruleset, ParseError> {
    let mut policy = None;
    let mut rules = 0usize;
    let mut ends_in_drop = false;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["-P", "INPUT", target] => policy = Some(target.to_ascii_lowercase()),
            ["-P", ..] | ["-N", ..] => {}
            ["-A", "INPUT", rest @ ..] => {
                rules += 1;
                ends_in_drop = matches!(rest, ["-j", "DROP" | "REJECT", ..]);
            }
            ["-A", ..] => {}
            _ => {
                return Err(ParseError::new(
                    IPTABLES,
                    format!("unexpected line: {line:.60}"),
                ));
            }
        }
    }
    let Some(policy) = policy else {
        return Err(ParseError::new(IPTABLES, "no '-P INPUT' policy line"));
    };
    Ok(Ruleset {
        input_chains: vec![InputChain {
            name: "iptables filter/INPUT".to_owned(),
            policy,
            rules,
            ends_in_drop,
        }],
    })
}

/// `ENABLED=yes|no` from `/etc/ufw/ufw.conf`; `None` when the key is absent.
pub fn parse_ufw_enabled(text: &str) -> Option<bool> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix("ENABLED="))
        .next_back()
        .map(|v| v.trim().trim_matches('"').eq_ignore_ascii_case("yes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unconditional_verdicts() {
        assert!(unconditional_drop("drop"));
        assert!(unconditional_drop("reject with icmpx admin-prohibited"));
        assert!(unconditional_drop("counter packets 12 bytes 800 drop"));
        assert!(unconditional_drop("log prefix \"dropped \" drop"));
        assert!(!unconditional_drop("tcp dport 23 reject"));
        assert!(!unconditional_drop("ip saddr 10.0.0.0/8 drop"));
        assert!(!unconditional_drop("accept"));
    }
}
