// The History view: the agent's timeline — what it decided and why, for
// the last 7 days, newest first — so a user (or helpdesk on the phone)
// can answer "why was I blocked at 10:42?". Also the support code the
// user reads out, with a copy button. Pure rendering over the entries the
// agent sent; nothing here decides anything.
import { h } from "./dom";
import type { TimelineEntry, TimelineKind } from "./types";

/** A person's word for each kind of entry. */
const KIND_LABELS: Record<TimelineKind, string> = {
  session: "Sign-in",
  posture: "Posture",
  verdict: "Verdict",
  grant: "Access",
  access: "Access",
  "step-up": "Sign-in",
  "tunnel-up": "Connected",
  "tunnel-down": "Disconnected",
  revocation: "Revoked",
  enrolment: "Device",
  broker: "Broker",
  notice: "Notice",
  update: "Update",
};

/** Kinds that mean something stopped working: shown as warnings. */
const BAD: ReadonlySet<TimelineKind> = new Set(["tunnel-down", "revocation", "access", "step-up"]);

/** `10:42` today, else `3 Dec 10:42`, in the user's locale and zone. */
export function stamp(rfc3339: string, now: Date = new Date()): string {
  const at = new Date(rfc3339);
  if (Number.isNaN(at.getTime())) return rfc3339;
  const time = at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return at.toDateString() === now.toDateString()
    ? time
    : `${at.toLocaleDateString([], { day: "numeric", month: "short" })} ${time}`;
}

/** One sentence per entry: `wiki: tunnel closed: disk encryption is off`. */
export function sentence(entry: TimelineEntry): string {
  const head = entry.app ? `${entry.app}: ${entry.what}` : entry.what;
  return entry.reason ? `${head}: ${entry.reason}` : head;
}

function bad(entry: TimelineEntry): boolean {
  return BAD.has(entry.kind) || (entry.kind === "verdict" && entry.what.startsWith("not compliant"));
}

/**
 * The History page: the support code (with `copy`, which reports back for
 * the announcement), then the entries, newest first.
 */
export function historyPage(
  entries: TimelineEntry[] | null,
  supportCode: string | undefined,
  copy: (code: string) => void,
): HTMLElement {
  const newestFirst = entries ? [...entries].reverse() : [];
  return h(
    "section",
    { class: "page", "aria-labelledby": "history-title" },
    h("h1", { id: "history-title", tabindex: -1 }, "History"),
    h(
      "p",
      {},
      "What Sallyport decided on this device and why, for the last 7 days: sign-ins, posture changes, verdicts, applications opened and closed with the reason.",
    ),
    supportCode
      ? h(
          "div",
          { class: "support", id: "support" },
          h("span", {}, "Support code "),
          h("code", { id: "support-code" }, supportCode),
          h(
            "button",
            { type: "button", id: "copy-support-code", onclick: () => copy(supportCode) },
            "Copy",
          ),
          h("p", { class: "hint" }, "Read it to your helpdesk: it lets them find this device's side of the story."),
        )
      : h("p", { class: "hint", id: "support" }, "The support code appears once this device is enrolled."),
    entries === null
      ? h("p", { role: "status" }, "Loading…")
      : newestFirst.length === 0
        ? h("p", { id: "history-empty" }, "Nothing recorded yet.")
        : h(
            "ol",
            { class: "timeline", id: "timeline", "aria-label": "Decisions, newest first" },
            newestFirst.map((entry) =>
              h(
                "li",
                { class: bad(entry) ? "entry bad" : "entry", "data-kind": entry.kind },
                h("time", { datetime: entry.at, title: new Date(entry.at).toLocaleString() }, stamp(entry.at)),
                h("span", { class: "kind" }, KIND_LABELS[entry.kind] ?? entry.kind),
                h("span", { class: "what" }, sentence(entry)),
              ),
            ),
          ),
  );
}
