//! Files whose change can change a posture check on Linux.

pub const FILES: &[&str] = &[
    // OS version (a release upgrade).
    "/etc/os-release",
    // Packages installed or removed: pending/security updates, last update.
    "/var/lib/dpkg/status",
    "/var/lib/rpm/rpmdb.sqlite",
    "/var/lib/pacman/local",
    // A reboot needed after updates (Debian/Ubuntu).
    "/run/reboot-required",
    // Encrypted volumes configured.
    "/etc/crypttab",
    // Firewall configuration.
    "/etc/nftables.conf",
    "/etc/ufw/ufw.conf",
    "/etc/firewalld/firewalld.conf",
];
