//! Input generation: random bytes, dictionary text, and stacked mutations
//! of real samples.

use crate::rng::Rng;

/// Longest input generated (mutations may not grow past it).
pub const MAX_LEN: usize = 64 * 1024;

/// Tokens every target gets: JSON/TOML/text syntax, numbers at the edges of
/// every integer type, and invalid UTF-8.
const COMMON: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"=",
    b"\n",
    b"\r\n",
    b"\r",
    b"\t",
    b" ",
    b"\0",
    b"\\",
    b"\\u0000",
    b"\\ud800",
    b"null",
    b"true",
    b"false",
    b"0",
    b"-0",
    b"-1",
    b"1e999",
    b"-1e999",
    b"255",
    b"256",
    b"65535",
    b"65536",
    b"2147483647",
    b"2147483648",
    b"-2147483649",
    b"4294967295",
    b"4294967296",
    b"9223372036854775807",
    b"9223372036854775808",
    b"-9223372036854775808",
    b"-9223372036854775809",
    b"18446744073709551615",
    b"18446744073709551616",
    b"99999999999999999999999999999999999999",
    b"0.000000000000000000000000000001",
    b"NaN",
    b"\xff",
    b"\xfe\xff",
    b"\xc0\x80",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\xe2\x80\xae",
    b"%00",
    b"%ff",
    b"..",
    b"/",
    b".",
];

/// Fills `out` with one input for a target with these seeds and tokens.
pub fn generate(rng: &mut Rng, seeds: &[Vec<u8>], dict: &[Vec<u8>], out: &mut Vec<u8>) {
    out.clear();
    match rng.below(20) {
        // Random bytes, usually short.
        0 | 1 => {
            let len = if rng.one_in(8) {
                rng.below(4096)
            } else {
                rng.below(64)
            };
            out.extend((0..len).map(|_| rng.byte()));
        }
        // Tokens strung together.
        2 => {
            for _ in 0..rng.below(32) {
                push_token(rng, dict, out);
            }
        }
        // Deep nesting.
        3 if rng.one_in(4) => {
            let depth = 1 + rng.below(4000);
            let (open, close): (&[u8], &[u8]) = match rng.below(3) {
                0 => (b"[", b"]"),
                1 => (b"{\"a\":", b"}"),
                _ => (b"[[", b""),
            };
            if let Some(seed) = rng.pick(seeds) {
                out.extend_from_slice(&seed[..rng.below(seed.len() + 1)]);
            }
            for _ in 0..depth {
                out.extend_from_slice(open);
            }
            out.extend_from_slice(b"1");
            for _ in 0..depth {
                out.extend_from_slice(close);
            }
        }
        // A real sample, mutated.
        _ => {
            if let Some(seed) = rng.pick(seeds) {
                out.extend_from_slice(seed);
            }
            if !rng.one_in(10) || out.is_empty() {
                let most = if rng.one_in(4) { 16 } else { 4 };
                let rounds = 1 + rng.below(most);
                for _ in 0..rounds {
                    mutate(rng, seeds, dict, out);
                }
            }
        }
    }
    out.truncate(MAX_LEN);
}

fn push_token(rng: &mut Rng, dict: &[Vec<u8>], out: &mut Vec<u8>) {
    if !dict.is_empty() && rng.one_in(2) {
        if let Some(t) = rng.pick(dict) {
            out.extend_from_slice(t);
        }
    } else if let Some(t) = rng.pick(COMMON) {
        out.extend_from_slice(t);
    }
}

fn token(rng: &mut Rng, dict: &[Vec<u8>]) -> Vec<u8> {
    let mut t = Vec::new();
    push_token(rng, dict, &mut t);
    t
}

/// Applies one random mutation to `buf` in place.
pub fn mutate(rng: &mut Rng, seeds: &[Vec<u8>], dict: &[Vec<u8>], buf: &mut Vec<u8>) {
    let len = buf.len();
    match rng.below(14) {
        // Bit flip.
        0 if len > 0 => {
            let i = rng.below(len);
            buf[i] ^= 1 << rng.below(8);
        }
        // Random byte, or an interesting one.
        1 if len > 0 => {
            let i = rng.below(len);
            buf[i] = match rng.below(3) {
                0 => rng.byte(),
                1 => *rng
                    .pick(&[0u8, 0x7f, 0x80, 0xff, b'"', b'\\', b'\n', b'.', b'='])
                    .unwrap_or(&0),
                _ => buf[i].wrapping_add(1),
            };
        }
        // Truncate.
        2 if len > 0 => buf.truncate(rng.below(len)),
        // Delete a range.
        3 if len > 0 => {
            let start = rng.below(len);
            let end = (start + 1 + rng.below(16.min(len - start))).min(len);
            buf.drain(start..end);
        }
        // Insert random bytes.
        4 => {
            let at = rng.below(len + 1);
            let n = 1 + rng.below(16);
            let bytes: Vec<u8> = (0..n).map(|_| rng.byte()).collect();
            buf.splice(at..at, bytes);
        }
        // Insert a token.
        5 | 6 => {
            let at = rng.below(len + 1);
            let t = token(rng, dict);
            buf.splice(at..at, t);
        }
        // Repeat a range (repeated fields, repeated lines).
        7 if len > 0 => {
            let start = rng.below(len);
            let end = (start + 1 + rng.below(64.min(len - start))).min(len);
            let chunk = buf[start..end].to_vec();
            let times = if rng.one_in(8) {
                1 + rng.below(200)
            } else {
                1 + rng.below(3)
            };
            let mut insert = Vec::with_capacity(chunk.len() * times);
            for _ in 0..times {
                insert.extend_from_slice(&chunk);
            }
            buf.splice(end..end, insert);
        }
        // Splice with another sample.
        8 => {
            if let Some(other) = rng.pick(seeds) {
                let cut = rng.below(len + 1);
                let from = rng.below(other.len() + 1);
                buf.truncate(cut);
                buf.extend_from_slice(&other[from..]);
            }
        }
        // Replace a run of digits with an edge-of-range number.
        9 => {
            let starts: Vec<usize> = (0..len)
                .filter(|&i| buf[i].is_ascii_digit() && (i == 0 || !buf[i - 1].is_ascii_digit()))
                .collect();
            if let Some(&start) = rng.pick(&starts) {
                let end = (start..len)
                    .find(|&i| !buf[i].is_ascii_digit())
                    .unwrap_or(len);
                let number: &[u8] = rng
                    .pick(&[
                        &b"0"[..],
                        b"-1",
                        b"4294967296",
                        b"9223372036854775807",
                        b"-9223372036854775808",
                        b"18446744073709551616",
                        b"99999999999999999999999",
                        b"1e308",
                    ])
                    .copied()
                    .unwrap_or(b"0");
                buf.splice(start..end, number.iter().copied());
            }
        }
        // Swap two bytes.
        10 if len > 1 => {
            let (a, b) = (rng.below(len), rng.below(len));
            buf.swap(a, b);
        }
        // Overwrite with a big-endian/little-endian edge value (binary formats).
        11 if len > 0 => {
            let i = rng.below(len);
            let value: u32 = *rng
                .pick(&[
                    0u32,
                    1,
                    0xff,
                    0x100,
                    0xffff,
                    0x1_0000,
                    0x7fff_ffff,
                    0xffff_ffff,
                ])
                .unwrap_or(&0);
            let bytes = if rng.one_in(2) {
                value.to_be_bytes()
            } else {
                value.to_le_bytes()
            };
            let n = [1usize, 2, 4][rng.below(3)].min(len - i);
            let src = if rng.one_in(2) {
                &bytes[..n]
            } else {
                &bytes[4 - n..]
            };
            buf[i..i + n].copy_from_slice(src);
        }
        // Invalid UTF-8 somewhere.
        12 => {
            let at = rng.below(len + 1);
            let bad: &[u8] = rng
                .pick(&[
                    &b"\xff"[..],
                    b"\xc3",
                    b"\xe2\x82",
                    b"\xed\xa0\x80",
                    b"\xf8\x88\x80\x80\x80",
                ])
                .copied()
                .unwrap_or(b"\xff");
            buf.splice(at..at, bad.iter().copied());
        }
        // Duplicate a line (repeated keys in text formats).
        _ => {
            let lines: Vec<usize> = std::iter::once(0)
                .chain((0..len).filter(|&i| buf[i] == b'\n').map(|i| i + 1))
                .filter(|&i| i < len)
                .collect();
            if let Some(&start) = rng.pick(&lines) {
                let end = (start..len)
                    .find(|&i| buf[i] == b'\n')
                    .map_or(len, |i| i + 1);
                let line = buf[start..end].to_vec();
                let at = *rng.pick(&lines).unwrap_or(&0);
                buf.splice(at..at, line);
            }
        }
    }
}
