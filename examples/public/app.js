// The chat page: examples/chat.js (the seed's chat) at /ws/chat, and examples/online.js for the
// online count. Both connections use dieselengine's client, which reconnects by itself.
import { connect } from "/_diesel/client.js";

const $ = (id) => document.getElementById(id);
const log = $("log");
let me = "";
let welcomed = false;
let chat = null;
let online = null;

function time(ms) {
  const element = document.createElement("time");
  const date = new Date(ms);
  element.dateTime = date.toISOString();
  element.textContent = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  return element;
}

function show(kind, ms, ...parts) {
  const item = document.createElement("li");
  item.className = kind;
  item.append(time(ms), ...parts);
  log.append(item);
  item.scrollIntoView({ block: "nearest" });
}

function bold(text) {
  const element = document.createElement("b");
  element.textContent = text;
  return element;
}

function askOnline() {
  online?.send("?");
}

function start(name) {
  me = name;
  $("login").hidden = true;
  $("say").hidden = false;
  $("text").focus();

  online = connect("/ws/online?room=chat");
  online.on("json", (message) => {
    if (message.type === "online") $("online").textContent = message.count;
  });

  chat = connect("/ws/chat?user=" + encodeURIComponent(name));
  chat.on("open", () => {
    setStatus("open", "connected");
    askOnline();
  });
  chat.on("close", ({ reconnecting, delay }) => {
    if (reconnecting) setStatus("reconnecting", `reconnecting in ${Math.ceil(delay / 1000)} s`);
    else setStatus("closed", "disconnected");
  });
  chat.on("json", (message) => {
    switch (message.type) {
      case "welcome":
        show("event", Date.now(), `${welcomed ? "Reconnected" : "You joined"} as ${name}.`);
        welcomed = true;
        break;
      case "join":
        show("event", Date.now(), bold(message.user), " joined");
        askOnline();
        break;
      case "leave":
        show("event", Date.now(), bold(message.user), " left");
        askOnline();
        break;
      case "message":
        show("message", message.timestamp, bold(message.from), ": ", message.text);
        break;
    }
  });
}

function setStatus(state, text) {
  $("status").className = state;
  $("status").textContent = text;
}

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = $("name").value.trim();
  if (!name) return;
  localStorage.setItem("diesel-chat-name", name);
  start(name);
});

$("say").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("text").value;
  if (!text) return;
  chat.send(text);  // the seed's chat broadcasts to everyone else, so show our own line here
  show("message mine", Date.now(), bold(me), ": ", text);
  $("text").value = "";
});

$("name").value = localStorage.getItem("diesel-chat-name") ?? "";
