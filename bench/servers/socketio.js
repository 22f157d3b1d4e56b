// Socket.IO (Node) peer, websocket transport only. The route is a query parameter
// (?route=chat|echo) so both scenarios share the default namespace.
// Usage: node socketio.js PORT
const http = require("http");
const { Server } = require("socket.io");

const port = Number(process.argv[2] || 8080);
const server = http.createServer((req, res) => {
  res.writeHead(req.url === "/healthz" ? 200 : 404).end();
});
const io = new Server(server, { transports: ["websocket"], perMessageDeflate: false, serveClient: false });

io.on("connection", (socket) => {
  if (socket.handshake.query.route === "echo") {
    socket.on("msg", (data) => socket.emit("msg", data));
    return;
  }
  socket.join("chat");
  socket.on("msg", (data) => socket.to("chat").emit("msg", data));
});

server.listen(port, "127.0.0.1");
