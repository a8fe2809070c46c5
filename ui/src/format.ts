// Pure formatting helpers (no DOM), shared by the pages.

/** `1536` -> `1.5 KiB`. */
export function bytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** An RFC 3339 time as the user's locale shows it; the raw text when unparseable. */
export function when(rfc3339: string | null | undefined): string {
  if (!rfc3339) return "never";
  const date = new Date(rfc3339);
  return Number.isNaN(date.getTime()) ? rfc3339 : date.toLocaleString();
}

/** How far `rfc3339` is from `now`, e.g. `in 55 min`, `3 min ago`. */
export function relative(rfc3339: string | null | undefined, now: Date = new Date()): string {
  if (!rfc3339) return "";
  const t = new Date(rfc3339).getTime();
  if (Number.isNaN(t)) return "";
  const minutes = Math.round((t - now.getTime()) / 60000);
  const abs = Math.abs(minutes);
  const text = abs < 1 ? "less than a minute" : abs < 120 ? `${abs} min` : `${Math.round(abs / 60)} h`;
  if (abs < 1) return minutes >= 0 ? `in ${text}` : "just now";
  return minutes >= 0 ? `in ${text}` : `${text} ago`;
}

const CHECK_NAMES: Record<string, string> = {
  os_version: "Operating system version",
  security_updates: "Security updates",
  last_update: "Last update installed",
  reboot_pending: "Restart pending",
  disk_encryption: "Disk encryption",
  firewall: "Firewall",
  screen_lock: "Screen lock",
  antivirus: "Antivirus",
  secure_boot: "Secure Boot",
  device_identity: "Device identity",
  tpm: "TPM",
  enrollment: "Management enrolment",
  agent_version: "Sallyport version",
};

/** A person's name for a check id; the id itself for checks this UI does not know. */
export function checkName(id: string): string {
  return CHECK_NAMES[id] ?? id;
}

/** An observed fact as one line of text. */
export function fact(value: unknown): string {
  if (value === null || value === undefined) return "—";
  if (typeof value === "string") return value;
  if (Array.isArray(value)) return value.length === 0 ? "(none)" : value.map(fact).join(", ");
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}
