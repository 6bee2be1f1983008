// How things look: log lines, peers, stats. Text from the network (chat text, names, reasons,
// addresses) only ever reaches the page through textContent, never as markup: a chat reading
// <script> or <img onerror> is shown as those characters.

/** An element with a class, whose children are elements or strings (strings become text nodes). */
export function el(tag, cls, ...children) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(typeof c === "string" ? document.createTextNode(c) : c);
  }
  return e;
}

/** Sender colors: six, picked by the first byte of the peer id, as the terminal does. */
export function who(w) {
  const hue = parseInt(w.id.slice(0, 2), 16) % 6;
  const name = el("bdi", "name", w.name);
  const tag = el("span", "tag", "#" + w.short);
  const e = el("span", `who c${hue}`, name, tag);
  e.title = `peer id ${w.id}`;
  return e;
}

const pad = (n) => String(n).padStart(2, "0");

export function clock(ms) {
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function time(ms) {
  const t = el("time", "", clock(ms));
  t.dateTime = new Date(ms).toISOString();
  t.title = new Date(ms).toLocaleString();
  return t;
}

/** How a chat not said live is marked, as in the terminal. */
const MARKS = {
  late: "(arrived late)",
  away: "(while you were away)",
  earlier: "(earlier in this room)",
};

/** One log line for an item from the node. */
export function item(it) {
  switch (it.kind) {
    case "chat": {
      const li = el("li", `chat ${it.origin}`);
      li.dataset.id = it.id;
      li.append(time(it.ts), " ");
      if (it.body === "text") {
        const text = it.text ?? "(sealed: this node has no key for it)";
        li.append(who(it.from), el("span", "sep", ": "), el("span", "text", text));
      } else {
        li.classList.add("presence");
        li.append("*** ", who(it.from), it.body === "join" ? " joined" : " left");
      }
      // Another key used this name first: as in the terminal, /whois lists them.
      if (it.not_first) li.append(" ", el("span", "late not-first", `(not the first ${it.from.name}: /whois)`));
      const mark = MARKS[it.when];
      if (mark) {
        li.classList.add("missed");
        li.append(" ", el("span", "late", mark));
      }
      if (it.origin === "history") li.title = "from before this run";
      return li;
    }
    case "member":
      return member(it);
    case "reachability":
      return el("li", "net", time(it.ts), ` --- reachability: ${it.text}`);
    case "peer-up":
      return el("li", "net", time(it.ts), " --- connected to ", who(it.peer), ` (${it.addr}, ${it.direction})`);
    case "peer-down":
      return el("li", "net", time(it.ts), " --- disconnected from ", who(it.peer), `: ${it.reason}`);
    case "dial-failed": {
      const then = it.retry_at == null
        ? "giving up on it"
        : `retrying in the background (next try in ${Math.max(0, (it.retry_at - it.ts) / 1000).toFixed(1)}s)`;
      return el("li", "warn", time(it.ts), ` !!! could not reach ${it.addr}, ${then}`);
    }
    case "reachable":
      return el("li", "net", time(it.ts), ` --- ${it.addr} is reachable again`);
    case "warning":
      return el("li", "warn", time(it.ts), ` !!! ${it.text}`);
    case "room":
      return el("li", "net", time(it.ts), it.joined
        ? ` --- you are in #${it.name} (${it.access} room)`
        : ` --- you left #${it.name}`);
    case "invite": {
      const code = el("code", "", it.code);
      const copy = el("button", "", "Copy");
      copy.type = "button";
      copy.addEventListener("click", async () => {
        try {
          await navigator.clipboard.writeText(it.code);
          copy.textContent = "Copied";
        } catch {
          getSelection().selectAllChildren(code); // to copy by hand
        }
      });
      return el("li", "invite net", time(it.ts), ` --- invite code for #${it.name} (valid 24 h): `, code, copy);
    }
    default:
      return el("li", "note", `(an event this page does not know: ${it.kind})`);
  }
}

/** What a membership operation did, as the terminal says it: `*** bob#id was removed by olga#id`. */
function member(it) {
  const li = el("li", it.applied ? "member" : "member ignored", time(it.ts), " *** ");
  const by = who(it.by);
  const target = it.target ? who(it.target) : null;
  switch (it.op) {
    case "join": li.append(by, " joined with an invite"); break;
    case "remove": li.append(target, " was removed by ", by); break;
    case "ban": li.append(target, " was banned by ", by); break;
    case "unban": li.append(target, " was unbanned by ", by); break;
    case "grant": li.append(target, " was made an admin by ", by); break;
    case "revoke": li.append(target, " is no longer an admin (by ", by, ")"); break;
    case "redact": li.append("a chat by ", target, " was redacted by ", by); break;
    case "rekey": li.append("the room's key was changed by ", by); break;
    default: li.append(`${it.op} by `, by);
  }
  if (!it.applied) li.append(" (ignored: ", who(it.by), " had no right to it then)");
  return li;
}

/** How an outgoing direct message's state reads. */
const STATES = {
  queued: "queued",
  sent: "sent",
  stored: "stored (a mailbox holds it)",
  delivered: "delivered",
  read: "read",
  expired: "expired (never delivered)",
};

/** One direct message of a conversation. */
export function dm(d, me) {
  const li = el("li", `chat dm ${d.outgoing ? "local" : "live"}`);
  li.dataset.id = d.id;
  li.append(time(d.ts), " ", who(d.outgoing ? me : d.peer), el("span", "sep", ": "), el("span", "text", d.text));
  if (d.outgoing) {
    const st = el("span", "state", STATES[d.state] ?? "sending");
    st.dataset.state = d.state ?? "";
    li.append(st);
  }
  return li;
}

/** A line of this tab's own: answers to commands, help. Several lines keep their breaks. */
export function note(text, cls = "note") {
  return el("li", cls, text);
}

export function peer(p) {
  const rtt = `latency ${p.rtt_ms == null ? "–" : `${p.rtt_ms.toFixed(p.rtt_ms < 10 ? 2 : 0)} ms`}`;
  const where = el("span", "addr", p.listen_addr ?? p.addr);
  where.title = p.listen_addr ? `listens on ${p.listen_addr}; connected from ${p.addr}` : `connected from ${p.addr}`;
  const latency = el("span", "rtt", rtt);
  latency.title = "round-trip time of the last ping (– until the first one)";
  const path = el("span", "path", p.path);
  path.title = "direct: a connection of its own; relayed: a circuit through another peer";
  return el("li", "peer", who(p), el("span", "meta", where, el("span", "dir", p.direction), path, latency));
}

function rows(dl, pairs) {
  dl.replaceChildren();
  for (const [k, v] of pairs) dl.append(el("dt", "", k), el("dd", "", String(v)));
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

function uptime(s) {
  return `${Math.floor(s / 3600)}h${pad(Math.floor(s / 60) % 60)}m${pad(s % 60)}s`;
}

export function stats(dl, s) {
  rows(dl, [
    ["peers connected", s.peers],
    ["chats sent", s.chats_sent],
    ["chats received", `${s.chats_received} (${s.chats_repaired} caught up)`],
    ["chats relayed", s.chats_relayed],
    ["duplicates dropped", s.duplicates],
    ["chats refused", s.chats_refused],
    ["bytes in / out", `${bytes(s.bytes_in)} / ${bytes(s.bytes_out)}`],
    ["frames in / out", `${s.frames_in} / ${s.frames_out}`],
    ["prunes / grafts", `${s.prunes_sent} / ${s.grafts_sent}`],
    ["sync rounds", s.sync_frames_sent],
    ["chats held", s.chats_held],
    ["uptime", uptime(s.uptime_s)],
  ]);
}

export function identity(dl, me, reachability) {
  rows(dl, [
    ["you are", `${me.name}#${me.short}`],
    ["listening on", me.listening ?? "not listening: only outgoing connections"],
    ["reachability", reachability],
    ["peer id", me.id],
    ["public key", me.key],
  ]);
}
