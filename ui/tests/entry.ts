// test.html's entry: install the mocked agent, then start the real app.
// `?agent=down` starts with no agent answering.
import { installMockAgent } from "./mock-agent";

installMockAgent({ running: new URLSearchParams(location.search).get("agent") !== "down" });
await import("../src/main");
