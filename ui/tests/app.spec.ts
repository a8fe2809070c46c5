// The window in a real browser (Debian's Chromium) with the Tauri IPC
// mocked by tests/mock-agent.ts. Every test asserts what a person sees.
import { expect, test, type Page } from "@playwright/test";

const EXPORT_PATH = "/home/alice/Downloads/sallyport-diagnostics-20261123T102246Z.zip";

// Any console error (a CSP violation, an exception, a failed load) fails the test.
let problems: string[] = [];
test.beforeEach(async ({ page }) => {
  problems = [];
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(m.text());
  });
  page.on("pageerror", (e) => problems.push(e.message));
  page.on("request", (r) => {
    if (!r.url().startsWith("http://127.0.0.1:4173/")) problems.push(`remote request: ${r.url()}`);
  });
});
test.afterEach(() => {
  expect(problems, "console errors, CSP violations or remote requests").toEqual([]);
});

async function open(page: Page, query = ""): Promise<void> {
  await page.goto(`/test.html${query}`);
  await expect(page.getByRole("status").first()).not.toHaveText("Connecting to the agent…");
}

async function signIn(page: Page): Promise<void> {
  await open(page);
  await page.getByRole("button", { name: "Sign in with your browser" }).click();
  await expect(page.getByText("Signed in as alice@example.com")).toBeVisible();
}

test("signed out shows the sign-in screen; browser sign-in opens the applications", async ({ page }) => {
  await open(page);
  await expect(page.getByRole("heading", { level: 1, name: "Sign in to Sallyport" })).toBeVisible();
  await expect(page.locator("#summary")).toHaveText("Signed out");
  await page.getByRole("button", { name: "Sign in with your browser" }).click();
  await expect(page.getByText("Signed in as alice@example.com")).toBeVisible();
  await expect(page.getByRole("heading", { level: 1, name: "Applications" })).toBeVisible();
  await expect(page.getByRole("listitem").filter({ hasText: "Wiki" })).toContainText("Not connected");
  await expect(page.locator("#summary")).toHaveText("Compliant · 0 applications connected");

  await page.getByRole("button", { name: "Sign out" }).click();
  await expect(page.getByRole("heading", { level: 1, name: "Sign in to Sallyport" })).toBeVisible();
});

test("device-code fallback shows the code and where to enter it until the IdP confirms", async ({ page }) => {
  await open(page);
  await page.getByRole("button", { name: "Use a code instead" }).click();
  await expect(page.locator("#device-code")).toHaveText("WDJB-MJHT");
  await expect(page.getByText("https://idp.example.com/device", { exact: true })).toBeVisible();
  await expect(page.getByText(/expires in about 10 minutes/)).toBeVisible();
  // Still waiting after an update from the app: the code stays.
  await page.evaluate(() => window.__mockAgent.push());
  await expect(page.locator("#device-code")).toHaveText("WDJB-MJHT");
  await page.evaluate(() => window.__mockAgent.completeSignIn());
  await expect(page.getByText("Signed in as alice@example.com")).toBeVisible({ timeout: 8000 });
  await expect(page.locator("#device-code")).toHaveCount(0);
});

test("connect shows the local address, a click copies it, disconnect closes it", async ({ page, context }) => {
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: "http://127.0.0.1:4173" });
  await signIn(page);
  const wiki = page.getByRole("listitem").filter({ has: page.getByRole("heading", { name: "Wiki" }) });
  await wiki.getByRole("button", { name: "Connect Wiki" }).click();
  await expect(wiki.getByTestId("tunnel-state")).toHaveText("Connected");
  const address = wiki.getByRole("button", { name: "Copy local address 127.0.0.1:40123" });
  await expect(address).toHaveText("127.0.0.1:40123");
  await expect(wiki).toContainText("10.20.0.5:443/tcp at 127.0.0.1:40123");
  await expect(page.locator("#summary")).toHaveText("Compliant · 1 application connected");

  await address.click();
  await expect(page.locator("#toast")).toHaveText("Copied 127.0.0.1:40123");
  expect(await page.evaluate(() => navigator.clipboard.readText())).toBe("127.0.0.1:40123");

  await wiki.getByRole("button", { name: "Disconnect Wiki" }).click();
  await expect(wiki.getByTestId("tunnel-state")).toHaveText("Not connected");
  await expect(wiki.getByRole("button", { name: "Connect Wiki" })).toBeVisible();
});

test("posture page lists every check; a failing check shows its observed value, evidence and remediation", async ({ page }) => {
  await open(page);
  await page.getByRole("button", { name: "Posture" }).click();
  await expect(page.getByRole("heading", { level: 1, name: "Posture" })).toBeFocused();
  const checks = page.getByRole("list", { name: "Checks" }).locator(":scope > li");
  await expect(checks).toHaveCount(13);
  await expect(page.locator("#verdict")).toHaveText("✓ Compliant");

  const tpm = page.locator("#check-tpm");
  await expect(tpm.getByTestId("check-status")).toHaveText("✗ Fail");
  await expect(tpm).toContainText("Observed: no TPM found");
  await expect(tpm.getByRole("heading", { name: "How to fix" })).toBeVisible();
  await expect(tpm).toContainText("Enable the TPM in the firmware settings, or use a device with a TPM 2.0.");
  await expect(tpm.getByRole("list", { name: "Evidence" })).toContainText("/sys/class/tpm/tpm0 is absent");
  await expect(tpm.locator("time").last()).toHaveAttribute("datetime", "2026-11-23T10:22:46.386268981Z");

  const unknown = page.locator("#check-screen_lock");
  await expect(unknown.getByTestId("check-status")).toHaveText("? Unknown");
  await expect(unknown).toContainText("Could not be determined: not applicable — no desktop session");

  const pass = page.locator("#check-os_version");
  await expect(pass.getByTestId("check-status")).toHaveText("✓ Pass");
  await expect(pass.getByRole("heading", { name: "How to fix" })).toHaveCount(0);
});

test("a posture failure closes the tunnel with its reason and lists the violations first", async ({ page }) => {
  await signIn(page);
  await page.getByRole("button", { name: "Connect Wiki" }).click();
  await expect(page.locator("#app-wiki").getByTestId("tunnel-state")).toHaveText("Connected");

  await page.evaluate(() => window.__mockAgent.failPosture());
  await expect(page.locator("#app-wiki").getByTestId("tunnel-state")).toHaveText("Blocked", { timeout: 8000 });
  await expect(page.locator("#app-wiki")).toContainText("Closed: this device does not meet the policy (disk_encryption, firewall, screen_lock)");
  await expect(page.locator("#summary")).toHaveText("3 posture problems · 0 applications connected");

  await page.getByRole("button", { name: "See what to fix" }).click();
  await expect(page.locator("#verdict")).toHaveText("✗ 3 problems");
  const first = page.getByRole("list", { name: "Checks" }).locator(":scope > li").first();
  await expect(first.getByRole("heading", { level: 2 })).toHaveText("Disk encryption");
  await expect(first).toContainText("Required by policy");
  await expect(first).toContainText("Policy: /dev/vda is not encrypted");
  await expect(first).toContainText("Encrypt the system disk (LUKS");
});

test("tunnel page shows handshake, bytes and expiry", async ({ page }) => {
  await signIn(page);
  await page.getByRole("button", { name: "Connect Wiki" }).click();
  await expect(page.locator("#app-wiki").getByTestId("tunnel-state")).toHaveText("Connected");
  await page.getByRole("button", { name: "Tunnels" }).click();
  const wiki = page.locator("#tunnel-wiki");
  await expect(wiki.getByRole("heading", { name: "Wiki" })).toBeVisible();
  await expect(wiki.getByTestId("handshake")).toContainText("(1 min ago)");
  await expect(wiki.getByTestId("bytes-in")).toHaveText("1.5 MiB");
  await expect(wiki.getByTestId("bytes-out")).toHaveText("24.0 KiB");
  await expect(wiki.getByTestId("expires")).toContainText(/\(in (29|30) min\)/);
  // tunnels.socks_auth: the proxy's credential is shown to its user; a
  // tunnel without one shows none.
  await expect(wiki.getByTestId("socks-username")).toHaveText("sp-Q2xW8pLm");
  await expect(wiki.getByTestId("socks-password")).toHaveText("Zq8_kP2-vW9xYr4tLm7nBc3dFg6hJs1a");
});

test("diagnostics export shows where the bundle was saved", async ({ page }) => {
  await signIn(page);
  await page.getByRole("button", { name: "Diagnostics" }).click();
  await expect(page.getByText("Saved to")).toHaveCount(0);
  await page.getByRole("button", { name: "Export diagnostics" }).click();
  await expect(page.locator("#export-result")).toHaveText(`Saved to ${EXPORT_PATH}`);
  await expect(page.locator("#main")).toContainText("0.1.0");
  const calls = await page.evaluate(() => window.__mockAgent.calls.map((c) => c.cmd));
  expect(calls.filter((c) => c === "export_diagnostics")).toHaveLength(1);
});

test("an application the access policy refuses says why, what to do and when it opens again", async ({ page }) => {
  await signIn(page);
  await page.getByRole("button", { name: "Connect Wiki" }).click();
  await expect(page.locator("#app-wiki").getByTestId("tunnel-state")).toHaveText("Connected");
  await page.evaluate(() => window.__mockAgent.setAccess("git", "window-closed"));
  const git = page.locator("#app-git");
  const why = git.getByRole("group", { name: "Why Git server cannot open now" });
  await expect(why).toContainText("Cannot open now", { timeout: 8000 });
  await expect(why).toContainText("Git server is available 07:00–20:00 on weekdays.");
  await expect(why).toContainText("Try again when it opens, or ask IT for out-of-hours access.");
  await expect(git.getByTestId("opens-at")).toContainText("Opens again");
  await expect(git.getByTestId("opens-at").locator("time")).toHaveAttribute("datetime", "2099-11-24T06:00:00Z");
  await expect(git.getByRole("button", { name: "Sign in again" })).toHaveCount(0);
  // The other application is untouched.
  await expect(page.locator("#app-wiki").getByTestId("tunnel-state")).toHaveText("Connected");
  await expect(page.locator("#app-wiki").getByTestId("access")).toHaveCount(0);

  // Inside an open window: until when.
  await page.evaluate(() => window.__mockAgent.setAccess("git", "window-open"));
  await expect(git.getByTestId("access")).toContainText("Available until", { timeout: 8000 });
  await expect(git.getByTestId("access").locator("time")).toHaveAttribute("datetime", "2099-11-23T19:00:00Z");
  await expect(git.getByRole("group", { name: "Why Git server cannot open now" })).toHaveCount(0);
});

test("a step-up shows what the next sign-in needs; Sign in again asks for it and the app can open", async ({ page }) => {
  await signIn(page);
  await page.getByRole("button", { name: "Connect Wiki" }).click();
  await page.getByRole("button", { name: "Connect Git server" }).click();
  await page.evaluate(() => window.__mockAgent.setAccess("git", "step-up"));
  const git = page.locator("#app-git");
  await expect(git).toContainText("Git server needs a sign-in with a second factor in the last 10 minutes.", { timeout: 8000 });
  await expect(git).toContainText("This application needs a fresh sign-in (at most 10 min old).");
  await expect(git.getByTestId("tunnel-state")).toHaveText("Blocked");
  // The session stays valid: the window shows the applications, not the sign-in screen, and wiki stays up.
  await expect(page.getByText("Signed in as alice@example.com")).toBeVisible();
  await expect(page.locator("#app-wiki").getByTestId("tunnel-state")).toHaveText("Connected");

  await git.getByRole("button", { name: "Sign in again" }).click();
  await expect(git.getByRole("group", { name: "Why Git server cannot open now" })).toHaveCount(0, { timeout: 8000 });
  await expect(git.getByTestId("tunnel-state")).toHaveText("Connected");
  const calls = await page.evaluate(() => window.__mockAgent.calls.map((c) => c.cmd));
  expect(calls.filter((c) => c === "sign_in")).toHaveLength(2);
});

test("when the broker could not be asked, the applications say the answer is the device's own", async ({ page }) => {
  await signIn(page);
  await page.evaluate(() => window.__mockAgent.setAccess("wiki", "signed-out-agent"));
  await expect(page.locator("#access-source")).toHaveText("The access broker could not be asked just now; this is what this device last knew.", { timeout: 8000 });
  await expect(page.locator("#app-wiki")).toContainText("This device's verification expired and could not be renewed.");
});

test("an agent waiting for an unreachable broker says so, and the notice goes once it answers", async ({ page }) => {
  await open(page);
  await page.evaluate(() => {
    window.__mockAgent.brokerUnreachable = "access broker unreachable, retrying: cannot reach the access broker: connection refused";
  });
  await expect(page.locator("#broker-unreachable")).toHaveText(
    "Access broker unreachable, retrying: cannot reach the access broker: connection refused. Sallyport connects by itself once it answers.",
    { timeout: 8000 },
  );
  await page.evaluate(() => {
    window.__mockAgent.brokerUnreachable = null;
  });
  await expect(page.locator("#broker-unreachable")).toHaveCount(0, { timeout: 8000 });
});

test("with no agent running, the window says so instead of failing silently", async ({ page }) => {
  await page.goto("/test.html?agent=down");
  await expect(page.getByRole("alert")).toHaveText(/The Sallyport agent is not running/);
  await expect(page.locator("#summary")).toHaveText("Agent unavailable");
  await page.getByRole("button", { name: "Sign in with your browser" }).click();
  await expect(page.getByRole("alert")).toHaveText(/The Sallyport agent is not running/);
});

test("keyboard only: tab to a section, open it with Enter, focus lands on its heading", async ({ page }) => {
  await open(page);
  await page.keyboard.press("Tab");
  await expect(page.getByRole("link", { name: "Skip to content" })).toBeFocused();
  // Skip link, then the sections.
  await page.keyboard.press("Tab");
  await expect(page.locator("#nav-apps")).toBeFocused();
  await page.keyboard.press("Tab");
  await expect(page.locator("#nav-posture")).toBeFocused();
  await page.keyboard.press("Enter");
  await expect(page.getByRole("heading", { level: 1, name: "Posture" })).toBeFocused();
  await expect(page.locator("#nav-posture")).toHaveAttribute("aria-current", "page");
  // Focus survives an update from the app (the DOM is rebuilt when it changed).
  await page.locator("#recheck").focus();
  await page.evaluate(() => window.__mockAgent.push());
  await expect(page.locator("#summary")).toHaveText("Signed out");
  await expect(page.locator("#recheck")).toBeFocused();
  // Status changes are announced.
  await expect(page.locator("#summary")).toHaveAttribute("aria-live", "polite");
  // Every button has an accessible name.
  for (const b of await page.getByRole("button").all()) {
    expect((await b.textContent())?.trim() || (await b.getAttribute("aria-label"))).toBeTruthy();
  }
});

test("the window does not poll: it asks once, then shows what the app pushes", async ({ page }) => {
  await signIn(page);
  const asked = () => page.evaluate(() => window.__mockAgent.calls.filter((c) => c.cmd === "status" || c.cmd === "apps").length);
  const before = await asked();
  // Longer than the 3 s the window used to poll at: nothing is asked.
  await page.waitForTimeout(4000);
  expect(await asked()).toBe(before);
  // A change the app pushes is shown without asking.
  await page.evaluate(() => window.__mockAgent.failPosture());
  await expect(page.locator("#summary")).toHaveText("3 posture problems · 0 applications connected");
  expect(await asked()).toBe(before);
  // As is the agent going away.
  await page.evaluate(() => {
    window.__mockAgent.running = false;
  });
  await expect(page.getByRole("alert")).toHaveText(/The Sallyport agent is not running/);
  expect(await asked()).toBe(before);
});

test("a pushed change patches the page in place: what did not change stays, and its buttons act on the latest state", async ({ page }) => {
  await signIn(page);
  // Mark elements a push should keep: a replaced element loses the mark.
  await page.evaluate(() => {
    for (const sel of ["#sign-out", "main h1", "#nav-posture"]) (document.querySelector(sel) as HTMLElement & { kept?: boolean }).kept = true;
  });
  await page.locator("#nav-posture").focus();
  await page.evaluate(() => window.__mockAgent.failPosture());
  await expect(page.locator("#summary")).toHaveText("3 posture problems · 0 applications connected");
  const kept = await page.evaluate(() =>
    ["#sign-out", "main h1", "#nav-posture"].map((sel) => (document.querySelector(sel) as HTMLElement & { kept?: boolean }).kept === true),
  );
  expect(kept).toEqual([true, true, true]);
  await expect(page.locator("#nav-posture")).toBeFocused();
  // A kept button runs the latest render's action.
  await page.locator("#nav-posture").click();
  await expect(page.getByRole("heading", { level: 1, name: "Posture" })).toBeVisible();
  await page.getByRole("button", { name: "Sign out" }).click();
  await expect(page.locator("#summary")).toHaveText("Signed out");
});

test("the tray's navigate event opens the posture page", async ({ page }) => {
  await open(page);
  await page.evaluate(() => window.__mockAgent.emit("navigate", "posture"));
  await expect(page.getByRole("heading", { level: 1, name: "Posture" })).toBeVisible();
});

for (const scheme of ["light", "dark"] as const) {
  test(`follows the system colour scheme: ${scheme}`, async ({ page }) => {
    await page.emulateMedia({ colorScheme: scheme });
    await open(page);
    const background = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    const text = await page.evaluate(() => getComputedStyle(document.body).color);
    const luminance = (rgb: string) => {
      const [r, g, b] = (rgb.match(/\d+/g) ?? []).map(Number);
      return 0.2126 * (r ?? 0) + 0.7152 * (g ?? 0) + 0.0722 * (b ?? 0);
    };
    if (scheme === "dark") expect(luminance(background)).toBeLessThan(60);
    else expect(luminance(background)).toBeGreaterThan(200);
    expect(Math.abs(luminance(background) - luminance(text))).toBeGreaterThan(150);
    await page.screenshot({ path: `test-results/window-${scheme}.png`, fullPage: true });
  });
}

test("History shows what was decided and why, newest first, and a posture failure adds its entries", async ({ page, context }) => {
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: "http://127.0.0.1:4173" });
  await signIn(page);
  await page.locator("#nav-history").click();
  await expect(page.getByRole("heading", { level: 1, name: "History" })).toBeVisible();
  const entries = page.locator("#timeline li");
  // The fixture's real story: newest first, each with its reason.
  await expect(entries.first()).toContainText("echo: tunnel up (grant ucnwdIjQn6nem-AUieZp4A)");
  await expect(entries.filter({ hasText: "not compliant" })).toContainText("disk_encryption: The system disk is not encrypted.");
  const closed = entries.filter({ hasText: "tunnel closed (grant 75Pt5hOq3ViccJ6_ddJTYw)" });
  await expect(closed).toContainText("Access was revoked: the access policy changed");
  await expect(closed).toHaveClass(/bad/);
  await expect(closed.locator(".kind")).toHaveText("Disconnected");

  // The support code, copied for helpdesk.
  await expect(page.locator("#support-code")).toHaveText("BVEN Pka4");
  await page.getByRole("button", { name: "Copy" }).click();
  await expect.poll(() => page.evaluate(() => navigator.clipboard.readText())).toBe("BVEN Pka4");

  // Connect, then posture fails: the agent records it, the app pushes the
  // change, and the History view shows the new entries at the top.
  await page.locator("#nav-apps").click();
  await page.getByRole("button", { name: "Connect Wiki" }).click();
  await expect(page.getByRole("button", { name: "Disconnect Wiki" })).toBeVisible();
  await page.locator("#nav-history").click();
  await page.evaluate(() => window.__mockAgent.failPosture());
  await expect(entries.first()).toContainText("wiki: tunnel closed: disk_encryption:", { timeout: 8000 });
  await expect(entries.nth(1)).toContainText("not compliant: disk_encryption:");
});

test("Check again now asks the agent to measure posture at once", async ({ page }) => {
  await signIn(page);
  await page.locator("#nav-posture").click();
  await page.getByRole("button", { name: "Check again now" }).click();
  await expect.poll(() => page.evaluate(() => window.__mockAgent.calls.some((c) => c.cmd === "recheck"))).toBe(true);
});
