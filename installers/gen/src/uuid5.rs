//! Name-based UUIDs (version 5, RFC 9562 §5.5): the configuration
//! profile's PayloadUUIDs are derived from the key set, so regenerating it
//! gives the same UUIDs (MDMs see the same profile) until a key is added or
//! removed.

use sha1::{Digest, Sha1};

/// The namespace for Sallyport's names: UUIDv5 of the DNS namespace and
/// `sallyport.agent` (fixed; changing it changes every PayloadUUID).
pub const NAMESPACE: [u8; 16] = [
    0xb3, 0x21, 0x7d, 0x60, 0x96, 0xbb, 0x59, 0x6e, 0x8c, 0xaf, 0x42, 0x7a, 0xe5, 0xba, 0x10, 0x77,
];

/// The UUIDv5 of `name` in `namespace`, upper-case as profiles write them.
pub fn uuid5(namespace: &[u8; 16], name: &str) -> String {
    let mut hasher = Sha1::new();
    hasher.update(namespace);
    hasher.update(name.as_bytes());
    let digest = hasher.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x50;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02X}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9562's DNS namespace.
    const DNS: [u8; 16] = [
        0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30,
        0xc8,
    ];

    #[test]
    fn matches_the_known_answer() {
        // Python: uuid.uuid5(uuid.NAMESPACE_DNS, "python.org")
        assert_eq!(
            uuid5(&DNS, "python.org"),
            "886313E1-3B8A-5372-9B90-0C9AEE199E5D"
        );
    }

    #[test]
    fn the_namespace_is_what_its_doc_says() {
        let text = uuid5(&DNS, "sallyport.agent").replace('-', "");
        let bytes: Vec<u8> = (0..16)
            .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        assert_eq!(bytes, NAMESPACE);
    }
}
