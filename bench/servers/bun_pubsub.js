// Bun peer: native pub/sub. publish() skips the sender natively, so it is "broadcastExcept".
// Usage: bun bun_pubsub.js PORT
const port = Number(process.argv[2] || 8080);

Bun.serve({
  hostname: "127.0.0.1",
  port,
  fetch(req, server) {
    const path = new URL(req.url).pathname;
    if (path === "/healthz") return new Response("ok");
    if ((path === "/ws/chat" || path === "/ws/echo") && server.upgrade(req, { data: { chat: path === "/ws/chat" } })) {
      return undefined;
    }
    return new Response("not found", { status: 404 });
  },
  websocket: {
    perMessageDeflate: false,
    open(ws) {
      if (ws.data.chat) ws.subscribe("chat");
    },
    message(ws, message) {
      if (ws.data.chat) ws.publish("chat", message);
      else ws.send(message);
    },
  },
});
