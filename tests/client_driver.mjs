// Drives dieselengine's client from Node for tests/test_client.py: commands on stdin, one per
// line ("send TEXT", "json JSON", "close"), events on stdout as JSON lines.
import { createInterface } from "node:readline";

const [clientPath, url] = process.argv.slice(2);
const { connect } = await import(clientPath);
const out = (event) => process.stdout.write(JSON.stringify(event) + "\n");

const client = connect(url, { minDelay: 100, maxDelay: 800, factor: 2, jitter: 0.5 });
client.on("open", () => out({ event: "open", state: client.state }));
client.on("close", (info) => out({ event: "close", ...info, state: client.state, queued: client.queued }));
client.on("message", (data) => out({ event: "message", data }));
client.on("json", (value) => out({ event: "json", value }));

for await (const line of createInterface({ input: process.stdin })) {
  const [command, ...rest] = line.split(" ");
  const arg = rest.join(" ");
  if (command === "send") out({ event: "sent", ok: client.send(arg), state: client.state, queued: client.queued });
  else if (command === "json") out({ event: "sent", ok: client.sendJSON(JSON.parse(arg)) });
  else if (command === "close") { client.close(); break; }
}
process.exit(0);
