//! A sans-IO parser for `text/event-stream` (the HTML living standard's
//! server-sent events), enough for the broker's `/v1/events`: `event:`,
//! `data:` (multi-line joined with `\n`), `id:`, comments, CRLF or LF line
//! ends, and a blank line dispatching the event. Bytes go in as they arrive
//! from the socket, split anywhere; complete events come out.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field (`message` when absent).
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The last `id:` seen, for `Last-Event-ID` on reconnect.
    pub id: Option<String>,
}

/// Why the stream was given up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// A single line or event grew past the limit: a broken or hostile server.
    #[error("event stream line or event longer than {0} bytes")]
    TooLong(usize),
}

/// The incremental parser.
#[derive(Debug)]
pub struct SseParser {
    limit: usize,
    line: Vec<u8>,
    /// The previous chunk ended with `\r`: a following `\n` belongs to it.
    after_cr: bool,
    event: Option<String>,
    data: Option<String>,
    last_id: Option<String>,
}

impl SseParser {
    /// A parser refusing lines or events longer than `limit` bytes.
    pub fn new(limit: usize) -> Self {
        SseParser {
            limit,
            line: Vec::new(),
            after_cr: false,
            event: None,
            data: None,
            last_id: None,
        }
    }

    /// Feeds bytes; returns the events they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        let mut out = Vec::new();
        for &b in bytes {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\r' | b'\n' => {
                    self.after_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    if let Some(event) = self.line_done(&line)? {
                        out.push(event);
                    }
                }
                _ => {
                    if self.line.len() >= self.limit {
                        return Err(SseError::TooLong(self.limit));
                    }
                    self.line.push(b);
                }
            }
        }
        Ok(out)
    }

    fn line_done(&mut self, line: &[u8]) -> Result<Option<SseEvent>, SseError> {
        if line.is_empty() {
            return Ok(self.dispatch());
        }
        if line[0] == b':' {
            return Ok(None); // comment / keep-alive
        }
        let text = String::from_utf8_lossy(line);
        let (field, value) = match text.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (text.as_ref(), ""),
        };
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => {
                // Several `data:` lines make one value joined by newlines.
                let data = match self.data.as_mut() {
                    Some(data) => {
                        data.push('\n');
                        data
                    }
                    None => self.data.insert(String::new()),
                };
                if data.len() + value.len() > self.limit {
                    return Err(SseError::TooLong(self.limit));
                }
                data.push_str(value);
            }
            "id" if !value.contains('\0') => self.last_id = Some(value.to_owned()),
            _ => {} // `retry` and unknown fields are ignored
        }
        Ok(None)
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = self.event.take();
        let data = self.data.take()?;
        Some(SseEvent {
            event: event.unwrap_or_else(|| "message".to_owned()),
            data,
            id: self.last_id.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut parser = SseParser::new(1024);
        chunks
            .iter()
            .flat_map(|c| parser.feed(c).unwrap())
            .collect()
    }

    #[test]
    fn events_split_anywhere_come_out_whole() {
        let stream: &[u8] = b": keep-alive\r\nevent: grant-revoked\r\nid: 7\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\ndata: plain\n\n";
        let expected = vec![
            SseEvent {
                event: "grant-revoked".into(),
                data: "{\"a\":\n1}".into(),
                id: Some("7".into()),
            },
            SseEvent {
                event: "message".into(),
                data: "plain".into(),
                id: Some("7".into()),
            },
        ];
        assert_eq!(parse_all(&[stream]), expected);
        // Byte by byte, including a CRLF split between two chunks.
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(parse_all(&bytes), expected);
    }

    #[test]
    fn an_event_without_data_is_not_dispatched() {
        assert!(parse_all(&[b"event: ping\n\n"]).is_empty());
    }

    #[test]
    fn endless_lines_are_refused() {
        let mut parser = SseParser::new(16);
        assert_eq!(parser.feed(&[b'x'; 17]), Err(SseError::TooLong(16)));
        let mut parser = SseParser::new(16);
        let many = b"data: 0123456789\ndata: 0123456789\n";
        assert_eq!(parser.feed(many), Err(SseError::TooLong(16)));
    }
}
