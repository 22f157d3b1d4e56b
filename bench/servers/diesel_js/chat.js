export function onOpen(session) { session.room("chat").join(); }
export function onMessage(session, message) { session.room("chat").broadcastExcept(message); }
