//! Files whose change can change a posture check on macOS.

pub const FILES: &[&str] = &[
    // OS version (an update installed).
    "/System/Library/CoreServices/SystemVersion.plist",
    // Application firewall settings.
    "/Library/Preferences/com.apple.alf.plist",
    // Software Update state (pending updates).
    "/Library/Preferences/com.apple.SoftwareUpdate.plist",
];
