// Bun peer: native pub/sub. publish() skips the sender natively, so it is "broadcastExcept".
// Usage: bun bun_pubsub.js PORT [--tls CERT KEY] [--deflate]
//   --tls: wss:// with this certificate and key (PEM); --deflate: perMessageDeflate: true, and every
//   publish and send asks for compression.
const port = Number(process.argv[2] || 8080);
const args = process.argv.slice(3);
const tlsAt = args.indexOf("--tls");
const tls = tlsAt >= 0 ? { cert: Bun.file(args[tlsAt + 1]), key: Bun.file(args[tlsAt + 2]) } : undefined;
const perMessageDeflate = args.includes("--deflate");

Bun.serve({
  hostname: "127.0.0.1",
  port,
  tls,
  fetch(req, server) {
    const path = new URL(req.url).pathname;
    if (path === "/healthz") return new Response("ok");
    if ((path === "/ws/chat" || path === "/ws/echo") && server.upgrade(req, { data: { chat: path === "/ws/chat" } })) {
      return undefined;
    }
    return new Response("not found", { status: 404 });
  },
  websocket: {
    perMessageDeflate,
    open(ws) {
      if (ws.data.chat) ws.subscribe("chat");
    },
    message(ws, message) {
      // Bun compresses a message only when asked (the last argument), once per publish.
      if (ws.data.chat) ws.publish("chat", message, perMessageDeflate);
      else ws.send(message, perMessageDeflate);
    },
  },
});
