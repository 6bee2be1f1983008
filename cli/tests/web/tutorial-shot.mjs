// Makes the screenshots of TUTORIAL.md's web section from a real conversation: Alice chats with
// Bob and Carol, leaves, and they go on while she is away; she then comes back with --web, and her
// page shows what she missed, marked, before the three go on talking. Not a test; run by hand
// after a change to the page's look:
//
//   cargo build -p p2p-chat
//   cd cli/tests/web && npm ci
//   P2P_CHAT_BIN=$CARGO_TARGET_DIR/debug/p2p-chat node tutorial-shot.mjs ../../../docs
//
// It prints what the three terminals showed, for the tutorial's transcript.

import fs from "node:fs";
import path from "node:path";
import { Node, launch } from "./nodes.mjs";

const out = process.argv[2] ?? ".";
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// TUTORIAL.md's ports: Bob listens on 7401, Alice on 7402 with the page on 8090.
const bob = new Node("bob", ["listen", "-p", "7401", "-u", "Bob"]);
const bobAddr = `127.0.0.1:${await bob.port()}`;
const carol = new Node("carol", ["connect", "-a", bobAddr, "-u", "Carol"]);
await bob.waitFor("connected to Carol#");
const db = "/tmp/p2p-tutorial/alice-db";
fs.rmSync(db, { recursive: true, force: true });
const first = new Node("alice (first run)", ["listen", "-p", "7402", "-u", "Alice", "--bootstrap", bobAddr,
  "--persist", "--db-path", db]);
await first.waitFor("connected to Bob#");
first.say("Back in a minute, I'll switch to the browser.");
await carol.waitFor("switch to the browser");
first.say("/quit");
await first.exited;
bob.say("While she is away: the page shows what she missed, marked.");
await carol.waitFor("what she missed");
carol.say("Same as the terminal does. Let's see.");
await bob.waitFor("Let's see");
// Older than 5 s when Alice fetches them: caught up, not live.
await sleep(6_000);

const alice = new Node("alice", ["listen", "-p", "7402", "-u", "Alice", "--persist", "--db-path", db, "--web"]);
const url = /open (http:\S+)/.exec(await alice.waitFor("web interface: open "))[1];
const browser = await launch();
try {
  const wide = await browser.newPage({ viewport: { width: 1100, height: 660 } });
  await wide.goto(url);
  await wide.locator("#log li", { hasText: "Let's see" }).waitFor();
  const send = async (text) => {
    await wide.locator("#send-text").fill(text);
    await wide.locator("#send-text").press("Enter");
    await carol.waitFor(text);
  };
  await send("Here, in the browser: your two lines came in dimmed, marked as missed.");
  bob.say("And this one is live: every tab of yours gets it at once.");
  await wide.locator("#log li", { hasText: "every tab of yours" }).waitFor();
  carol.say("Try /peers: it answers in the chat, as in the terminal.");
  await wide.locator("#log li", { hasText: "Try /peers" }).waitFor();
  await wide.locator("#send-text").fill("/peers");
  await wide.locator("#send-text").press("Enter");
  await wide.locator("#log li", { hasText: "peer(s):" }).waitFor();
  await wide.locator("#send-text").blur();
  await sleep(2_500); // the stats panel's next refresh
  await wide.screenshot({ path: path.join(out, "web.png") });

  const phone = await browser.newPage({ viewport: { width: 375, height: 640 }, isMobile: true, hasTouch: true });
  await phone.goto(url);
  await phone.locator("#log li", { hasText: "Try /peers" }).waitFor();
  await phone.locator("#send-text").blur();
  await phone.screenshot({ path: path.join(out, "web-phone.png") });
  // What the terminals printed, for the tutorial's transcript.
  await alice.say("/quit");
  await alice.exited;
  for (const n of [first, alice, bob, carol]) console.log(`== ${n.name}\n${n.lines.join("\n")}`);
} finally {
  await browser.close();
  for (const n of [alice, bob, carol]) n.stop();
}
