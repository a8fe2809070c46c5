// A stateful stand-in for the agent behind the Tauri commands, installed
// with @tauri-apps/api/mocks before the app starts (test.html only). It
// answers the same commands with the same JSON shapes as src-tauri, built
// from the fixtures next to it, and keeps just enough state for the flows
// the tests walk: signed out -> sign in -> connect -> posture fails ->
// tunnels close -> export diagnostics.
//
// Tests drive what a real peer would do on its own (the IdP finishing a
// device-code login, posture changing) through `window.__mockAgent`.
//
// The window never polls: src-tauri's watcher asks the agent and pushes
// each change as an "agent" event (AgentUpdate). The mock does the same
// for its own state, outside the mocked IPC, so `calls` holds only what
// the window itself asked.
import { emit } from "@tauri-apps/api/event";
import { mockIPC } from "@tauri-apps/api/mocks";
import type { AgentUpdate } from "../src/api";
import type { AccessView, AppView, DeviceCodeView, IdentityView, PostureView, Report, StatusView, TimelineEntry, TunnelView, Violation } from "../src/types";
import accessFixture from "./fixtures/access.json";
import appsFixture from "./fixtures/apps.json";
import deviceCodeFixture from "./fixtures/device-code.json";
import historyFixture from "./fixtures/history.json";
import postureCli from "./fixtures/posture-cli.json";
import statusFixture from "./fixtures/status.json";

const NOT_RUNNING = "The Sallyport agent is not running. Start it with `sallyport run`, or restart the Sallyport app.";
export const EXPORT_PATH = "/home/alice/Downloads/sallyport-diagnostics-20261123T102246Z.zip";

export interface MockAgent {
  identity: IdentityView;
  wanted: Set<string>;
  compliant: boolean;
  running: boolean;
  calls: { cmd: string; args: unknown }[];
  /** The IdP confirms the device-code (or browser) login. */
  completeSignIn(): void;
  /** Posture now violates the policy (the fixture's real violations). */
  failPosture(): void;
  /** The access policy now answers `app` with the named decision of fixtures/access.json. */
  setAccess(app: string, decision: keyof typeof accessFixture): void;
  /** The access decision per app the agent answers with (absent: the fixture's). */
  access: Map<string, AccessView>;
  /** Set while the agent's broker does not answer (what its status says). */
  brokerUnreachable: string | null;
  /** Emits an event to the window as the Rust side does (the tray's "navigate"). */
  emit(event: string, payload: unknown): Promise<void>;
  /** Pushes the current state now, changed or not (the app's watcher woken). */
  push(): Promise<void>;
  /** The timeline `history` answers with, oldest first. */
  timeline: TimelineEntry[];
}

declare global {
  interface Window {
    __mockAgent: MockAgent;
  }
}

const status = statusFixture as StatusView;
const signedInIdentity = status.identity;
const report = postureCli.report as Report;
const violations = postureCli.evaluation.violations as Violation[];

export function installMockAgent(options: { running: boolean }): MockAgent {
  let pendingSignIn = false;
  const agent: MockAgent = {
    identity: { state: "signed_out" },
    wanted: new Set(),
    compliant: true,
    running: options.running,
    calls: [],
    completeSignIn() {
      if (pendingSignIn) {
        agent.identity = signedInIdentity;
        // A new sign-in is what a step-up waits for: the agent asks again
        // and (here) the policy is satisfied.
        for (const [app, access] of agent.access) if (access.step_up) agent.access.delete(app);
      }
      pendingSignIn = false;
    },
    failPosture() {
      agent.compliant = false;
      const at = new Date().toISOString();
      const reason = violations.map((v) => `${v.check}: ${v.message}`).join("; ");
      agent.timeline.push({ at, kind: "verdict", what: "not compliant", reason });
      for (const app of agent.wanted) {
        agent.timeline.push({ at, kind: "tunnel-down", app, what: "tunnel closed", reason });
      }
    },
    setAccess(app, decision) {
      agent.access.set(app, accessFixture[decision] as AccessView);
    },
    access: new Map(),
    brokerUnreachable: null,
    emit: (event, payload) => emit(event, payload),
    push: () => emit("agent", update()),
    timeline: [...(historyFixture as TimelineEntry[])],
  };
  window.__mockAgent = agent;

  const signedIn = () => agent.identity.state === "valid";
  const minutesFromNow = (m: number) => new Date(Date.now() + m * 60000).toISOString();

  function tunnels(): TunnelView[] {
    return [...agent.wanted].map((app) => {
      const template = status.tunnels.find((t) => t.app === app);
      if (!template) throw new Error(`no tunnel fixture for ${app}`);
      const access = agent.access.get(app);
      if (access && !access.can_open) {
        return { ...template, state: "down", reason: access.reasons[0]?.message ?? null, forwards: [], socks: null, socks_username: undefined, socks_password: undefined, last_handshake: null, expires_at: null };
      }
      if (!agent.compliant) {
        return {
          ...template,
          state: "down",
          reason: `Closed: this device does not meet the policy (${violations.map((v) => v.check).join(", ")})`,
          forwards: [],
          socks: null,
          socks_username: undefined,
          socks_password: undefined,
          last_handshake: null,
          expires_at: null,
        };
      }
      return { ...template, last_handshake: template.bytes_in > 0 ? minutesFromNow(-1) : null, expires_at: minutesFromNow(30) };
    });
  }

  function statusView(): StatusView {
    return {
      identity: agent.identity,
      verdict: signedIn()
        ? { compliant: agent.compliant, violations: agent.compliant ? [] : violations, valid_until: minutesFromNow(30) }
        : null,
      tunnels: signedIn() ? tunnels() : [],
      posture_collected_at: report.collected_at,
      ...(agent.brokerUnreachable ? { broker_unreachable: agent.brokerUnreachable } : {}),
      ...(signedIn() ? { support_code: status.support_code } : {}),
    };
  }

  function appViews(): AppView[] {
    return (appsFixture as AppView[]).map((a) => ({ ...a, wanted: agent.wanted.has(a.id), access: agent.access.get(a.id) ?? a.access }));
  }

  function update(): AgentUpdate {
    return agent.running ? { status: statusView(), apps: appViews(), error: null } : { status: null, apps: null, error: NOT_RUNNING };
  }

  // The app's watcher: what changed reaches the window (src-tauri/src/tray.rs
  // `watch`). The mock's times move with the clock; they alone are no change.
  const key = (u: AgentUpdate) => JSON.stringify(u).replace(/"\d{4}-\d\d-\d\dT[^"]*"/g, '"time"');
  let pushed = key(update());
  window.setInterval(() => {
    const now = update();
    const text = key(now);
    if (text !== pushed) {
      pushed = text;
      void emit("agent", now);
    }
  }, 250);

  mockIPC(
    (cmd, args) => {
      agent.calls.push({ cmd, args });
      if (!agent.running) throw NOT_RUNNING;
      const app = (args as { app?: string } | undefined)?.app ?? "";
      switch (cmd) {
        case "about":
          return { version: "0.1.0", socket: "/run/user/1000/sallyport/agent.sock" };
        case "status":
          return statusView();
        case "apps":
          return appViews();
        case "posture":
          return { report, violations: agent.compliant ? [] : violations } satisfies PostureView;
        case "recheck":
          return null;
        case "history":
          return agent.timeline;
        case "sign_in":
          // A real browser login finishes when the user is done in the
          // browser; here it has by the next status poll.
          pendingSignIn = true;
          agent.completeSignIn();
          return null;
        case "sign_in_device":
          pendingSignIn = true;
          return deviceCodeFixture as DeviceCodeView;
        case "sign_out":
          agent.identity = { state: "signed_out" };
          agent.wanted.clear();
          return null;
        case "connect":
          if (!signedIn()) throw "Sign in first.";
          if (!(appsFixture as AppView[]).some((a) => a.id === app)) throw `no application "${app}" in the catalogue`;
          agent.wanted.add(app);
          return null;
        case "disconnect":
          agent.wanted.delete(app);
          return null;
        case "export_diagnostics":
          return EXPORT_PATH;
        default:
          throw `unknown command ${cmd}`;
      }
    },
    { shouldMockEvents: true },
  );
  return agent;
}
