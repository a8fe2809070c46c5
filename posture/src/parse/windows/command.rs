//! The command lines Windows collectors run, as data.
//!
//! Keeping them here (not in the collectors) lets the pure `*_check`
//! functions quote the exact command in their evidence, and lets tests see
//! what runs on a real machine.
//!
//! Programs are named with `.exe`: Rust's `Command` on Windows looks in the
//! system directory before `PATH`, so `reg.exe` is System32's, not a file a
//! user dropped earlier in `PATH`.

/// `powershell.exe` switches: no profile scripts (speed, and a user profile
/// must not change what we measure), never prompt.
const POWERSHELL_SWITCHES: [&str; 3] = ["-NoProfile", "-NonInteractive", "-Command"];

/// One program and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    /// The program, e.g. `reg.exe`.
    pub program: &'static str,
    /// Its arguments, unquoted (the OS quotes them when spawning).
    pub args: Vec<String>,
}

impl CommandLine {
    /// `program args…`.
    pub fn new(program: &'static str, args: &[&str]) -> Self {
        CommandLine {
            program,
            args: args.iter().map(|arg| (*arg).to_owned()).collect(),
        }
    }

    /// `reg.exe query KEY` (all values and the immediate subkeys of KEY).
    pub fn reg_query(key: &str) -> Self {
        CommandLine::new("reg.exe", &["query", key])
    }

    /// `reg.exe query KEY /v VALUE` (one value).
    pub fn reg_query_value(key: &str, value: &str) -> Self {
        CommandLine::new("reg.exe", &["query", key, "/v", value])
    }

    /// `powershell.exe -NoProfile -NonInteractive -Command SCRIPT`.
    ///
    /// Scripts use single quotes only, so Windows argument quoting never has
    /// to escape a double quote inside them.
    pub fn powershell(script: &str) -> Self {
        let mut args: Vec<String> = POWERSHELL_SWITCHES
            .iter()
            .map(|arg| (*arg).to_owned())
            .collect();
        args.push(script.to_owned());
        CommandLine {
            program: "powershell.exe",
            args,
        }
    }

    /// The arguments as `&str`, for [`crate::probe::run`].
    pub fn arg_refs(&self) -> Vec<&str> {
        self.args.iter().map(String::as_str).collect()
    }

    /// The command as a person would type it (arguments with spaces quoted).
    pub fn display(&self) -> String {
        let mut line = self.program.to_owned();
        for arg in &self.args {
            line.push(' ');
            if arg.is_empty() || arg.contains(char::is_whitespace) {
                line.push('"');
                line.push_str(arg);
                line.push('"');
            } else {
                line.push_str(arg);
            }
        }
        line
    }

    /// An evidence line: the command and the raw line that decided a fact.
    pub fn evidence(&self, raw_line: &str) -> String {
        format!("ran `{}`: \"{}\"", self.display(), raw_line.trim())
    }

    /// An evidence line for a command whose output decided by what it lacked.
    pub fn evidence_note(&self, note: &str) -> String {
        format!("ran `{}`: {note}", self.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_arguments_with_spaces() {
        let cmd = CommandLine::reg_query(r"HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion");
        assert_eq!(
            cmd.display(),
            r#"reg.exe query "HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion""#
        );
        assert_eq!(
            cmd.evidence("  CurrentBuild    REG_SZ    22631\r"),
            r#"ran `reg.exe query "HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion"`: "CurrentBuild    REG_SZ    22631""#
        );
    }

    #[test]
    fn powershell_passes_the_script_as_one_argument() {
        let cmd = CommandLine::powershell("Get-Date | Out-String");
        assert_eq!(
            cmd.arg_refs(),
            [
                "-NoProfile",
                "-NonInteractive",
                "-Command",
                "Get-Date | Out-String"
            ]
        );
    }
}
