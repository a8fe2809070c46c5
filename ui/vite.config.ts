// Two builds from one source: `dist/` (what Tauri embeds: index.html only)
// and, with `--mode test`, `dist-test/` whose test.html installs the mocked
// agent before the app starts. The mock never reaches the production bundle
// because nothing under src/ imports it.
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));

export default defineConfig(({ mode }) => {
  const test = mode === "test";
  return {
    clearScreen: false,
    // Relative asset URLs work both under tauri:// and a local preview server.
    base: "./",
    server: { port: 5173, strictPort: true },
    preview: { port: 4173, strictPort: true, host: "127.0.0.1" },
    build: {
      outDir: test ? "dist-test" : "dist",
      emptyOutDir: true,
      target: "es2022",
      // The preload polyfill is not needed in WebKitGTK/WebView2/WKWebView.
      modulePreload: { polyfill: false },
      rollupOptions: { input: here(test ? "test.html" : "index.html") },
    },
  };
});
