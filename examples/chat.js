export function onOpen(session) {
  const username = session.getParameter("user") || "anonymous";
  session.setAttribute("username", username);
  session.room("chat").join();

  session.send(JSON.stringify({ type: "welcome", id: session.id }));
  session.room("chat").broadcastExcept(JSON.stringify({
    type: "join",
    user: username
  }));
}

export function onMessage(session, message) {
  const username = session.getAttribute("username");
  session.room("chat").broadcastExcept(JSON.stringify({
    type: "message",
    from: username,
    text: message,
    timestamp: Date.now()
  }));
}

export function onClose(session) {
  const username = session.getAttribute("username");
  session.room("chat").broadcastExcept(JSON.stringify({
    type: "leave",
    user: username
  }));
  // room.leave() is called automatically after onClose returns
}
