// onOpen runs on every connection, as Bun's open() does: the handshake target counts handshakes with onOpen run.
export function onOpen(session) {}
export function onMessage(session, message) { session.send(message); }
