export function onMessage(session, message) { session.send(message); }
