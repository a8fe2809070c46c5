// UI tests in a real browser: Debian's Chromium (/usr/bin/chromium, or
// $CHROMIUM) against the test build (dist-test/, the app with a mocked
// agent) served locally by `vite preview`. No browser is downloaded.
import { defineConfig } from "@playwright/test";

export default defineConfig({
  testDir: "tests",
  testMatch: "*.spec.ts",
  timeout: 30_000,
  expect: { timeout: 5_000 },
  fullyParallel: false,
  workers: 1,
  retries: 0,
  forbidOnly: true,
  reporter: [["list"]],
  outputDir: "test-results",
  use: {
    baseURL: "http://127.0.0.1:4173",
    headless: true,
    trace: "retain-on-failure",
    screenshot: "only-on-failure",
    launchOptions: {
      executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
      // --no-sandbox: CI runs as root. The rest keep Chromium off the network
      // it does not have here (updates, sync, field trials).
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
      ],
    },
  },
  webServer: {
    command: "npx vite preview --mode test",
    url: "http://127.0.0.1:4173/test.html",
    reuseExistingServer: false,
    timeout: 30_000,
  },
});
