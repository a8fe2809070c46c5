# Sallyport default access policy: may this user, on this device, open this
# application now, from here?
#
# The broker asks it for every grant, on every new verdict of a device with
# open grants, and when the policy is reloaded. It runs only after the
# device verdict (`sallyport.posture`) allowed the device: a non-compliant,
# expired or stale verdict is refused before this policy is asked, so this
# policy can only narrow access, never widen it.
#
# Input (broker/API.md, "The access policy", has every field):
#   input.user      {sub, email, groups}
#   input.device    {id, compliant, violations, key_assurance, platform,
#                    checks: {<id>: "pass"|"fail"|"unknown"}, enrolled_at}
#   input.app       {id, name, labels: {..}, owners: [..]}
#   input.sign_in   {amr, acr, auth_time, mfa, mfa_age_seconds, mfa_acr_values}
#   input.context   {time: {unix, zone, local, date, weekday, hour, minute,
#                    seconds_of_day}, source_ip, networks: [names],
#                    signals: {new_network, new_device, recent_denials,
#                    denial_burst}}
#
# Output: `decision`, an object:
#   allow                 true | false
#   reasons               a set of {message, remediation}: why not (shown to the user)
#   step_up               null, or {acr_values, max_age}: ask for a fresh sign-in first
#   max_lifetime_seconds  null, or the longest grant allowed
#   window                null, or {from: "07:00", to: "20:00", days: ["mon", ..],
#                         time_zone: "Europe/Paris"}: the broker refuses outside it,
#                         ends grants at its close, and tells the user when it opens
package sallyport.access

import rego.v1

default allow := true

# ---- The built-in rule: a new network on a sensitive app asks for MFA. ----

# A high-sensitivity application reached from a network this user never used
# before asks for a second factor within the last five minutes: a step-up,
# not a denial. A grant allowed from a network within five minutes of a
# multi-factor sign-in makes it known (`[access] known_network_mfa_seconds`),
# and it no longer asks.
high_sensitivity if input.app.labels.sensitivity == "high"

fresh_mfa(seconds) if {
	input.sign_in.mfa
	input.sign_in.mfa_age_seconds != null
	input.sign_in.mfa_age_seconds <= seconds
}

default step_up := null

step_up := {"acr_values": input.sign_in.mfa_acr_values, "max_age": 300} if {
	high_sensitivity
	input.context.signals.new_network
	not fresh_mfa(300)
}

reasons contains {
	"message": sprintf("%s is sensitive and this is a network you have not used it from before", [input.app.name]),
	"remediation": "Sign in again with your second factor to confirm it is you.",
} if step_up != null

default max_lifetime_seconds := null

default window := null

# ---- Examples: copy into your own policy and adapt. ----
#
# 1. A high-sensitivity app that needs the `finance` group and MFA within
#    the last hour:
#
#   allow := false if {
#   	input.app.id == "payroll"
#   	not "finance" in input.user.groups
#   }
#   reasons contains {"message": "Payroll is for the finance team.",
#   	"remediation": "Ask IT to add you to the finance group."} if {
#   	input.app.id == "payroll"
#   	not "finance" in input.user.groups
#   }
#   step_up := {"acr_values": input.sign_in.mfa_acr_values, "max_age": 3600} if {
#   	input.app.id == "payroll"
#   	not fresh_mfa(3600)
#   }
#
# 2. An app open 07:00-20:00, Paris time, on working days:
#
#   window := {"from": "07:00", "to": "20:00", "time_zone": "Europe/Paris",
#   	"days": ["mon", "tue", "wed", "thu", "fri"]} if input.app.id == "git"
#
# 3. An app closed to networks that are not named in the broker's
#    `[access.networks]`:
#
#   allow := false if {
#   	input.app.id == "admin-console"
#   	count(input.context.networks) == 0
#   }
#   reasons contains {"message": "The admin console opens only from the office or the VPN.",
#   	"remediation": "Connect from the office network or the corporate VPN."} if {
#   	input.app.id == "admin-console"
#   	count(input.context.networks) == 0
#   }

decision := {
	"allow": allow,
	"reasons": reasons,
	"step_up": step_up,
	"max_lifetime_seconds": max_lifetime_seconds,
	"window": window,
}
