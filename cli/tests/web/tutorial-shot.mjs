// Makes the screenshots of TUTORIAL.md's web section from a real conversation: Bob and Carol
// chat while Alice is away; Alice then starts a node with --web, and her page shows what she
// missed, marked, before the three go on talking. Not a test; run by hand after a change to the
// page's look:
//
//   cargo build -p p2p-chat
//   cd cli/tests/web && npm ci
//   P2P_CHAT_BIN=$CARGO_TARGET_DIR/debug/p2p-chat node tutorial-shot.mjs ../../../docs

import path from "node:path";
import { Node, launch } from "./nodes.mjs";

const out = process.argv[2] ?? ".";
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// TUTORIAL.md's ports: Bob listens on 7401, Alice on 7402 with the page on 8090.
const bob = new Node("bob", ["listen", "-p", "7401", "-u", "Bob"]);
const bobAddr = `127.0.0.1:${await bob.port()}`;
const carol = new Node("carol", ["connect", "-a", bobAddr, "-u", "Carol"]);
await bob.waitFor("connected to Carol#");
bob.say("Is Alice around? I want to show her the web page.");
await carol.waitFor("show her the web page");
carol.say("Not yet. She will see this when she comes, marked as missed.");
await bob.waitFor("marked as missed");
// Older than 5 s when Alice fetches them: caught up, not live.
await sleep(6_000);

const alice = new Node("alice", ["listen", "-p", "7402", "-u", "Alice", "--bootstrap", bobAddr, "--web"]);
const url = /open (http:\S+)/.exec(await alice.waitFor("web interface: open "))[1];
const browser = await launch();
try {
  const wide = await browser.newPage({ viewport: { width: 1100, height: 560 } });
  await wide.goto(url);
  await wide.locator("#log li", { hasText: "marked as missed" }).waitFor();
  const send = async (text) => {
    await wide.locator("#send-text").fill(text);
    await wide.locator("#send-text").press("Enter");
    await carol.waitFor(text);
  };
  await send("Here now, in the browser. Your two chats came in dimmed, marked as missed.");
  bob.say("And this one is live: every tab of yours gets it at once.");
  await wide.locator("#log li", { hasText: "every tab of yours" }).waitFor();
  carol.say("Try /peers: it answers in the chat, as in the terminal.");
  await wide.locator("#log li", { hasText: "Try /peers" }).waitFor();
  await wide.locator("#send-text").fill("/peers");
  await wide.locator("#send-text").press("Enter");
  await wide.locator("#log li", { hasText: "peer(s):" }).waitFor();
  await wide.locator("#send-text").blur();
  await wide.screenshot({ path: path.join(out, "web.png") });

  const phone = await browser.newPage({ viewport: { width: 375, height: 640 }, isMobile: true, hasTouch: true });
  await phone.goto(url);
  await phone.locator("#log li", { hasText: "Try /peers" }).waitFor();
  await phone.locator("#send-text").blur();
  await phone.screenshot({ path: path.join(out, "web-phone.png") });
  // What the terminals printed, for the tutorial's transcript.
  await alice.say("/quit");
  await alice.exited;
  for (const n of [alice, bob, carol]) console.log(`== ${n.name}\n${n.lines.join("\n")}`);
} finally {
  await browser.close();
  for (const n of [alice, bob, carol]) n.stop();
}
