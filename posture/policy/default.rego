# Sallyport default posture policy.
#
# Input: the posture report, with checks keyed by id:
#   input.platform              "linux" | "windows" | "macos"
#   input.checks[<id>].status   "pass" | "fail" | "unknown"
#   input.checks[<id>].observed facts (see posture/FACTS.md)
# Output: `violations`, a set of {check, message, remediation}.
# The device is compliant when the set is empty.
#
# Fail closed: a required check that is missing or `unknown` is a violation.
package sallyport.posture

import rego.v1

# ---- Organisation settings: edit these, or ship your own policy. ----

# Checks that must be measured and pass.
required := {"os_version", "security_updates", "disk_encryption", "firewall", "screen_lock"}

# Minimum OS versions by platform id (numeric parts of the version).
# A platform that is not listed is not supported.
min_versions := {
	"debian": [12],
	"ubuntu": [22, 4],
	"fedora": [40],
	"rhel": [9],
	"rocky": [9],
	"almalinux": [9],
	"opensuse-leap": [15, 5],
	"windows": [10, 0, 19045], # Windows 10 22H2; Windows 11 is 10.0.22000+
	"macos": [14],
}

# A security update may stay pending this many days (time to reboot/patch).
max_security_pending_days := 14

# Package metadata older than this means the device stopped checking.
max_update_metadata_age_days := 14

# The screen must lock after at most this many seconds idle.
max_screen_lock_seconds := 900

# ---- Rules ----

checks := input.checks

violations contains v if {
	some id in required
	not checks[id]
	v := {
		"check": id,
		"message": sprintf("%s was not measured on this device", [id]),
		"remediation": "Update Sallyport, or contact IT if this persists.",
	}
}

violations contains v if {
	some id in required
	checks[id].status == "unknown"
	v := {
		"check": id,
		"message": sprintf("%s could not be determined: %s", [id, checks[id].unknown.detail]),
		"remediation": object.get(checks[id], "remediation", "Run Sallyport as the signed-in user, or contact IT with a diagnostics export."),
	}
}

# Checks whose `fail` has a grace period, judged by their own rules below.
graded := {"security_updates"}

violations contains v if {
	some id in required
	not id in graded
	checks[id].status == "fail"
	v := {
		"check": id,
		"message": checks[id].summary,
		"remediation": object.get(checks[id], "remediation", "Contact IT."),
	}
}

# Minimum OS version.
violations contains v if {
	c := checks.os_version
	c.status == "pass"
	not min_versions[c.observed.platform_id]
	v := {
		"check": "os_version",
		"message": sprintf("%s is not a supported operating system", [c.observed.name]),
		"remediation": "Use a supported operating system, or ask IT to add this one to the policy.",
	}
}

violations contains v if {
	c := checks.os_version
	c.status == "pass"
	minimum := min_versions[c.observed.platform_id]
	version_below(c.observed.version_parts, minimum)
	v := {
		"check": "os_version",
		"message": sprintf("%s %s is older than the minimum %s", [c.observed.name, c.observed.version, concat(".", [sprintf("%d", [n]) | some n in minimum])]),
		"remediation": "Upgrade the operating system to a supported release.",
	}
}

# Security updates: a grace period, then a violation.
violations contains v if {
	c := checks.security_updates
	c.observed.security_pending > 0
	c.observed.oldest_security_pending_days > max_security_pending_days
	v := {
		"check": "security_updates",
		"message": sprintf("%d security update(s) pending for more than %d days", [c.observed.security_pending, max_security_pending_days]),
		"remediation": object.get(c, "remediation", "Install the pending security updates."),
	}
}

violations contains v if {
	c := checks.security_updates
	c.observed.metadata_age_days > max_update_metadata_age_days
	v := {
		"check": "security_updates",
		"message": sprintf("update information is %d days old: this device has stopped checking for updates", [c.observed.metadata_age_days]),
		"remediation": "Refresh the update information (`sudo apt-get update`, or open Software Updates).",
	}
}

# Screen lock delay.
violations contains v if {
	c := checks.screen_lock
	c.status == "pass"
	c.observed.timeout_seconds > max_screen_lock_seconds
	v := {
		"check": "screen_lock",
		"message": sprintf("the screen locks after %d s idle; the maximum is %d s", [c.observed.timeout_seconds, max_screen_lock_seconds]),
		"remediation": sprintf("Set the screen to lock after %d minutes or less.", [max_screen_lock_seconds / 60]),
	}
}

# ---- Helpers ----

# The i-th part of a version, 0 when absent ("22.04" == "22.04.0").
version_part(parts, i) := parts[i]

version_part(parts, i) := 0 if not parts[i]

padded(parts) := [version_part(parts, i) | some i in numbers.range(0, 3)]

version_below(parts, minimum) if padded(parts) < padded(minimum)
