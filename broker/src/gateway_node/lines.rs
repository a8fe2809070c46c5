//! The sync stream cut into lines, bounded: a broker (or whatever answers
//! in its place) that sends a line longer than [`MAX_LINE`] is cut off
//! rather than buffered without end.

/// The longest line accepted: a full set of 10,000 peers (about 1.5 MB) fits ten times over.
pub const MAX_LINE: usize = 16 * 1024 * 1024;

/// A line was longer than allowed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a sync line is longer than {0} bytes")]
pub struct TooLong(pub usize);

/// Bytes in, complete lines out.
#[derive(Debug)]
pub struct Lines {
    pending: Vec<u8>,
    max: usize,
}

impl Lines {
    /// Lines of at most `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            pending: Vec::new(),
            max,
        }
    }

    /// Adds `bytes`; returns the lines they complete (without the newline,
    /// empty lines skipped).
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Vec<u8>>, TooLong> {
        self.pending.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).take(end).collect();
            if !line.is_empty() {
                out.push(line);
            }
        }
        if self.pending.len() > self.max {
            return Err(TooLong(self.max));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_across_chunks_come_out_whole() {
        let mut lines = Lines::new(16);
        assert!(lines.push(b"{\"a\"").unwrap().is_empty());
        assert_eq!(
            lines.push(b":1}\n\n{}\n{").unwrap(),
            vec![b"{\"a\":1}".to_vec(), b"{}".to_vec()]
        );
        assert_eq!(lines.push(b"}\n").unwrap(), vec![b"{}".to_vec()]);
    }

    #[test]
    fn a_line_without_end_is_refused() {
        let mut lines = Lines::new(8);
        assert_eq!(lines.push(b"0123456789"), Err(TooLong(8)));
    }
}
