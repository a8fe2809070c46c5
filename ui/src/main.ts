// The Sallyport window: sign-in, applications, posture, tunnels and
// diagnostics over the agent's state. Plain TypeScript: the window is a few
// forms and lists over one state, so a framework would add more code to
// audit than it saves. Everything shown comes from the agent through
// src/api.ts; nothing here decides policy. The window does not poll: it
// asks when it opens and after each action, and the app pushes every
// change ("agent" event, AgentUpdate).
import { listen } from "@tauri-apps/api/event";
import { AGENT_EVENT, api, type AgentUpdate } from "./api";
import { h, replaceChildren } from "./dom";
import { bytes, checkName, fact, relative, when } from "./format";
import { historyPage } from "./history";
import type { AccessView, AppView, Check, DeviceCodeView, PostureView, StatusView, StepUpView, TimelineEntry, TunnelView, UpdateStatus, Violation } from "./types";

type Page = "apps" | "posture" | "tunnels" | "history" | "diagnostics";
const PAGES: { id: Page; label: string }[] = [
  { id: "apps", label: "Applications" },
  { id: "posture", label: "Posture" },
  { id: "tunnels", label: "Tunnels" },
  { id: "history", label: "History" },
  { id: "diagnostics", label: "Diagnostics" },
];

interface State {
  page: Page;
  status: StatusView | null;
  apps: AppView[];
  posture: PostureView | null;
  /** The agent's timeline, asked for while the History page shows. */
  history: TimelineEntry[] | null;
  /** The last failed call, shown until the next success. */
  error: string | null;
  signingIn: "browser" | "device" | null;
  deviceCode: DeviceCodeView | null;
  exported: string | null;
  version: string;
  socket: string;
  busy: Set<string>;
}

const state: State = {
  page: pageFromHash() ?? "apps",
  status: null,
  apps: [],
  posture: null,
  history: null,
  error: null,
  signingIn: null,
  deviceCode: null,
  exported: null,
  version: "",
  socket: "",
  busy: new Set(),
};

function pageFromHash(): Page | null {
  const id = location.hash.replace(/^#/, "");
  return PAGES.some((p) => p.id === id) ? (id as Page) : null;
}

function signedIn(): boolean {
  return state.status?.identity.state === "valid";
}

function problems(): Violation[] {
  return state.status?.verdict?.violations ?? state.posture?.violations ?? [];
}

// ---------------------------------------------------------------- skeleton

const summary = h("p", { id: "summary", role: "status", "aria-live": "polite" });
const account = h("div", { class: "account" });
const nav = h("nav", { "aria-label": "Sections" });
const errorBox = h("div", { id: "error", role: "alert", class: "error", hidden: true });
const main = h("main", { id: "main" });
const announcer = h("p", { id: "announce", class: "visually-hidden", "aria-live": "polite" });

document.body.append(
  h("a", { class: "skip", href: "#main" }, "Skip to content"),
  h("header", { class: "top" }, h("span", { class: "brand" }, "Sallyport"), summary, account),
  nav,
  errorBox,
  main,
  announcer,
);

/** Says `text` to screen readers (and shows nothing else). */
function announce(text: string): void {
  announcer.textContent = "";
  window.setTimeout(() => (announcer.textContent = text), 50);
}

// ---------------------------------------------------------------- actions

async function run(key: string, action: () => Promise<void>): Promise<void> {
  if (state.busy.has(key)) return;
  state.busy.add(key);
  render();
  try {
    await action();
    state.error = null;
  } catch (e) {
    state.error = e instanceof Error ? e.message : String(e);
  } finally {
    state.busy.delete(key);
    render();
  }
}

let refreshing = false;
async function refresh(): Promise<void> {
  if (refreshing) return;
  refreshing = true;
  try {
    state.status = await api.status();
    if (signedIn()) {
      state.signingIn = null;
      state.deviceCode = null;
      state.apps = await api.apps();
    }
    if (state.page === "posture" || !state.status.verdict) state.posture = await api.posture();
    if (state.page === "history") state.history = await api.history();
    state.error = null;
  } catch (e) {
    state.error = e instanceof Error ? e.message : String(e);
  } finally {
    refreshing = false;
    render();
  }
}

/** A change the app pushed: shown at once, asking the agent only for the posture report the page shows. */
function applyUpdate(update: AgentUpdate): void {
  if (update.status) {
    const collected = state.status?.posture_collected_at;
    state.status = update.status;
    state.error = null;
    if (signedIn()) {
      state.signingIn = null;
      state.deviceCode = null;
    }
    if (update.apps) state.apps = update.apps;
    // Something changed: the timeline has a new entry.
    if (state.page === "history") {
      void api.history().then((history) => {
        state.history = history;
        render();
      }, () => undefined);
    }
    if ((state.page === "posture" && update.status.posture_collected_at !== collected) || !update.status.verdict) {
      void api.posture().then((posture) => {
        state.posture = posture;
        render();
      }, () => undefined);
    }
  } else if (update.error) {
    state.error = update.error;
  }
  render();
}

function go(page: Page, focus = true): void {
  state.page = page;
  if (location.hash !== `#${page}`) history.replaceState(null, "", `#${page}`);
  render();
  if (focus) main.querySelector<HTMLElement>("h1")?.focus();
  void refresh();
}

async function copy(text: string, what: string): Promise<void> {
  try {
    await navigator.clipboard.writeText(text);
    announce(`Copied ${what} ${text}`);
    flash(`Copied ${text}`);
  } catch {
    state.error = `Could not copy to the clipboard; the ${what} is ${text}`;
    render();
  }
}

const toast = h("p", { id: "toast", class: "toast", hidden: true });
document.body.append(toast);
let toastTimer = 0;
function flash(text: string): void {
  toast.textContent = text;
  toast.hidden = false;
  window.clearTimeout(toastTimer);
  toastTimer = window.setTimeout(() => (toast.hidden = true), 4000);
}

// ---------------------------------------------------------------- rendering

function render(): void {
  const identity = state.status?.identity;
  const count = problems().length;
  const up = state.status?.tunnels.filter((t) => t.state === "up").length ?? 0;
  let text: string;
  if (!state.status) text = state.error ? "Agent unavailable" : "Connecting to the agent…";
  else if (identity?.state === "valid") {
    const posture = state.status.verdict ? (count === 0 ? "Compliant" : `${count} posture problem${count === 1 ? "" : "s"}`) : "Posture not evaluated yet";
    text = `${posture} · ${up} application${up === 1 ? "" : "s"} connected`;
  } else if (identity?.state === "needs_reauth") text = "Sign-in needed";
  else text = "Signed out";
  if (summary.textContent !== text) summary.textContent = text;
  summary.className = !state.status ? "summary error-state" : count > 0 ? "summary warn-state" : "summary";

  replaceChildren(
    account,
    identity?.state === "valid"
      ? [
          h("span", { class: "user" }, `Signed in as ${identity.user}`),
          h("button", { id: "sign-out", type: "button", onclick: () => void run("sign-out", async () => {
            await api.signOut();
            announce("Signed out");
            await refresh();
          }) }, "Sign out"),
        ]
      : null,
  );

  replaceChildren(
    nav,
    h(
      "ul",
      {},
      PAGES.map((p) =>
        h(
          "li",
          {},
          h(
            "button",
            {
              id: `nav-${p.id}`,
              type: "button",
              "aria-current": state.page === p.id ? "page" : null,
              onclick: () => go(p.id),
            },
            p.id === "apps" && !signedIn() ? "Sign in" : p.label,
            p.id === "posture" && count > 0 ? h("span", { class: "count", "aria-label": `${count} problems` }, String(count)) : null,
          ),
        ),
      ),
    ),
  );

  errorBox.hidden = state.error === null;
  if (errorBox.textContent !== (state.error ?? "")) errorBox.textContent = state.error ?? "";

  const page =
    state.page === "apps"
      ? signedIn()
        ? appsPage()
        : signInPage()
      : state.page === "posture"
        ? posturePage()
        : state.page === "tunnels"
          ? tunnelsPage()
          : state.page === "history"
            ? historyPage(state.history, state.status?.support_code, (code) => void copy(code, "the support code"))
            : diagnosticsPage();
  // The agent runs without its broker (a laptop at boot, before the
  // network is up) and retries by itself: say so above every page.
  const unreachable = state.status?.broker_unreachable;
  if (unreachable) {
    page.prepend(
      h("p", { id: "broker-unreachable", class: "notice warn", role: "status" },
        `${unreachable.charAt(0).toUpperCase()}${unreachable.slice(1)}. Sallyport connects by itself once it answers.`),
    );
  }
  replaceChildren(main, page);
}

function button(id: string, label: string, onclick: () => void, cls = ""): HTMLButtonElement {
  const busy = state.busy.has(id);
  return h("button", { id, type: "button", class: cls || null, disabled: busy, "aria-busy": busy ? "true" : null, onclick }, label);
}

function signInPage(): HTMLElement {
  const identity = state.status?.identity;
  return h(
    "section",
    { class: "page signin", "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title", tabindex: -1 }, "Sign in to Sallyport"),
    h("p", {}, "Applications open only while you are signed in with a second factor and this device meets the security policy."),
    identity?.state === "needs_reauth"
      ? h("p", { class: "notice warn" }, `Sign in again${identity.user ? ` as ${identity.user}` : ""}: ${identity.reason}`)
      : null,
    h(
      "div",
      { class: "actions" },
      button("sign-in-browser", "Sign in with your browser", () =>
        void run("sign-in-browser", async () => {
          state.deviceCode = null;
          await api.signIn();
          state.signingIn = "browser";
          announce("Your browser opened for sign-in");
          await refresh();
        }), "primary"),
      button("sign-in-device", "Use a code instead", () =>
        void run("sign-in-device", async () => {
          state.deviceCode = await api.signInDevice();
          state.signingIn = "device";
          announce(`Your sign-in code is ${state.deviceCode.user_code}`);
        })),
    ),
    state.signingIn === "browser"
      ? h("p", { class: "notice", role: "status" }, "Finish signing in in your browser. This window updates when you are done.")
      : null,
    state.deviceCode ? deviceCodeBox(state.deviceCode) : null,
  );
}

function deviceCodeBox(code: DeviceCodeView): HTMLElement {
  const minutes = Math.max(1, Math.round(code.expires_in / 60));
  return h(
    "div",
    { class: "device-code", role: "group", "aria-labelledby": "device-code-title" },
    h("h2", { id: "device-code-title" }, "Sign in with a code"),
    h("p", {}, "On a phone or another computer, open ", h("strong", { class: "uri" }, code.verification_uri), " and enter this code:"),
    h("p", { class: "code", id: "device-code" }, code.user_code),
    h(
      "div",
      { class: "actions" },
      button("copy-code", "Copy code", () => void copy(code.user_code, "code")),
      code.verification_uri_complete
        ? button("copy-uri", "Copy link", () => void copy(code.verification_uri_complete ?? "", "link"))
        : null,
    ),
    h("p", { class: "meta" }, `The code expires in about ${minutes} minute${minutes === 1 ? "" : "s"}. This window updates when you are done.`),
  );
}

function tunnelFor(app: string): TunnelView | undefined {
  return state.status?.tunnels.find((t) => t.app === app);
}

function tunnelLabel(t: TunnelView | undefined): { text: string; cls: string } {
  if (!t) return { text: "Not connected", cls: "idle" };
  switch (t.state) {
    case "up":
      return { text: "Connected", cls: "up" };
    case "connecting":
      return { text: "Connecting…", cls: "connecting" };
    case "down":
      return { text: "Blocked", cls: "down" };
  }
}

function appsPage(): HTMLElement {
  const count = problems().length;
  return h(
    "section",
    { class: "page", "aria-labelledby": "apps-title" },
    h("h1", { id: "apps-title", tabindex: -1 }, "Applications"),
    count > 0
      ? h(
          "p",
          { class: "notice warn" },
          `This device does not meet the policy (${count} problem${count === 1 ? "" : "s"}), so applications stay closed. `,
          h("button", { type: "button", class: "link", id: "apps-see-posture", onclick: () => go("posture") }, "See what to fix"),
        )
      : null,
    state.apps.some((a) => a.access.source === "agent")
      ? h("p", { class: "meta", id: "access-source" }, "The access broker could not be asked just now; this is what this device last knew.")
      : null,
    state.apps.length === 0
      ? h("p", {}, "No applications are assigned to you yet.")
      : h("ul", { class: "cards" }, state.apps.map(appCard)),
  );
}

/** "a fresh sign-in, at most 10 min old" */
function stepUpText(step: StepUpView): string {
  const age = step.max_age === null ? "" : step.max_age < 120 ? `${step.max_age} s` : step.max_age < 7200 ? `${Math.round(step.max_age / 60)} min` : `${Math.round(step.max_age / 3600)} h`;
  return age ? `This application needs a fresh sign-in (at most ${age} old).` : "This application needs a fresh or stronger sign-in.";
}

/** Whether the app can open now and, if not, why, what to do and when. */
function accessBox(app: AppView): HTMLElement | null {
  const access: AccessView = app.access;
  if (access.can_open) {
    return access.closes_at
      ? h(
          "p",
          { class: "meta", "data-testid": "access" },
          "Available until ",
          h("time", { datetime: access.closes_at }, when(access.closes_at)),
          ` (${relative(access.closes_at)})`,
          access.reasons[0] ? `. ${access.reasons[0].message}` : "",
        )
      : null;
  }
  const key = `step-up-${app.id}`;
  return h(
    "div",
    { class: "access closed", role: "group", "aria-label": `Why ${app.name} cannot open now`, "data-testid": "access" },
    h("p", { class: "access-state" }, "Cannot open now"),
    access.reasons.length > 0
      ? h(
          "ul",
          { class: "reasons" },
          access.reasons.map((r) => h("li", {}, h("span", { class: "reason" }, r.message), r.remediation ? h("span", { class: "remediation" }, ` ${r.remediation}`) : null)),
        )
      : null,
    access.opens_at
      ? h("p", { class: "opens", "data-testid": "opens-at" }, "Opens again ", h("time", { datetime: access.opens_at }, when(access.opens_at)), ` (${relative(access.opens_at)})`)
      : null,
    access.step_up
      ? h(
          "div",
          { class: "step-up" },
          h("p", {}, stepUpText(access.step_up)),
          button(key, "Sign in again", () =>
            void run(key, async () => {
              // The agent asks the identity provider for what the app needs.
              await api.signIn();
              announce("Your browser opened for sign-in");
              await refresh();
            }), "primary"),
        )
      : null,
  );
}

function appCard(app: AppView): HTMLElement {
  const tunnel = tunnelFor(app.id);
  const label = tunnelLabel(app.wanted || tunnel ? tunnel : undefined);
  const open = app.wanted || (tunnel !== undefined && tunnel.state !== "down");
  const key = `toggle-${app.id}`;
  return h(
    "li",
    { class: "card app", id: `app-${app.id}`, "aria-labelledby": `app-${app.id}-name` },
    h(
      "div",
      { class: "card-head" },
      h("h2", { id: `app-${app.id}-name` }, app.name),
      h("span", { class: `badge ${label.cls}`, "data-testid": "tunnel-state" }, label.text),
    ),
    h("p", { class: "meta" }, `Targets: ${app.targets.join(", ") || "none"}`),
    accessBox(app),
    tunnel?.reason && app.access.can_open ? h("p", { class: "reason" }, tunnel.reason) : null,
    tunnel && tunnel.state === "up" && tunnel.forwards.length > 0
      ? h(
          "ul",
          { class: "forwards", "aria-label": `Local addresses for ${app.name}` },
          tunnel.forwards.map((f, i) =>
            h(
              "li",
              {},
              h("span", { class: "target" }, f.target),
              " at ",
              h(
                "button",
                { type: "button", class: "copy", id: `copy-${app.id}-${i}`, title: "Copy", "aria-label": `Copy local address ${f.local}`, onclick: () => void copy(f.local, "local address") },
                f.local,
              ),
            ),
          ),
        )
      : null,
    tunnel?.state === "up" && tunnel.socks
      ? h(
          "p",
          { class: "meta" },
          "SOCKS5 proxy: ",
          h("button", { type: "button", class: "copy", id: `copy-${app.id}-socks`, "aria-label": `Copy SOCKS5 proxy address ${tunnel.socks}`, onclick: () => void copy(tunnel.socks ?? "", "proxy address") }, tunnel.socks),
        )
      : null,
    h(
      "div",
      { class: "actions" },
      button(
        key,
        open ? `Disconnect ${app.name}` : `Connect ${app.name}`,
        () =>
          void run(key, async () => {
            if (open) await api.disconnect(app.id);
            else await api.connect(app.id);
            announce(open ? `Disconnecting ${app.name}` : `Connecting ${app.name}`);
            await refresh();
          }),
        open ? "" : "primary",
      ),
    ),
  );
}

function posturePage(): HTMLElement {
  const report = state.posture?.report ?? null;
  const violations = state.posture?.violations ?? state.status?.verdict?.violations ?? [];
  const count = violations.length;
  const order = { fail: 1, unknown: 2, pass: 3 } as const;
  const violated = (c: Check) => violations.some((v) => v.check === c.id);
  const checks = report ? [...report.checks].sort((a, b) => (violated(a) ? 0 : order[a.status]) - (violated(b) ? 0 : order[b.status])) : [];
  return h(
    "section",
    { class: "page", "aria-labelledby": "posture-title" },
    h("h1", { id: "posture-title", tabindex: -1 }, "Posture"),
    h(
      "div",
      { class: "posture-summary" },
      h(
        "p",
        { class: count === 0 ? "verdict ok" : "verdict bad", id: "verdict" },
        report || state.status?.verdict ? (count === 0 ? "✓ Compliant" : `✗ ${count} problem${count === 1 ? "" : "s"}`) : "Not measured yet",
      ),
      report
        ? h("p", { class: "meta" }, "Last collected ", h("time", { datetime: report.collected_at }, when(report.collected_at)), ` (${report.duration_ms} ms, ${report.platform}, agent ${report.agent_version})`)
        : null,
      button("recheck", "Check again now", () =>
        void run("recheck", async () => {
          await api.recheck();
          announce("Checking the device again");
          await refresh();
        })),
    ),
    report
      ? h("ul", { class: "checks", "aria-label": "Checks" }, checks.map((c) => checkCard(c, violations.filter((v) => v.check === c.id), report.collected_at)))
      : h("p", {}, "The agent has not measured this device yet."),
  );
}

function checkCard(check: Check, violations: Violation[], collectedAt: string): HTMLElement {
  const statusText = { pass: "Pass", fail: "Fail", unknown: "Unknown" }[check.status];
  const icon = { pass: "✓", fail: "✗", unknown: "?" }[check.status];
  const remediation = violations[0]?.remediation ?? (check.status !== "pass" ? check.remediation : null);
  const observed = Object.entries(check.observed);
  const bad = violations.length > 0 || check.status === "fail";
  return h(
    "li",
    { class: `card check ${check.status}${violations.length > 0 ? " violated" : ""}`, id: `check-${check.id}`, "aria-labelledby": `check-${check.id}-name` },
    h(
      "div",
      { class: "card-head" },
      h("h2", { id: `check-${check.id}-name` }, checkName(check.id)),
      h("span", { class: `badge ${check.status}`, "data-testid": "check-status" }, `${icon} ${statusText}`),
      violations.length > 0 ? h("span", { class: "badge violated" }, "Required by policy") : null,
    ),
    h("p", { class: "observed" }, h("span", { class: "label" }, "Observed: "), check.summary),
    violations.map((v) => h("p", { class: "violation" }, h("span", { class: "label" }, "Policy: "), v.message)),
    check.unknown ? h("p", { class: "unknown" }, h("span", { class: "label" }, "Could not be determined: "), `${check.unknown.kind.replace(/_/g, " ")} — ${check.unknown.detail}`) : null,
    remediation
      ? h("div", { class: "remediation" }, h("h3", {}, "How to fix"), h("p", {}, remediation))
      : null,
    h(
      "details",
      { open: bad && check.evidence.length > 0 ? true : null },
      h("summary", {}, "Evidence and observed values"),
      observed.length > 0
        ? h("dl", { class: "facts" }, observed.map(([k, v]) => [h("dt", {}, k), h("dd", {}, fact(v))]))
        : h("p", { class: "meta" }, "No observed values."),
      check.evidence.length > 0
        ? h("ul", { class: "evidence", "aria-label": "Evidence" }, check.evidence.map((e) => h("li", {}, e)))
        : h("p", { class: "meta" }, "No evidence recorded."),
    ),
    h("p", { class: "meta" }, "Check ", h("code", {}, check.id), " · collected ", h("time", { datetime: collectedAt }, when(collectedAt))),
  );
}

function tunnelsPage(): HTMLElement {
  const tunnels = state.status?.tunnels ?? [];
  const name = (id: string) => state.apps.find((a) => a.id === id)?.name ?? id;
  return h(
    "section",
    { class: "page", "aria-labelledby": "tunnels-title" },
    h("h1", { id: "tunnels-title", tabindex: -1 }, "Tunnels"),
    tunnels.length === 0
      ? h("p", {}, "No application is open. Connect one on the Applications page.")
      : h(
          "ul",
          { class: "cards" },
          tunnels.map((t) => {
            const label = tunnelLabel(t);
            return h(
              "li",
              { class: "card tunnel", id: `tunnel-${t.app}`, "aria-labelledby": `tunnel-${t.app}-name` },
              h("div", { class: "card-head" }, h("h2", { id: `tunnel-${t.app}-name` }, name(t.app)), h("span", { class: `badge ${label.cls}` }, label.text)),
              t.reason ? h("p", { class: "reason" }, t.reason) : null,
              h(
                "dl",
                { class: "facts" },
                h("dt", {}, "Last handshake"),
                h("dd", { "data-testid": "handshake" }, t.last_handshake ? [h("time", { datetime: t.last_handshake }, when(t.last_handshake)), ` (${relative(t.last_handshake)})`] : "none yet"),
                h("dt", {}, "Received"),
                h("dd", { "data-testid": "bytes-in" }, bytes(t.bytes_in)),
                h("dt", {}, "Sent"),
                h("dd", { "data-testid": "bytes-out" }, bytes(t.bytes_out)),
                h("dt", {}, "Access expires"),
                h("dd", { "data-testid": "expires" }, t.expires_at ? [h("time", { datetime: t.expires_at }, when(t.expires_at)), ` (${relative(t.expires_at)})`] : "—"),
                h("dt", {}, "SOCKS5 proxy"),
                h("dd", {}, t.socks ?? "—"),
                t.socks_username ? h("dt", {}, "SOCKS5 username") : null,
                t.socks_username ? h("dd", { "data-testid": "socks-username" }, t.socks_username) : null,
                t.socks_password ? h("dt", {}, "SOCKS5 password") : null,
                t.socks_password ? h("dd", { "data-testid": "socks-password" }, t.socks_password) : null,
                h("dt", {}, "Forwards"),
                h("dd", {}, t.forwards.length ? t.forwards.map((f) => `${f.local} → ${f.target}`).join("; ") : "—"),
              ),
            );
          }),
        ),
  );
}

function diagnosticsPage(): HTMLElement {
  const identity = state.status?.identity;
  return h(
    "section",
    { class: "page", "aria-labelledby": "diagnostics-title" },
    h("h1", { id: "diagnostics-title", tabindex: -1 }, "Diagnostics"),
    h("p", {}, "For helpdesk: one redacted bundle with every posture check and its evidence, the sign-in state (never tokens or keys), tunnels with byte counts, the last 7 days of decisions with their reasons (History), the recent logs, the settings, and a check of the connection to the access broker."),
    h(
      "div",
      { class: "actions" },
      button("export", "Export diagnostics", () =>
        void run("export", async () => {
          state.exported = await api.exportDiagnostics();
          announce(`Diagnostics saved to ${state.exported}`);
        }), "primary"),
    ),
    state.exported
      ? h("p", { class: "notice", id: "export-result", role: "status" }, "Saved to ", h("code", {}, state.exported))
      : null,
    h("h2", {}, "Sign-in"),
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "State"),
      h("dd", {}, identity ? identity.state.replace(/_/g, " ") : "unknown"),
      identity?.state === "valid"
        ? [h("dt", {}, "User"), h("dd", {}, identity.user), h("dt", {}, "Second factor"), h("dd", {}, identity.mfa), h("dt", {}, "Session ends"), h("dd", {}, when(identity.expires_at))]
        : null,
      identity?.state === "needs_reauth" ? [h("dt", {}, "Reason"), h("dd", {}, identity.reason)] : null,
      h("dt", {}, "Verdict valid until"),
      h("dd", {}, when(state.status?.verdict?.valid_until)),
    ),
    h("h2", { id: "about" }, "About"),
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "Sallyport"),
      h("dd", {}, state.version || "—"),
      h("dt", {}, "Agent socket"),
      h("dd", {}, state.socket || "—"),
      h("dt", {}, "Support code"),
      h("dd", { id: "about-support-code" }, state.status?.support_code ?? "— (not enrolled yet)"),
      h("dt", {}, "Updates"),
      h("dd", { id: "about-updates" }, updateText(state.status?.update)),
    ),
  );
}

/** The device service's updater in words. */
function updateText(update: UpdateStatus | undefined): string {
  if (!update) return "managed by your organisation (no device service)";
  const p = update.phase;
  const text =
    p.state === "off"
      ? "off"
      : p.state === "up_to_date"
        ? `up to date (${update.running})`
        : p.state === "available"
          ? `update available: ${p.version}${p.required ? " (required)" : ""}`
          : p.state === "installing"
            ? `installing ${p.version}`
            : p.state === "updated"
              ? `updated to ${p.to}`
              : p.state === "refused"
                ? `an update was refused: ${p.reason}`
                : `the last check failed: ${p.reason}`;
  return update.last_check ? `${text} (checked ${when(update.last_check)})` : text;
}

// ---------------------------------------------------------------- start

window.addEventListener("hashchange", () => {
  const page = pageFromHash();
  if (page && page !== state.page) go(page);
});

// The tray menu asks the window to show a page ("Posture: 2 problems").
listen<string>("navigate", (event) => {
  const page = PAGES.find((p) => p.id === event.payload)?.id;
  if (page) go(page);
}).catch(() => undefined);

api
  .about()
  .then((about) => {
    state.version = about.version;
    state.socket = about.socket;
    render();
  })
  .catch(() => undefined);

listen<AgentUpdate>(AGENT_EVENT, (event) => applyUpdate(event.payload)).catch(() => undefined);

render();
void refresh();
