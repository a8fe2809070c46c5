//! The demo's voice: numbered steps in plain language, with indented
//! details under each. It writes to any `Write` (the CLI passes stdout;
//! tests pass a buffer) so the library never prints by itself.
//!
//! Nothing secret is ever handed to it: tokens, keys and the admin token
//! stay inside the components; only facts (who, which check, which
//! address) are narrated.

use std::io::Write;

/// Numbered narration.
pub struct Narrator<'a> {
    out: &'a mut dyn Write,
    step: u32,
}

impl std::fmt::Debug for Narrator<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Narrator")
            .field("step", &self.step)
            .finish_non_exhaustive()
    }
}

impl<'a> Narrator<'a> {
    /// Narration to `out`.
    pub fn new(out: &'a mut dyn Write) -> Self {
        Self { out, step: 0 }
    }

    /// A new numbered step: `N. text`.
    pub fn step(&mut self, text: &str) {
        self.step += 1;
        let line = format!("\n{}. {text}", self.step);
        self.line(&line);
    }

    /// A detail of the current step, indented.
    pub fn detail(&mut self, text: &str) {
        for line in text.lines() {
            let line = format!("   {line}");
            self.line(&line);
        }
    }

    /// A line as is (headers, the closing summary).
    pub fn plain(&mut self, text: &str) {
        self.line(text);
    }

    fn line(&mut self, text: &str) {
        // A closed stdout (`sallyport demo | head`) must not stop the demo
        // halfway with components still running; the exit code still tells.
        let _ = writeln!(self.out, "{text}");
        let _ = self.out.flush();
    }
}

/// Shortens `text` to `max` characters for one-line summaries.
pub fn clip(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_numbered_and_details_indented() {
        let mut buf = Vec::new();
        {
            let mut n = Narrator::new(&mut buf);
            n.step("First");
            n.detail("a\nb");
            n.step("Second");
        }
        let text = String::from_utf8(buf).unwrap_or_default();
        assert_eq!(text, "\n1. First\n   a\n   b\n\n2. Second\n");
    }

    #[test]
    fn clip_shortens_long_text_only() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("abcdefghijkl", 5), "abcd…");
    }
}
