// chat.js — served at ws://127.0.0.1:8080/ws/chat (a file's name is its route).
// Every client joins the room "chat"; what one sends, everyone in the room receives.
// Edit it while `diesel serve --reload` runs: connections stay, the new code takes over.

export function onOpen(session) {
  const name = session.getParameter("name") || "anonymous";
  session.setAttribute("name", name);
  const room = session.room("chat");
  room.join();
  room.broadcast(JSON.stringify({ type: "joined", name, online: room.members() }));
}

export function onMessage(session, message) {
  session.room("chat").broadcast(JSON.stringify({
    type: "message",
    name: session.getAttribute("name"),
    text: message,
    time: Date.now(),
  }));
}

export function onClose(session) {
  // Still a member while onClose runs: it leaves the room right after.
  const room = session.room("chat");
  room.broadcastExcept(JSON.stringify({
    type: "left",
    name: session.getAttribute("name"),
    online: room.members() - 1,
  }));
}
