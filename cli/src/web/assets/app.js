// The chat page: one WebSocket to the node, which sends the whole state at open ("hello") and
// then every change; this page only shows what it is sent and asks the node to act. Several tabs
// get the same stream, so they show the same log, rooms, conversations and unread counts. What
// this tab shows (a room, or a conversation) is its own; showing it marks it read for every tab.

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
  /history [N]   show the last N chats of this room (default 20)
  /join #name    join (or start) a public room; /join CODE joins by an invite code
  /create #name  start a private room: its invite code is shown, to pass on
  /invite        a fresh invite code for this room
  /room #name    show a room (/room - for everyone); /rooms lists them
  /part [#name]  leave this room (or the one named)
  /msg name#id text   a direct message; /dms name#id shows the conversation
  /block name#id      hide someone's chats and direct messages; /unblock, /blocks
  /whois name         every key seen using that name
  in a private room:  /members, /kick /ban /unban /op /deop name#id, /redact [N]
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
/** The default room's id. */
const EVERYONE = "0".repeat(32);
/** What this tab shows: a room id, or a conversation's peer (`{name, id, short}`). */
const shown = { room: EVERYONE, peer: null };
/** Every item the node sent (all rooms), oldest first; at most MAX_LINES. */
let items = [];
let rooms = [];
let conversations = [];
/** Direct messages by peer id, oldest first. */
const dms = new Map();
/** A /join or /create from this tab: the room it joins is shown when the node says so. */
let joining = false;
/** Answers this tab asked for, printed into the log when they come. */
const asked = { peers: false, stats: false, blocks: false, members: false };
/** The ids of the identities blocked: their chats are not shown. */
let blocked = new Map();
/** What the node knows of its reachability. */
let reachability = "";
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

// ---- rooms and conversations

/** Whether an item shows in what this tab shows: network lines in the default room, warnings everywhere. */
function belongs(it) {
  if (it.kind === "chat" && blocked.has(it.from.id)) return false;
  if (shown.peer) return it.kind === "warning";
  if ("room" in it) return it.room === shown.room;
  return it.kind === "warning" || shown.room === EVERYONE;
}

function roomName(id) {
  const r = rooms.find((r) => r.id === id);
  return r ? r.name : null;
}

/** Rebuilds the log, the header and the lists for what this tab shows. */
function render() {
  if (shown.peer) {
    const lines = dms.get(shown.peer.id) ?? [];
    log.replaceChildren(...lines.map((d) => view.dm(d, me)), ...items.filter(belongs).map(view.item));
    $("room-title").replaceChildren("direct messages with ", view.who(shown.peer));
    $("room-sub").textContent = "end-to-end encrypted; held by mailboxes while they are away";
    input.placeholder = "Write a direct message, or /help";
  } else {
    log.replaceChildren(...items.filter(belongs).map(view.item));
    const r = rooms.find((r) => r.id === shown.room);
    $("room-title").textContent = `# ${r ? r.name : "everyone"}`;
    $("room-sub").textContent = shown.room === EVERYONE
      ? "every node on the network reads this room"
      : `${r?.access ?? "public"} room: only its members read it`;
    input.placeholder = "Write a chat, or /help";
  }
  const inRoom = !shown.peer && shown.room !== EVERYONE;
  for (const id of ["invite-button", "part-button"]) $(id).hidden = !inRoom;
  $("members-button").hidden = !inRoom || rooms.find((r) => r.id === shown.room)?.access !== "private";
  log.scrollTop = log.scrollHeight;
  showLists();
  markRead();
}

function showLists() {
  $("rooms").replaceChildren(...rooms.map((r) => {
    const label = r.id === EVERYONE ? "# everyone" : `# ${r.name}${r.access === "private" ? " (private)" : ""}`;
    return listButton(label, r.unread, !shown.peer && shown.room === r.id, { room: r.id });
  }));
  const convs = conversations.slice();
  if (shown.peer && !convs.some((c) => c.peer.id === shown.peer.id)) convs.unshift({ peer: shown.peer, unread: 0 });
  $("dm-list").replaceChildren(...convs.map((c) =>
    listButton(view.who(c.peer), c.unread, shown.peer?.id === c.peer.id, { peer: c.peer })));
  const total = rooms.reduce((n, r) => n + r.unread, 0) + conversations.reduce((n, c) => n + c.unread, 0);
  document.title = total ? `(${total}) p2p-chat` : "p2p-chat";
}

function listButton(label, unread, current, to) {
  const b = view.el("button", "room", view.el("span", "room-name", label),
    " ", view.el("span", "unread count", unread ? String(unread) : ""));
  b.type = "button";
  if (to.room) b.dataset.room = to.room;
  if (to.peer) b.dataset.peer = to.peer.id;
  if (current) b.setAttribute("aria-current", "page");
  b.addEventListener("click", () => {
    show(to);
    closePanels();
    input.focus();
  });
  return view.el("li", "", b);
}

/** Shows a room (`{room}`) or a conversation (`{peer}`) in this tab. */
function show(to) {
  shown.room = to.peer ? EVERYONE : to.room;
  shown.peer = to.peer ?? null;
  render();
}

/** What this tab shows is read (for every tab), if someone is looking. */
function markRead() {
  if (document.hidden || !ws || ws.readyState !== WebSocket.OPEN) return;
  const unread = shown.peer
    ? conversations.find((c) => c.peer.id === shown.peer.id)?.unread
    : rooms.find((r) => r.id === shown.room)?.unread;
  if (unread) ws.send(JSON.stringify(shown.peer ? { t: "read", peer: shown.peer.id } : { t: "read", room: shown.room }));
}

document.addEventListener("visibilitychange", markRead);

function addItem(it) {
  items.push(it);
  if (items.length > MAX_LINES) items.shift();
  if (it.kind === "room" && it.joined && joining) {
    joining = false;
    // The room list comes right after; show the room then.
    shown.room = it.room;
    shown.peer = null;
    render();
    return;
  }
  if (belongs(it)) append(view.item(it));
}

function addDm(d) {
  const lines = dms.get(d.peer.id) ?? [];
  const at = lines.findIndex((l) => l.id === d.id);
  if (at >= 0) lines[at] = d;
  else lines.push(d);
  dms.set(d.peer.id, lines);
  if (shown.peer?.id !== d.peer.id) return;
  const li = view.dm(d, me);
  const old = [...log.children].find((e) => e.dataset.id === d.id);
  if (old) old.replaceWith(li);
  else append(li);
}

// ---- peers, stats, identity

function showPeers(peers) {
  lastPeers = peers;
  $("peers").replaceChildren(...peers.map((p) => {
    const li = view.peer(p);
    const b = view.el("button", "dm-start", "Message");
    b.type = "button";
    b.title = `a direct message to ${p.name}#${p.short}`;
    b.addEventListener("click", () => {
      show({ peer: { name: p.name, id: p.id, short: p.short } });
      closePanels();
      input.focus();
    });
    li.append(b, blockButton(p));
    return li;
  }));
  if (!peers.length) $("peers").append(view.el("li", "empty", "no peers connected"));
  $("peer-count").textContent = String(peers.length);
  $("peer-count-button").textContent = String(peers.length);
  if (asked.peers) {
    asked.peers = false;
    say(peersText(peers));
  }
}

/** Block (or unblock) beside a name: the same command as /block name#id. */
function blockButton(w) {
  const on = blocked.has(w.id);
  const b = view.el("button", "block", on ? "Unblock" : "Block");
  b.type = "button";
  b.title = on ? `show ${w.name}#${w.short}'s chats again` : `hide ${w.name}#${w.short}'s chats and direct messages`;
  b.addEventListener("click", () => {
    asked.blocks = true;
    request({ t: "line", line: `/${on ? "unblock" : "block"} ${w.id}` });
  });
  return b;
}

function showBlocks(list) {
  blocked = new Map(list.map((w) => [w.id, w]));
  render();
  showPeers(lastPeers);
  if (asked.blocks) {
    asked.blocks = false;
    say(list.length
      ? `blocked (their chats and direct messages are not shown): ${list.map((w) => `${w.name}#${w.short}`).join(", ")}`
      : "nobody is blocked");
  }
}

/** The members of a private room, with what this node's role lets it do to each. */
function showMembers(m) {
  const name = roomName(m.room) ?? m.room;
  const admin = m.mine === "owner" || m.mine === "admin";
  const list = view.el("ul", "members");
  for (const w of m.members) {
    const li = view.el("li", "member-entry", view.who(w), ` ${w.role}`);
    const act = (label, cmd) => {
      const b = view.el("button", "", label);
      b.type = "button";
      b.addEventListener("click", () => request({ t: "line", line: `/${cmd} ${w.id}`, room: m.room }));
      li.append(" ", b);
    };
    if (w.id !== me?.id) {
      if (admin && w.role === "banned") act("Unban", "unban");
      if (admin && w.role === "member") {
        act("Kick", "kick");
        act("Ban", "ban");
      }
      if (m.mine === "owner" && w.role === "member") act("Op", "op");
      if (m.mine === "owner" && w.role === "admin") act("Deop", "deop");
    }
    list.append(li);
  }
  const head = m.members.length ? `members of #${name} (you: ${m.mine ?? "not a member"}):` : `#${name} keeps no membership`;
  append(view.el("li", "note members-list", head, list));
}

function peersText(peers) {
  if (!peers.length) return "no peers connected";
  const lines = peers.map((p) => {
    const rtt = p.rtt_ms == null ? "-" : `${p.rtt_ms.toFixed(2)}ms`;
    return `  ${p.name}#${p.short}  ${p.listen_addr ?? p.addr}  ${p.direction}  ${p.path}  score ${p.score}  ${rtt}`;
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
  view.identity($("identity"), m, reachability);
}

// ---- the connection

function setLink(state, text) {
  const l = $("link");
  l.dataset.state = state;
  l.textContent = text;
}

function enable(on) {
  const ids = ["send-text", "send-button", "connect-addr", "connect-button", "join-what", "join-button", "create-button",
    "invite-button", "part-button", "members-button"];
  for (const id of ids) $(id).disabled = !on;
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
      reachability = m.reachability;
      blocked = new Map(m.blocked.map((w) => [w.id, w]));
      showMe(m.me);
      items = m.items.slice(-MAX_LINES);
      rooms = m.rooms;
      conversations = m.conversations;
      dms.clear();
      for (const d of m.dms) addDm(d);
      if (!shown.peer && !rooms.some((r) => r.id === shown.room)) shown.room = EVERYONE;
      enable(true);
      render();
      showPeers(m.peers);
      showStats(m.stats);
      setLink("up", m.me.listening ? `online · listening on ${m.me.listening}` : "online");
      if (refocus) input.focus();
      break;
    }
    case "item":
      addItem(m.item);
      break;
    case "rooms":
      rooms = m.rooms;
      if (!shown.peer && !rooms.some((r) => r.id === shown.room)) show({ room: EVERYONE });
      else showLists();
      markRead();
      break;
    case "conversations":
      conversations = m.conversations;
      showLists();
      markRead();
      break;
    case "dm":
      addDm(m.dm);
      break;
    case "show":
      show(m.room ? { room: m.room } : { peer: m.peer });
      break;
    case "peers":
      showPeers(m.peers);
      break;
    case "blocks":
      showBlocks(m.blocked);
      break;
    case "redacted":
      items = items.filter((it) => it.id !== m.id);
      for (const li of log.querySelectorAll("li.chat")) if (li.dataset.id === m.id) li.remove();
      break;
    case "members":
      if (asked.members && m.room === shown.room) {
        asked.members = false;
        showMembers(m);
      }
      break;
    case "reachability":
      reachability = m.text;
      if (me) showMe(me);
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
      if (me) say(`you are ${me.name}#${me.short}, ${reachability}\npeer id    ${me.id}\npublic key ${me.key}`);
      return true;
    case "history": {
      const n = args.length ? Number(args[0]) : 20;
      if (!Number.isInteger(n) || n < 0) {
        say("usage: /history [N]");
        return true;
      }
      return request({ t: "history", n, room: shown.room });
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
    case "join":
    case "create":
      joining = true;
      return request({ t: "line", line, room: shown.room });
    case "blocks":
    case "block":
    case "unblock":
      asked.blocks = true;
      return request({ t: "line", line, room: shown.room });
    case "members":
      asked.members = true;
      return request({ t: "line", line, room: shown.room });
    case "whois":
    case "kick":
    case "ban":
    case "unban":
    case "op":
    case "deop":
    case "redact":
    case "invite":
    case "room":
    case "rooms":
    case "part":
    case "msg":
    case "dms":
      return request({ t: "line", line, room: shown.room });
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
  const done = line.startsWith("/") ? command(line)
    : shown.peer ? request({ t: "dm", to: shown.peer.id, text: line })
    : request({ t: "chat", text: line, room: shown.room });
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

$("join").addEventListener("submit", (e) => {
  e.preventDefault();
  const what = $("join-what").value.trim();
  if (!what) return;
  joining = true;
  if (request({ t: "line", line: `/join ${what}` })) $("join-what").value = "";
});

$("create-button").addEventListener("click", () => {
  const name = $("join-what").value.trim();
  if (!name) {
    say("write the new room's name in the box first, as in #team", "warn");
    $("join-what").focus();
    return;
  }
  joining = true;
  if (request({ t: "line", line: `/create ${name}` })) $("join-what").value = "";
});

$("invite-button").addEventListener("click", () => request({ t: "line", line: "/invite", room: shown.room }));
$("part-button").addEventListener("click", () => request({ t: "line", line: "/part", room: shown.room }));
$("members-button").addEventListener("click", () => {
  asked.members = true;
  request({ t: "line", line: "/members", room: shown.room });
});

$("toggle-nav").addEventListener("click", () => openPanel("nav"));
$("toggle-side").addEventListener("click", () => openPanel("side", "peers-title"));

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
