// Node + ws peer: the standard relay, a loop over the room's clients with one send() each.
// Usage: node node_ws.js PORT
const http = require("http");
const { WebSocketServer, WebSocket } = require("ws");

const port = Number(process.argv[2] || 8080);
const chat = new Set();
const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });

const server = http.createServer((req, res) => {
  res.writeHead(req.url === "/healthz" ? 200 : 404).end(req.url === "/healthz" ? "ok" : "not found");
});

server.on("upgrade", (req, socket, head) => {
  const path = req.url.split("?")[0];
  if (path !== "/ws/chat" && path !== "/ws/echo") {
    socket.end("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    if (path === "/ws/echo") {
      ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
      return;
    }
    chat.add(ws);
    ws.on("message", (data, isBinary) => {
      for (const peer of chat) {
        if (peer !== ws && peer.readyState === WebSocket.OPEN) peer.send(data, { binary: isBinary });
      }
    });
    ws.on("close", () => chat.delete(ws));
  });
});

server.listen(port, "127.0.0.1");
