// Real `p2p-chat` processes and the browser, for the browser tests and the tutorial's screenshot.
//   P2P_CHAT_BIN   the p2p-chat binary
//   CHROMIUM       the Chromium executable (default /usr/bin/chromium)

import { spawn } from "node:child_process";
import { chromium } from "playwright-core";

const BIN = process.env.P2P_CHAT_BIN;
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
export const WAIT_MS = 30_000;

/** A `p2p-chat` process: its output lines, and a way to type into it. */
export class Node {
  constructor(name, args) {
    if (!BIN) throw new Error("P2P_CHAT_BIN must name the p2p-chat binary");
    this.name = name;
    this.lines = [];
    this.waiters = [];
    this.child = spawn(BIN, args, { stdio: ["pipe", "pipe", "pipe"] });
    this.exited = new Promise((resolve) => this.child.on("exit", (code, signal) => resolve({ code, signal })));
    for (const stream of [this.child.stdout, this.child.stderr]) {
      let rest = "";
      stream.setEncoding("utf8");
      stream.on("data", (chunk) => {
        const parts = (rest + chunk).split("\n");
        rest = parts.pop();
        for (const l of parts) this.line(l);
      });
    }
  }

  line(l) {
    this.lines.push(l);
    this.waiters = this.waiters.filter((w) => !(l.includes(w.needle) && (w.resolve(l), true)));
  }

  /** The first line that contains `needle`, waiting for it if need be. */
  waitFor(needle) {
    const seen = this.lines.find((l) => l.includes(needle));
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const w = { needle, resolve };
      this.waiters.push(w);
      setTimeout(() => {
        if (this.waiters.includes(w)) {
          reject(new Error(`${this.name}: no line with ${JSON.stringify(needle)} in time; output:\n${this.lines.join("\n")}`));
        }
      }, WAIT_MS);
    });
  }

  say(line) {
    this.child.stdin.write(line + "\n");
  }

  async port() {
    const l = await this.waitFor("listening on ");
    return Number(/listening on [^;]*:(\d+);/.exec(l)[1]);
  }

  async url() {
    return /open (http:\S+)/.exec(await this.waitFor("web interface: open "))[1];
  }

  async who() {
    return /you are (\S+)/.exec(await this.waitFor("you are "))[1];
  }

  stop() {
    this.child.stdin.end();
    this.child.kill("SIGTERM");
  }
}

/** Headless Chromium, with `extra` flags. */
export function launch(extra = []) {
  return chromium.launch({
    executablePath: CHROMIUM,
    // As root (CI) Chromium runs only without its sandbox. The rest keep it off the network.
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", ...extra],
  });
}
