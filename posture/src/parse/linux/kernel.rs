//! Installed vs running kernel, for "reboot pending".

use std::cmp::Ordering;

/// Kernel versions from `/boot/vmlinuz-<version>` file names.
pub fn installed_kernels<'a>(file_names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    file_names
        .into_iter()
        .filter_map(|name| name.strip_prefix("vmlinuz-"))
        .filter(|version| !version.is_empty() && !version.ends_with(".old"))
        .map(str::to_owned)
        .collect()
}

/// The newest version by natural order (`6.1.0-28` > `6.1.0-9`).
pub fn newest_kernel(versions: &[String]) -> Option<&str> {
    versions
        .iter()
        .max_by(|a, b| natural_cmp(a, b))
        .map(String::as_str)
}

/// Compares runs of digits as numbers and everything else as text.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a, b);
    loop {
        match (a.is_empty(), b.is_empty()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            _ => {}
        }
        let (a_chunk, a_rest) = split_chunk(a);
        let (b_chunk, b_rest) = split_chunk(b);
        let order = match (a_chunk.parse::<u128>(), b_chunk.parse::<u128>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => a_chunk.cmp(b_chunk),
        };
        if order != Ordering::Equal {
            return order;
        }
        a = a_rest;
        b = b_rest;
    }
}

/// The leading run of digits, or of non-digits.
fn split_chunk(s: &str) -> (&str, &str) {
    let digits = s.starts_with(|c: char| c.is_ascii_digit());
    let end = s
        .find(|c: char| c.is_ascii_digit() != digits)
        .unwrap_or(s.len());
    s.split_at(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_is_natural_not_lexical() {
        let kernels = installed_kernels([
            "vmlinuz-6.1.0-9-amd64",
            "vmlinuz-6.1.0-28-amd64",
            "config-6.1.0-28-amd64",
            "vmlinuz-6.1.0-28-amd64.old",
        ]);
        assert_eq!(kernels.len(), 2);
        assert_eq!(newest_kernel(&kernels), Some("6.1.0-28-amd64"));
        assert_eq!(newest_kernel(&[]), None);
    }
}
