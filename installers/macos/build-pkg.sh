#!/bin/bash
# Builds the macOS installer package (runs on macOS only: pkgbuild and
# productbuild are Apple's). It does not compile anything: pass the built
# pieces.
#
#   installers/macos/build-pkg.sh --sallyportd PATH --app PATH/Sallyport.app \
#       --version 0.1.0 [--sign "Developer ID Installer: ..."] [--out DIR]
#
# Lays out the payload
#   /usr/local/libexec/sallyportd
#   /Library/LaunchDaemons/com.sallyport.sallyportd.plist
#   /Library/LaunchAgents/com.sallyport.app.plist
#   /Applications/Sallyport.app
# with scripts/preinstall and scripts/postinstall, and writes
# OUT/sallyport-VERSION.pkg (a product archive, what Jamf/Kandji/Intune take).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

sallyportd="" app="" version="" sign="" out="$PWD"
while [ $# -gt 0 ]; do
  case "$1" in
    --sallyportd) sallyportd="$2"; shift 2 ;;
    --app) app="$2"; shift 2 ;;
    --version) version="$2"; shift 2 ;;
    --sign) sign="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
[ -n "$sallyportd" ] && [ -n "$app" ] && [ -n "$version" ] || {
  echo "usage: $0 --sallyportd PATH --app PATH/Sallyport.app --version X.Y.Z [--sign IDENTITY] [--out DIR]" >&2
  exit 2
}
command -v pkgbuild >/dev/null && command -v productbuild >/dev/null || {
  echo "pkgbuild/productbuild not found: build-pkg.sh runs on macOS" >&2
  exit 1
}
[ -f "$sallyportd" ] || { echo "no sallyportd binary at $sallyportd" >&2; exit 1; }
[ -d "$app" ] || { echo "no app bundle at $app" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
root="$work/root"
install -d -m 0755 "$root/usr/local/libexec" "$root/Library/LaunchDaemons" \
  "$root/Library/LaunchAgents" "$root/Applications"
install -m 0755 "$sallyportd" "$root/usr/local/libexec/sallyportd"
install -m 0644 "$here/com.sallyport.sallyportd.plist" "$root/Library/LaunchDaemons/"
install -m 0644 "$here/com.sallyport.app.plist" "$root/Library/LaunchAgents/"
ditto "$app" "$root/Applications/Sallyport.app"
plutil -lint "$root/Library/LaunchDaemons/com.sallyport.sallyportd.plist" \
  "$root/Library/LaunchAgents/com.sallyport.app.plist"

pkgbuild --root "$root" --identifier com.sallyport.pkg --version "$version" \
  --scripts "$here/scripts" --ownership recommended "$work/sallyport-component.pkg"

sign_args=()
[ -n "$sign" ] && sign_args=(--sign "$sign")
mkdir -p "$out"
# ${a[@]+...}: macOS bash 3.2 calls an empty array unbound under `set -u`.
productbuild --package "$work/sallyport-component.pkg" ${sign_args[@]+"${sign_args[@]}"} \
  "$out/sallyport-$version.pkg"
echo "wrote $out/sallyport-$version.pkg"
