// Socket.IO (Node) node of a cluster: websocket transport only, rooms shared through
// @socket.io/redis-adapter (the adapter Socket.IO documents for multi-node deployments).
// Same chat behaviour as bench/servers/socketio.js: join "chat", relay "msg" to the others.
// Usage: node socketio_cluster.js PORT REDIS_URL
const http = require("http");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");

const port = Number(process.argv[2] || 8080);
const redisUrl = process.argv[3] || "redis://127.0.0.1:6379";

async function main() {
  const pubClient = createClient({ url: redisUrl });
  const subClient = pubClient.duplicate();
  await Promise.all([pubClient.connect(), subClient.connect()]);
  const server = http.createServer((req, res) => {
    res.writeHead(req.url === "/healthz" ? 200 : 404).end();
  });
  const io = new Server(server, {
    transports: ["websocket"], perMessageDeflate: false, serveClient: false,
    adapter: createAdapter(pubClient, subClient),
  });
  io.on("connection", (socket) => {
    socket.join("chat");
    socket.on("msg", (data) => socket.to("chat").emit("msg", data));
  });
  server.listen(port, "127.0.0.1");
}

main().catch((err) => { console.error(err); process.exit(1); });
