// The chat page: one WebSocket to the node, which sends the whole state at open ("hello") and
// then every change; this page only shows what it is sent and asks the node to act. Several tabs
// get the same stream, so they show the same log.

import * as view from "/view.js";

const $ = (id) => document.getElementById(id);
const log = $("log");
const input = $("send-text");

/** Log lines kept in the page; older ones are removed (the node keeps its own history). */
const MAX_LINES = 2000;
/** Lines sent from this tab that Up and Down recall. */
const MAX_RECALL = 100;

const HELP = `commands:
  /help          show this help
  /peers         list connected peers (id, username, address, direction, latency)
  /history [N]   show the last N chats (default 20)
  /stats         show network statistics
  /id            show your peer id and public key
  /connect H:P   connect to a peer at host:port
  /clear         clear this tab's view
  /quit          leave the network and stop the node (a --headless node)
anything else is sent as a chat.
keys: Enter sends, Up and Down recall, Alt+R rooms, Alt+P peers, Esc closes a panel`;

let ws = null;
let me = null;
let stopped = false;
let retryMs = 500;
let unread = 0;
/** Answers this tab asked for, printed into the log when they come. */
const asked = { peers: false, stats: false };
const recall = { lines: [], at: 0, draft: "" };
let lastPeers = [];
let lastStats = null;

// ---- the log

function nearBottom() {
  return log.scrollHeight - log.scrollTop - log.clientHeight < 40;
}

function append(...lines) {
  const stick = nearBottom();
  log.append(...lines);
  while (log.childElementCount > MAX_LINES) log.firstElementChild.remove();
  if (stick) log.scrollTop = log.scrollHeight;
}

function say(text, cls) {
  append(view.note(text, cls));
}

function countUnread(it) {
  if (!document.hidden || it.kind !== "chat" || it.body !== "text" || it.origin === "local") return;
  unread++;
  showUnread();
}

function showUnread() {
  document.title = unread ? `(${unread}) p2p-chat` : "p2p-chat";
  const badge = document.querySelector(".room .unread");
  badge.hidden = unread === 0;
  badge.textContent = unread ? String(unread) : "";
}

document.addEventListener("visibilitychange", () => {
  if (!document.hidden) {
    unread = 0;
    showUnread();
  }
});

// ---- peers, stats, identity

function showPeers(peers) {
  lastPeers = peers;
  $("peers").replaceChildren(...peers.map(view.peer));
  if (!peers.length) $("peers").append(view.el("li", "empty", "no peers connected"));
  $("peer-count").textContent = String(peers.length);
  $("peer-count-button").textContent = String(peers.length);
  if (asked.peers) {
    asked.peers = false;
    say(peersText(peers));
  }
}

function peersText(peers) {
  if (!peers.length) return "no peers connected";
  const lines = peers.map((p) => {
    const rtt = p.rtt_ms == null ? "-" : `${p.rtt_ms.toFixed(2)}ms`;
    return `  ${p.name}#${p.short}  ${p.listen_addr ?? p.addr}  ${p.direction}  score ${p.score}  ${rtt}`;
  });
  return `${peers.length} peer(s):\n${lines.join("\n")}`;
}

function showStats(s) {
  lastStats = s;
  view.stats($("stats"), s);
  if (asked.stats) {
    asked.stats = false;
    const dl = $("stats");
    const lines = [...dl.querySelectorAll("dt")].map((dt) => `${dt.textContent.padEnd(19)}${dt.nextElementSibling.textContent}`);
    say(lines.join("\n"));
  }
}

function showMe(m) {
  me = m;
  const mine = $("me");
  mine.replaceChildren(view.who(m));
  view.identity($("identity"), m);
}

// ---- the connection

function setLink(state, text) {
  const l = $("link");
  l.dataset.state = state;
  l.textContent = text;
}

function enable(on) {
  for (const id of ["send-text", "send-button", "connect-addr", "connect-button"]) $(id).disabled = !on;
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  ws = new WebSocket(`${scheme}//${location.host}/ws`);
  ws.onmessage = (e) => receive(JSON.parse(e.data));
  ws.onclose = () => {
    ws = null;
    if (stopped) return;
    setLink("down", "not connected to the node; trying again…");
    setTimeout(connect, retryMs);
    retryMs = Math.min(retryMs * 2, 10_000);
  };
}

function receive(m) {
  switch (m.t) {
    case "hello": {
      retryMs = 500;
      const refocus = document.activeElement === input || document.activeElement === document.body;
      showMe(m.me);
      log.replaceChildren(...m.items.map(view.item));
      log.scrollTop = log.scrollHeight;
      showPeers(m.peers);
      showStats(m.stats);
      setLink("up", m.me.listening ? `online · listening on ${m.me.listening}` : "online");
      enable(true);
      if (refocus) input.focus();
      break;
    }
    case "item":
      append(view.item(m.item));
      countUnread(m.item);
      break;
    case "peers":
      showPeers(m.peers);
      break;
    case "stats":
      showStats(m.stats);
      break;
    case "history":
      say(m.items.length ? `last ${m.items.length} chat(s):` : "no history yet");
      append(...m.items.map((it) => {
        const li = view.item(it);
        li.classList.add("echo");
        return li;
      }));
      break;
    case "notice":
      say(m.text);
      break;
    case "bye":
      stopped = true;
      setLink("stopped", "the node has stopped");
      say("the node has stopped; start it again and reload this page");
      enable(false);
      break;
  }
}

function request(msg) {
  if (!ws || ws.readyState !== WebSocket.OPEN) {
    say("not connected to the node; nothing was sent", "warn");
    return false;
  }
  ws.send(JSON.stringify(msg));
  return true;
}

// ---- what the user types

function command(line) {
  const [name, ...args] = line.slice(1).trim().split(/\s+/);
  switch (name) {
    case "help":
      say(HELP);
      return true;
    case "peers":
      asked.peers = true;
      openPanel("side", "peers-title", false);
      return request({ t: "peers" });
    case "stats":
      asked.stats = true;
      openPanel("side", "stats-title", false);
      return request({ t: "stats" });
    case "id":
      if (me) say(`you are ${me.name}#${me.short}\npeer id    ${me.id}\npublic key ${me.key}`);
      return true;
    case "history": {
      const n = args.length ? Number(args[0]) : 20;
      if (!Number.isInteger(n) || n < 0) {
        say("usage: /history [N]");
        return true;
      }
      return request({ t: "history", n });
    }
    case "connect":
      if (args.length !== 1) {
        say("usage: /connect host:port");
        return true;
      }
      return request({ t: "connect", addr: args[0] });
    case "clear":
      log.replaceChildren();
      return true;
    case "quit":
    case "exit":
      return request({ t: "quit" });
    default:
      say(`unknown command /${name}; type /help for the list`);
      return true;
  }
}

$("send").addEventListener("submit", (e) => {
  e.preventDefault();
  const line = input.value;
  if (!line.trim()) return;
  const done = line.startsWith("/") ? command(line) : request({ t: "chat", text: line });
  if (!done) return; // kept in the box, to send again
  recall.lines.push(line);
  if (recall.lines.length > MAX_RECALL) recall.lines.shift();
  recall.at = recall.lines.length;
  input.value = "";
});

input.addEventListener("keydown", (e) => {
  if (e.key !== "ArrowUp" && e.key !== "ArrowDown") return;
  if (!recall.lines.length) return;
  if (recall.at === recall.lines.length) recall.draft = input.value;
  recall.at = Math.max(0, Math.min(recall.lines.length, recall.at + (e.key === "ArrowUp" ? -1 : 1)));
  input.value = recall.at === recall.lines.length ? recall.draft : recall.lines[recall.at];
  e.preventDefault();
});

$("connect").addEventListener("submit", (e) => {
  e.preventDefault();
  const addr = $("connect-addr").value.trim();
  if (addr && request({ t: "connect", addr })) $("connect-addr").value = "";
});

// ---- panels: beside the chat on a wide screen, over it on a narrow one

const narrow = window.matchMedia("(max-width: 54rem)");

function openPanel(id, focusId, toggle = true) {
  const panel = $(id);
  const button = document.querySelector(`[aria-controls="${id}"]`);
  const target = () => (focusId ? $(focusId) : panel.querySelector("button, input"));
  if (!narrow.matches) {
    // Always shown: a command's answer goes to the log, and a key moves the focus there.
    if (toggle) target()?.focus();
    return;
  }
  const open = toggle ? !panel.classList.contains("open") : true;
  closePanels();
  if (!open) {
    input.focus();
    return;
  }
  panel.classList.add("open");
  button.setAttribute("aria-expanded", "true");
  target()?.focus();
}

function closePanels() {
  for (const panel of document.querySelectorAll(".panel.open")) {
    panel.classList.remove("open");
    document.querySelector(`[aria-controls="${panel.id}"]`).setAttribute("aria-expanded", "false");
  }
}

$("toggle-nav").addEventListener("click", () => openPanel("nav"));
$("toggle-side").addEventListener("click", () => openPanel("side", "peers-title"));
for (const room of document.querySelectorAll(".room")) {
  room.addEventListener("click", () => {
    closePanels();
    input.focus();
  });
}

document.addEventListener("keydown", (e) => {
  if (e.key === "Escape" && document.querySelector(".panel.open")) {
    closePanels();
    input.focus();
    e.preventDefault();
  } else if (e.altKey && (e.key === "r" || e.key === "R")) {
    openPanel("nav");
    e.preventDefault();
  } else if (e.altKey && (e.key === "p" || e.key === "P")) {
    openPanel("side", "peers-title");
    e.preventDefault();
  }
});

// A click on the log outside a panel closes it (narrow screens).
log.addEventListener("click", closePanels);

connect();
