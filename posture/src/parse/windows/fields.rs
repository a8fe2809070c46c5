//! `Key : Value` lines, the layout shared by PowerShell `Format-List`,
//! `dsregcmd /status`, `manage-bde -status` and `tpmtool` (`-Key: Value`).

/// One `Key : Value` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    /// The text before the first colon, trimmed, without a leading `-`.
    pub key: &'a str,
    /// The text after the first colon, trimmed (may be empty).
    pub value: &'a str,
    /// The whole line, trimmed (for evidence).
    pub line: &'a str,
}

/// Every line of `text` that has a colon and a non-empty key before it.
///
/// Splits at the *first* colon: keys never hold one, values may (times,
/// drive letters).
pub fn fields(text: &str) -> Vec<Field<'_>> {
    text.lines()
        .filter_map(|raw| {
            let line = raw.trim();
            let (key, value) = line.split_once(':')?;
            let key = key.trim().trim_start_matches('-').trim();
            (!key.is_empty()).then_some(Field {
                key,
                value: value.trim(),
                line,
            })
        })
        .collect()
}

/// The first field whose key equals `key`, ignoring ASCII case.
pub fn find<'a, 'f>(fields: &'f [Field<'a>], key: &str) -> Option<&'f Field<'a>> {
    fields
        .iter()
        .find(|field| field.key.eq_ignore_ascii_case(key))
}

/// PowerShell and `tpmtool` print booleans as `True` / `False` whatever the
/// UI language; `dsregcmd` prints `YES` / `NO`.
pub fn boolean(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" => Some(true),
        "false" | "no" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_the_first_colon_and_strips_dashes() {
        let parsed = fields(
            "AMRunningMode   : Normal\r\n-TPM Present: True\nLast : 6/4/2024 8:06:27 AM\nno colon\n : empty key\n",
        );
        let keys: Vec<_> = parsed.iter().map(|f| (f.key, f.value)).collect();
        assert_eq!(
            keys,
            [
                ("AMRunningMode", "Normal"),
                ("TPM Present", "True"),
                ("Last", "6/4/2024 8:06:27 AM")
            ]
        );
        assert_eq!(
            find(&parsed, "amrunningmode").map(|f| f.value),
            Some("Normal")
        );
    }
}
