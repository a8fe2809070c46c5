// The window's only way to the agent: Tauri commands, each a thin relay of
// one control-protocol request (see src-tauri/src/commands.rs). Every call
// either resolves with the agent's data or rejects with an AgentError whose
// message is meant for the user.
import { invoke } from "@tauri-apps/api/core";
import type { AboutView, AppView, DeviceCodeView, PostureView, StatusView, TimelineEntry } from "./types";

export class AgentError extends Error {
  override name = "AgentError";
}

async function call<T>(command: string, args?: Record<string, unknown>): Promise<T> {
  try {
    return await invoke<T>(command, args);
  } catch (e) {
    // Commands reject with their error's message (a string).
    const message = typeof e === "string" ? e : e instanceof Error ? e.message : JSON.stringify(e);
    throw new AgentError(message);
  }
}

export const api = {
  status: () => call<StatusView>("status"),
  apps: () => call<AppView[]>("apps"),
  posture: () => call<PostureView>("posture"),
  recheck: () => call<null>("recheck"),
  /** The agent's timeline, oldest first (7 days). */
  history: () => call<TimelineEntry[]>("history"),
  connect: (app: string) => call<null>("connect", { app }),
  disconnect: (app: string) => call<null>("disconnect", { app }),
  /** Starts the browser sign-in; the agent opens the system browser. */
  signIn: () => call<null>("sign_in"),
  /** Starts a device-code sign-in and returns the code to show. */
  signInDevice: () => call<DeviceCodeView>("sign_in_device"),
  signOut: () => call<null>("sign_out"),
  /** Writes the redacted diagnostics bundle; resolves with its path. */
  exportDiagnostics: () => call<string>("export_diagnostics"),
  about: () => call<AboutView>("about"),
};

/**
 * What the app pushes on the "agent" event whenever the agent's state
 * changed (src-tauri/src/watch.rs `Update`): the window never polls.
 * `apps` is null when the catalogue was not asked again.
 */
export interface AgentUpdate {
  status: StatusView | null;
  apps: AppView[] | null;
  error: string | null;
}
export const AGENT_EVENT = "agent";

/** The commands above, by name: what src-tauri's capability must allow. */
export const COMMANDS = [
  "status",
  "apps",
  "posture",
  "recheck",
  "history",
  "connect",
  "disconnect",
  "sign_in",
  "sign_in_device",
  "sign_out",
  "export_diagnostics",
  "about",
] as const;
