//! The Windows Installer source (`installers/windows/sallyport.wxs`, WiX 3
//! syntax as Debian's `wixl` builds it): the CLI, the device service
//! registered as an automatic LocalSystem service (`sallyportd --service`,
//! started at install, stopped and removed at uninstall), and one public
//! property per manageable setting (`DEVICE_SERVICE_SOCKET` defaulting to
//! the service's pipe), so that
//! `msiexec /i sallyport.msi /qn BROKER_URL=https://… AUTO_CONNECT=wiki`
//! configures a machine silently.
//!
//! Each property is written as a `REG_SZ` under
//! `HKLM\SOFTWARE\Policies\Sallyport` (the same key and value names as the
//! ADMX), which `agent::config::registry` reads by the schema's type: a
//! number, `0`/`1`, or a comma-separated list in text, and an empty value
//! as not set. Why text: an MSI writes every property of a component
//! whether or not the command line set it, and `wixl` has no component
//! conditions, so "unset" has to be an empty string, which only `REG_SZ`
//! can carry.
//!
//! The file sources and version are preprocessor variables
//! (`wixl -D Version=… -D BinDir=…`), so the generated file is the same
//! whatever was built. GUIDs are UUIDv5 of fixed names: the UpgradeCode
//! must never change (MajorUpgrade finds older installs by it).

use std::fmt::Write as _;

use agent::config::schema::{Key, Os};

use crate::admx::registry_key;
use crate::uuid5::{NAMESPACE, uuid5};
use crate::xml::escape;

/// The device service's named pipe (`sallyportd`'s default on Windows).
pub const DEVICE_SERVICE_PIPE: &str = r"\\.\pipe\sallyportd";

/// The product's UpgradeCode (UUIDv5 of `msi.upgrade-code`).
pub fn upgrade_code() -> String {
    uuid5(&NAMESPACE, "msi.upgrade-code")
}

/// The public MSI property that sets `key`: its last path segment in upper
/// case (`apps.auto_connect` → `AUTO_CONNECT`).
pub fn property(key: &Key) -> String {
    key.leaf().to_ascii_uppercase()
}

/// The keys the MSI can set: manageable on Windows.
pub fn msi_keys(keys: &[Key]) -> impl Iterator<Item = &Key> {
    keys.iter()
        .filter(|k| k.manageable && k.applies_to(Os::Windows))
}

/// The whole `.wxs`.
pub fn wxs(keys: &[Key]) -> String {
    let mut out = String::new();
    out.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    out.push_str("<!-- Generated from settings/src/schema.rs by `cargo run -p installers-gen`; do not edit.\n");
    out.push_str("     Built by installers/windows/build-msi: wixl -a x64 -D Version=X.Y.Z -D BinDir=DIR -->\n");
    out.push_str("<Wix xmlns=\"http://schemas.microsoft.com/wix/2006/wi\">\n");
    let _ = writeln!(
        out,
        "  <Product Id=\"*\" Name=\"Sallyport\" Language=\"1033\" Version=\"$(var.Version)\" Manufacturer=\"Sallyport\" UpgradeCode=\"{}\">",
        upgrade_code()
    );
    out.push_str("    <Package InstallerVersion=\"500\" Compressed=\"yes\" InstallScope=\"perMachine\" Description=\"Sallyport zero-trust client\" />\n");
    out.push_str("    <MajorUpgrade DowngradeErrorMessage=\"A newer version of Sallyport is already installed.\" />\n");
    out.push_str("    <Media Id=\"1\" Cabinet=\"sallyport.cab\" EmbedCab=\"yes\" />\n");
    // The agent talks to the service it installs unless IT says otherwise
    // (as the Linux packages' managed.toml does).
    let _ = writeln!(
        out,
        "    <Property Id=\"DEVICE_SERVICE_SOCKET\" Value=\"{}\" />",
        escape(DEVICE_SERVICE_PIPE)
    );
    out.push_str("    <Directory Id=\"TARGETDIR\" Name=\"SourceDir\">\n");
    out.push_str("      <Directory Id=\"ProgramFiles64Folder\">\n");
    out.push_str("        <Directory Id=\"INSTALLDIR\" Name=\"Sallyport\">\n");
    let _ = writeln!(
        out,
        "          <Component Id=\"Cli\" Guid=\"{}\" Win64=\"yes\">",
        uuid5(&NAMESPACE, "msi.component.cli")
    );
    out.push_str("            <File Id=\"sallyport.exe\" Name=\"sallyport.exe\" Source=\"$(var.BinDir)/sallyport.exe\" KeyPath=\"yes\" />\n");
    out.push_str("          </Component>\n");
    let _ = writeln!(
        out,
        "          <Component Id=\"DeviceService\" Guid=\"{}\" Win64=\"yes\">",
        uuid5(&NAMESPACE, "msi.component.device-service")
    );
    out.push_str("            <File Id=\"sallyportd.exe\" Name=\"sallyportd.exe\" Source=\"$(var.BinDir)/sallyportd.exe\" KeyPath=\"yes\" />\n");
    out.push_str("            <ServiceInstall Id=\"sallyportd\" Name=\"sallyportd\" DisplayName=\"Sallyport device service\" Description=\"Measures device health and signs it with the device key for Sallyport.\" Type=\"ownProcess\" Start=\"auto\" Account=\"LocalSystem\" ErrorControl=\"normal\" Arguments=\"--service\" />\n");
    out.push_str("            <ServiceControl Id=\"sallyportd\" Name=\"sallyportd\" Start=\"install\" Stop=\"both\" Remove=\"uninstall\" Wait=\"yes\" />\n");
    out.push_str("          </Component>\n");
    out.push_str("        </Directory>\n");
    out.push_str("      </Directory>\n");
    let _ = writeln!(
        out,
        "      <Component Id=\"ManagedSettings\" Guid=\"{}\" Win64=\"yes\">",
        uuid5(&NAMESPACE, "msi.component.managed-settings")
    );
    for key in msi_keys(keys) {
        let _ = writeln!(
            out,
            "        <RegistryValue Root=\"HKLM\" Key=\"{}\" Name=\"{}\" Type=\"string\" Value=\"[{}]\" />",
            escape(&registry_key(key)),
            key.leaf(),
            property(key)
        );
    }
    out.push_str("      </Component>\n");
    out.push_str("    </Directory>\n");
    out.push_str("    <Feature Id=\"Sallyport\" Title=\"Sallyport\" Level=\"1\">\n");
    out.push_str("      <ComponentRef Id=\"Cli\" />\n");
    out.push_str("      <ComponentRef Id=\"DeviceService\" />\n");
    out.push_str("      <ComponentRef Id=\"ManagedSettings\" />\n");
    out.push_str("    </Feature>\n");
    out.push_str("  </Product>\n");
    out.push_str("</Wix>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent::config::schema::KEYS;

    #[test]
    fn every_property_is_unique_and_names_a_windows_key() {
        let names: Vec<String> = msi_keys(KEYS).map(property).collect();
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(names.len(), unique.len(), "{names:?}");
        assert!(names.contains(&"BROKER_URL".to_owned()));
        assert!(names.contains(&"AUTO_CONNECT".to_owned()));
    }

    #[test]
    fn the_upgrade_code_never_changes() {
        // Changing it would make every new MSI install beside the old one
        // instead of upgrading it.
        assert_eq!(upgrade_code(), "4E19B525-DDBC-55EA-8CCC-AE14759280A5");
        assert!(wxs(KEYS).contains(&upgrade_code()));
    }
}
