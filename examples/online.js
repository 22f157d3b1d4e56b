// examples/online.js — served at /ws/online: how many sessions are in a room, for the chat page.
// ws://127.0.0.1:8080/ws/online?room=chat answers {"type":"online","room":"chat","count":N} at once
// and again for every message it gets (the page asks whenever someone joins or leaves).
// The seed's chat.js stays exactly as the seed wrote it; this script only counts, with members().

function answer(session) {
  const room = session.getParameter("room") || "chat";
  session.send(JSON.stringify({ type: "online", room, count: session.room(room).members() }));
}

export function onOpen(session) {
  answer(session);
}

export function onMessage(session) {
  answer(session);
}
