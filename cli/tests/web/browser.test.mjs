// The web interface in a real browser: headless Chromium, driven by Playwright, against real
// `p2p-chat` processes on 127.0.0.1. Run by cli/tests/web.rs (`cargo test`), which passes
// P2P_CHAT_BIN and CHROMIUM (see nodes.mjs) and SHOT_DIR, where the screenshots are left.
//
// Three nodes: alice (terminal in plain mode, with --web), bob (--web --headless, bootstrapped
// from alice), and carol (terminal only, no web, no read receipts), whose name is markup to show
// that names are text too.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { Node, WAIT_MS, launch } from "./nodes.mjs";

const SHOT_DIR = process.env.SHOT_DIR ?? ".";
/** A name that no DNS knows; the browser resolves it to 127.0.0.1, as a rebinding attack would. */
const REBOUND = "rebound.test";
const CAROL = "<b>carol</b>";

let alice, bob, carol, browser;
const web = {}; // name -> { url, base, port, token }

async function webOf(node) {
  const url = new URL(await node.url());
  return { url: url.href, base: url.origin, port: Number(url.port), token: url.searchParams.get("token") };
}

/** A new browser profile (its own cookies), with a page logged in to `node`'s web interface. */
async function open(node, options = {}) {
  const context = await browser.newContext(options);
  const page = await context.newPage();
  await login(page, node);
  return page;
}

/** Opens `node`'s URL with its token in `page`: the page comes up online. */
async function login(page, node) {
  page.setDefaultTimeout(WAIT_MS);
  const errors = [];
  page.on("pageerror", (e) => errors.push(e));
  page.errors = errors;
  const dialogs = [];
  page.on("dialog", (d) => {
    dialogs.push(d.message());
    d.dismiss();
  });
  page.dialogs = dialogs;
  const response = await page.goto(web[node].url);
  assert.equal(response.status(), 200, "the token opens the page");
  assert.equal(new URL(page.url()).search, "", "the token leaves the address bar");
  await page.locator("#link[data-state=up]").waitFor();
}

/** The log line containing `text`, once it is there. */
async function line(page, text) {
  const li = page.locator("#log li", { hasText: text }).last();
  await li.waitFor();
  return li;
}

async function send(page, text) {
  await page.locator("#send-text").fill(text);
  await page.locator("#send-text").press("Enter");
}

async function peerCount(page, n) {
  await page.waitForFunction((n) => document.querySelectorAll("#peers .peer").length >= n, n);
}

before(async () => {
  alice = new Node("alice", ["listen", "-p", "0", "-u", "alice", "--web", "127.0.0.1:0"]);
  const alicePort = await alice.port();
  bob = new Node("bob", ["listen", "-p", "0", "-u", "bob", "--web", "127.0.0.1:0", "--headless",
    "--bootstrap", `127.0.0.1:${alicePort}`]);
  carol = new Node("carol", ["connect", "-a", `127.0.0.1:${alicePort}`, "-u", CAROL, "--no-read-receipts"]);
  web.alice = await webOf(alice);
  web.bob = await webOf(bob);
  browser = await launch([`--host-resolver-rules=MAP ${REBOUND} 127.0.0.1`]);
  await alice.waitFor(`connected to ${await bob.who()}`);
  await alice.waitFor(`connected to ${await carol.who()}`);
});

after(async () => {
  await browser?.close();
  for (const n of [alice, bob, carol]) n?.stop();
});

test("a chat typed in one page appears in the other page and in a terminal, and back", async () => {
  const [a, b] = [await open("alice"), await open("bob")];
  await peerCount(a, 2);
  const [aliceWho, bobWho, carolWho] = [await alice.who(), await bob.who(), await carol.who()];
  assert.equal(await a.locator("#me").textContent(), aliceWho, "the header shows name#id");

  await send(a, "hello from alice's page");
  await line(b, "hello from alice's page");
  await carol.waitFor(`${aliceWho}: hello from alice's page`);
  await alice.waitFor(`${aliceWho}: hello from alice's page`); // her own terminal shows it too

  carol.say("hello from carol's terminal");
  for (const p of [a, b]) {
    const li = await line(p, "hello from carol's terminal");
    assert.equal(await li.locator(".who").textContent(), carolWho);
  }

  await send(b, "and one from bob's page");
  await line(a, "and one from bob's page");
  await carol.waitFor(`${bobWho}: and one from bob's page`);

  // The peer list: name#id, address and latency of each peer.
  const peer = a.locator("#peers .peer", { hasText: bobWho });
  await peer.waitFor();
  assert.match(await peer.locator(".addr").textContent(), /^127\.0\.0\.1:\d+$/);
  // Latency is known once the node has timed a ping (quiet links are pinged every 10 s).
  assert.match(await peer.locator(".rtt").textContent(), /^latency (–|\d+(\.\d+)? ms)$/);
  assert.deepEqual([...a.errors, ...b.errors], [], "no script error");
  await a.screenshot({ path: path.join(SHOT_DIR, "web-wide.png") });
  await a.context().close();
  await b.context().close();
});

test("several tabs of one node show the same log", async () => {
  const one = await open("alice");
  const two = await one.context().newPage();
  await login(two, "alice");
  await send(two, "said in the second tab");
  await line(one, "said in the second tab");
  await send(one, "said in the first tab");
  await line(two, "said in the first tab");
  await line(one, "said in the first tab");
  const ids = (p) => p.$$eval("#log li.chat", (els) => els.map((e) => e.dataset.id));
  assert.deepEqual(await ids(one), await ids(two), "the same chats, in the same order");
  await one.context().close();
});

test("markup in a chat or a name is shown as text and runs nothing", async () => {
  const a = await open("alice");
  const script = "<script>alert(1)</script>";
  const img = `<img src=x onerror="document.title='pwned';alert(2)">`;
  carol.say(script);
  carol.say(img);
  await send(a, `<img src=y onerror="alert(3)"> from a page`);
  for (const text of [script, img]) {
    const li = await line(a, text);
    assert.equal(await li.locator(".text").textContent(), text, "the chat's text, character for character");
    assert.equal(await li.locator(".who .name").textContent(), CAROL, "the name, as text");
  }
  await line(a, "from a page");
  await a.waitForTimeout(300); // an image that failed to load would have fired by now
  assert.equal(await a.locator("#log img, #log script, #log b").count(), 0, "no element made from a chat");
  assert.deepEqual(a.dialogs, [], "no alert ran");
  assert.equal(await a.title(), "p2p-chat");
  await a.context().close();
});

test("every terminal command works from the keyboard alone", async () => {
  const a = await open("alice");
  const box = a.locator("#send-text");
  assert.ok(await box.evaluate((e) => e === document.activeElement), "the send box has the focus at start");
  const type = async (text) => {
    await a.keyboard.type(text);
    await a.keyboard.press("Enter");
  };
  await type("typed, not clicked");
  await line(a, "typed, not clicked");
  await a.keyboard.press("ArrowUp");
  assert.equal(await box.inputValue(), "typed, not clicked", "Up recalls the last line");
  await box.fill("");
  await type("/help");
  await line(a, "/history [N]");
  await type("/id");
  await line(a, `you are ${await alice.who()}`);
  await type("/peers");
  await line(a, "2 peer(s):");
  await type("/stats");
  await line(a, "chats sent");
  await type("/history 2");
  await line(a, "last 2 chat(s):");
  await type(`/connect 127.0.0.1:${await bob.port()}`);
  await line(a, `dialing 127.0.0.1:${await bob.port()}`);
  await type("/frobnicate");
  await line(a, "unknown command /frobnicate");
  await type("/quit");
  await line(a, "quit it there");
  await type("/clear");
  await a.waitForFunction(() => document.querySelectorAll("#log li").length === 0);
  // Tab moves on to the Send button, visibly.
  await a.keyboard.press("Tab");
  assert.equal(await a.evaluate(() => document.activeElement.id), "send-button");
  assert.ok(await a.evaluate(() => document.activeElement.matches(":focus-visible")));
  await a.context().close();
});

test("at 375 px wide the page is usable", async () => {
  const a = await open("bob", { viewport: { width: 375, height: 667 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
  await send(a, "written on a phone-sized screen");
  await line(a, "written on a phone-sized screen");
  const shot = path.join(SHOT_DIR, "web-375.png");
  await a.screenshot({ path: shot });
  const fits = await a.evaluate(() => {
    const inside = (e) => {
      const r = e.getBoundingClientRect();
      const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
      return r.width > 0 && r.left >= 0 && r.right <= innerWidth && r.top >= 0 && r.bottom <= innerHeight && e.contains(hit);
    };
    return {
      overflow: document.documentElement.scrollWidth - innerWidth,
      box: inside(document.getElementById("send-text")),
      button: inside(document.getElementById("send-button")),
      rooms: inside(document.getElementById("toggle-nav")),
      log: document.getElementById("log").getBoundingClientRect().height,
    };
  });
  assert.equal(fits.overflow, 0, "nothing wider than the screen");
  assert.ok(fits.box && fits.button, "the send box and its button are on screen, not covered");
  assert.ok(fits.rooms, "the rooms button is on screen");
  assert.ok(fits.log > 300, `the chat gets most of the height (${fits.log} px)`);
  // The room list and the peers open over the chat, from the keyboard, and Escape closes them.
  await a.keyboard.press("Alt+R");
  await a.locator("#nav .room", { hasText: "# everyone" }).waitFor({ state: "visible" });
  await a.keyboard.press("Escape");
  await a.locator("#nav").waitFor({ state: "hidden" });
  await a.locator("#toggle-side").click();
  await a.locator("#peers .peer").first().waitFor({ state: "visible" });
  await a.screenshot({ path: path.join(SHOT_DIR, "web-375-peers.png") });
  await a.keyboard.press("Escape");
  await a.locator("#side").waitFor({ state: "hidden" });
  assert.ok(await a.locator("#send-text").evaluate((e) => e === document.activeElement), "back in the send box");
  await a.context().close();
});

test("without the token: 401", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  for (const p of ["/", "/app.js", "/view.js", "/app.css", "/ws", "/?token=0123456789abcdef0123456789abcdef"]) {
    const r = await page.goto(web.alice.base + p);
    assert.equal(r.status(), 401, p);
  }
  // A cookie for another node (another port) is no key to this one.
  await login(page, "bob");
  assert.equal((await page.goto(web.alice.base + "/")).status(), 401);
  await context.close();
});

test("a Host that is not the node's own address (DNS rebinding) is refused", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const rebound = `http://${REBOUND}:${web.alice.port}`;
  for (const p of ["/", `/?token=${web.alice.token}`, "/app.js"]) {
    const r = await page.goto(rebound + p);
    assert.equal(r.status(), 421, p);
    assert.ok(!r.headers()["set-cookie"], "no cookie for a rebound name");
  }
  assert.match(await page.textContent("body"), /open it by the address it printed/);
  await context.close();
});

test("a WebSocket from another origin is refused", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  // Logged in to both nodes: cookies do not tell ports apart, so bob's page holds alice's cookie.
  await login(page, "alice");
  await login(page, "bob");
  const tryWs = (url) => new Promise((resolve) => {
    const ws = new WebSocket(url);
    ws.onopen = () => { ws.close(); resolve("open"); };
    ws.onerror = () => resolve("refused");
  });
  assert.equal(await page.evaluate(tryWs, `ws://127.0.0.1:${web.bob.port}/ws`), "open", "its own origin");
  assert.equal(await page.evaluate(tryWs, `ws://127.0.0.1:${web.alice.port}/ws`), "refused", "another port's page");
  // A page of another site entirely.
  await page.route("http://elsewhere.test/", (r) => r.fulfill({ contentType: "text/html", body: "<p>elsewhere</p>" }));
  await page.goto("http://elsewhere.test/");
  assert.equal(await page.evaluate(tryWs, `ws://127.0.0.1:${web.alice.port}/ws`), "refused", "another site");
  // With the right cookie but the wrong Origin, the server itself says no (403), not only the browser.
  const status = await new Promise((resolve, reject) => {
    http.get({
      host: "127.0.0.1", port: web.alice.port, path: "/ws",
      headers: {
        Cookie: `p2p_chat_${web.alice.port}=${web.alice.token}`, Origin: "http://elsewhere.test",
        Connection: "Upgrade", Upgrade: "websocket", "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
      },
    }, (r) => { r.resume(); resolve(r.statusCode); }).on("upgrade", () => resolve(101)).on("error", reject);
  });
  assert.equal(status, 403);
  await context.close();
});

test("the page is served under a strict Content-Security-Policy", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await login(page, "alice");
  const r = await page.goto(web.alice.base + "/");
  const csp = r.headers()["content-security-policy"];
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /script-src 'self'(;|$)/, "no inline script");
  assert.match(csp, /connect-src 'self'/);
  const cookie = (await context.cookies()).find((c) => c.name === `p2p_chat_${web.alice.port}`);
  assert.ok(cookie.httpOnly, "HttpOnly");
  assert.equal(cookie.sameSite, "Strict");
  assert.equal(await page.evaluate(() => document.cookie), "", "the page's script cannot read it");
  await context.close();
});

test("a node that comes back shows on its page what it missed, marked", async () => {
  const db = fs.mkdtempSync(path.join(os.tmpdir(), "p2p-chat-web-dave-"));
  const store = ["--persist", "--db-path", db];
  const first = new Node("dave (first run)", ["listen", "-p", "0", "-u", "dave", "--bootstrap",
    `127.0.0.1:${await alice.port()}`, ...store]);
  await first.waitFor("connected to alice#");
  first.say("/quit");
  await first.exited;
  carol.say("said while dave was away");
  await alice.waitFor("said while dave was away");
  // A chat signed less than 2 s before a node starts may be a clock's skew, and is news: wait more.
  await new Promise((r) => setTimeout(r, 2_500));
  // Back, with the page: it redials the peers it knew.
  const dave = new Node("dave", ["listen", "-p", "0", "-u", "dave", ...store, "--web", "127.0.0.1:0", "--headless"]);
  try {
    web.dave = await webOf(dave);
    const d = await open("dave");
    const li = await line(d, "said while dave was away");
    assert.equal(await li.locator(".late").textContent(), "(while you were away)");
    await dave.waitFor("said while dave was away  (while you were away)"); // as its terminal output says
    await d.context().close();
  } finally {
    dave.stop();
    fs.rmSync(db, { recursive: true, force: true });
  }
});

/** Waits until the button of `list` (`#rooms` or `#dm-list`) whose text has `label` shows `n` unread. */
async function unread(page, label, n, list = "#rooms") {
  await page.waitForFunction(([list, label, n]) => [...document.querySelectorAll(`${list} .room`)]
    .some((b) => b.textContent.includes(label) && b.querySelector(".unread").textContent === n),
  [list, label, n ? String(n) : ""]);
}

test("rooms from the page: join #dev, chat there, unread counts in every tab; a private room's invite code", async () => {
  const a = await open("alice");
  const other = await a.context().newPage(); // a second tab, left on the default room
  await login(other, "alice");
  const aliceWho = await alice.who();

  await a.locator("#join-what").fill("#dev");
  await a.locator("#join-what").press("Enter");
  await a.locator("#room-title", { hasText: "# dev" }).waitFor(); // the page shows the room it joined
  await other.locator("#rooms .room", { hasText: "# dev" }).waitFor(); // and every tab lists it
  assert.equal(await other.locator("#room-title").textContent(), "# everyone", "the other tab stays where it was");
  await alice.waitFor("--- you are in #dev (public)"); // the same command as the terminal's
  carol.say("/join #dev");
  await carol.waitFor("--- you are in #dev (public)");

  // Said in #dev from the page: carol reads it, the page shows it under #dev and not in everyone.
  await send(a, "hello #dev from the page");
  await carol.waitFor(`${aliceWho}: hello #dev from the page`);
  await line(a, "hello #dev from the page");
  assert.equal(await other.locator("#log li", { hasText: "hello #dev" }).count(), 0, "not in the default room");

  // Said in #dev while no tab shows it: unread in both tabs; shown in one, read in both.
  await a.locator("#rooms .room", { hasText: "# everyone" }).click();
  carol.say("carol in #dev");
  await unread(a, "# dev", 1);
  await unread(other, "# dev", 1);
  assert.match(await a.title(), /^\(1\) /);
  await other.locator("#rooms .room", { hasText: "# dev" }).click();
  await line(other, "carol in #dev");
  await unread(a, "# dev", 0);
  assert.equal(await a.title(), "p2p-chat");

  // A private room created from the keyboard: its invite code is shown, and it lets carol in.
  await a.locator("#send-text").focus();
  await a.keyboard.type("/create #secret");
  await a.keyboard.press("Enter");
  await a.locator("#room-title", { hasText: "# secret" }).waitFor();
  const code = await (await line(a, "invite code for #secret")).locator("code").textContent();
  assert.match(code, /^p2pchat-invite2:/);
  carol.say(`/join ${code}`);
  await carol.waitFor("--- you are in #secret (private)");
  await send(a, "only for #secret");
  await carol.waitFor(`${aliceWho}: only for #secret`);
  await line(a, "only for #secret");
  assert.deepEqual([...a.errors, ...other.errors], [], "no script error");
  await a.screenshot({ path: path.join(SHOT_DIR, "web-rooms.png") });
  await a.context().close();
});

test("a direct message from the page reaches its peer and shows delivered", async () => {
  const a = await open("alice");
  const carolWho = await carol.who();
  await a.locator("#peers .peer", { hasText: carolWho }).getByRole("button", { name: "Message" }).click();
  await a.locator("#room-title", { hasText: carolWho }).waitFor();
  await send(a, "a private word, <b>carol</b>");
  await carol.waitFor("a private word, <b>carol</b>");
  const li = await line(a, "a private word");
  // carol sends no read receipts: delivered is the last state.
  await li.locator(".state[data-state=delivered]").waitFor();
  assert.equal(await li.locator(".state").textContent(), "delivered");
  await a.locator("#dm-list .room", { hasText: carolWho }).waitFor();
  // An answer, in a tab that shows another room: the conversation counts it unread.
  await a.locator("#rooms .room", { hasText: "# everyone" }).click();
  carol.say(`/msg ${await alice.who()} and back`);
  await unread(a, carolWho, 1, "#dm-list");
  await a.locator("#dm-list .room", { hasText: carolWho }).click();
  await line(a, "and back");
  await unread(a, carolWho, 0, "#dm-list");
  assert.equal(await a.locator("#log b").count(), 0, "text, not markup");
  assert.deepEqual(a.errors, [], "no script error");
  await a.context().close();
});

test("moderation on the page: a redacted chat disappears, the members list, a removal shown", async () => {
  // #secret is alice's private room from the rooms test; carol joined it with its invite code.
  const a = await open("alice");
  const [aliceWho, carolWho] = [await alice.who(), await carol.who()];
  await a.locator("#rooms .room", { hasText: "# secret" }).click();
  await a.locator("#room-title", { hasText: "# secret" }).waitFor();
  carol.say("/room #secret");
  carol.say("a chat carol takes back");
  await line(a, "a chat carol takes back");
  carol.say("/redact");
  await line(a, `a chat by ${carolWho} was redacted by ${carolWho}`);
  await a.locator("#log li.chat", { hasText: "a chat carol takes back" }).waitFor({ state: "detached" });

  // The members list, with what the owner may do to each member; Kick removes carol.
  await a.locator("#members-button").click();
  const members = await line(a, "members of #secret (you: owner)");
  const entry = members.locator(".member-entry", { hasText: carolWho });
  assert.match(await entry.textContent(), / member /);
  assert.equal(await members.locator(".member-entry", { hasText: aliceWho }).getByRole("button").count(), 0,
    "nothing to do to oneself");
  await entry.getByRole("button", { name: "Kick" }).click();
  await line(a, `*** ${carolWho} was removed by ${aliceWho}`);
  await carol.waitFor(`${carolWho} was removed by ${aliceWho}`);
  // The same from the command box: alice's role lets her; a refusal would be a warning line.
  await send(a, "/members");
  const after = await line(a, "members of #secret (you: owner)");
  await after.locator(".member-entry").first().waitFor();
  assert.equal(await after.locator(".member-entry", { hasText: carolWho }).count(), 0, "carol is no member now");
  assert.deepEqual(a.errors, [], "no script error");
  await a.context().close();
});

test("a block from the page hides a sender's chats, and unblock shows them again", async () => {
  const a = await open("alice");
  const carolWho = await carol.who();
  carol.say("/room -");
  carol.say("carol before the block");
  await line(a, "carol before the block");
  await a.locator("#peers .peer", { hasText: carolWho }).getByRole("button", { name: "Block" }).click();
  await line(a, `blocked (their chats and direct messages are not shown): ${carolWho}`);
  await a.locator("#log li.chat", { hasText: "carol before the block" }).waitFor({ state: "detached" });
  await alice.waitFor(`--- blocked (their chats and direct messages are not shown): ${carolWho}`);

  // What carol says now does not reach alice's page; it reaches the others, said after it.
  carol.say("carol during the block");
  await send(a, "alice after carol's blocked chat");
  await carol.waitFor("alice after carol's blocked chat");
  assert.equal(await a.locator("#log li", { hasText: "carol during the block" }).count(), 0);

  await a.locator("#peers .peer", { hasText: carolWho }).getByRole("button", { name: "Unblock" }).click();
  await line(a, "nobody is blocked");
  await line(a, "carol before the block"); // shown again
  assert.deepEqual(a.errors, [], "no script error");
  await a.context().close();
});

test("the node's reachability and each peer's path are on the page", async () => {
  const a = await open("alice");
  const bobWho = await bob.who();
  const reach = a.locator("#identity dt", { hasText: "reachability" }).locator("xpath=following-sibling::dd[1]");
  assert.match(await reach.textContent(), /^(reachable at 127\.0\.0\.1:\d+|behind NAT|reachability not known yet)$/);
  const peer = a.locator("#peers .peer", { hasText: bobWho });
  assert.equal(await peer.locator(".path").textContent(), "direct");
  await send(a, "/peers");
  assert.match(await (await line(a, "peer(s):")).textContent(), new RegExp(`${bobWho}\\s+127\\.0\\.0\\.1:\\d+\\s+\\w+\\s+direct`));
  await send(a, "/id");
  assert.match(await (await line(a, "peer id")).textContent(), /, (reachable at|behind NAT|reachability not known)/);
  assert.deepEqual(a.errors, [], "no script error");
  await a.context().close();
});

test("/quit from the page stops a headless node, which leaves the network", async () => {
  const b = await open("bob");
  await send(b, "/quit");
  await b.locator("#link[data-state=stopped]").waitFor();
  const { code } = await bob.exited;
  assert.equal(code, 0, "a clean exit");
  await alice.waitFor(`*** ${await bob.who()} left`);
  await b.context().close();
});
