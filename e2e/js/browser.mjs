// browser.mjs drives the chat sample (e2e/chatapp) in headless Chromium with playwright-core:
// two users (two browser contexts) connect with the requested transport and hub protocol, each
// sends one message, and both pages must show both messages in order.
//
//   node browser.mjs '{"baseURL":"http://127.0.0.1:5000","transport":"WebSockets","protocol":"json","artifactsDir":"/tmp/a"}'
//   echo '{...}' | node browser.mjs
//
// stdout: exactly one JSON line, {"ok":true,...} (exit 0) or {"ok":false,"error":...} (exit 1).
// stderr: progress and the pages' console output. On failure, screenshots and console logs of
// both pages are written to artifactsDir (when set). Chromium: $CHROMIUM or /usr/bin/chromium.

import { chromium } from "playwright-core";
import fs from "node:fs/promises";
import path from "node:path";

const TRANSPORTS = ["WebSockets", "ServerSentEvents", "LongPolling"];
const PROTOCOLS = ["json", "messagepack"];
const USERS = ["alice", "bob"];

function log(...args) {
  process.stderr.write(`[browser.mjs ${new Date().toISOString().slice(11, 23)}] ${args.join(" ")}\n`);
}

function result(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

async function readSpec() {
  let raw = process.argv[2];
  if (raw === undefined || raw === "-") {
    const chunks = [];
    for await (const c of process.stdin) chunks.push(c);
    raw = Buffer.concat(chunks).toString("utf8");
  }
  const spec = JSON.parse(raw);
  if (typeof spec.baseURL !== "string" || !/^https?:\/\//.test(spec.baseURL)) {
    throw new Error(`spec.baseURL must be an http(s) URL, got ${JSON.stringify(spec.baseURL)}`);
  }
  spec.baseURL = spec.baseURL.replace(/\/+$/, "");
  spec.transport ??= "WebSockets";
  spec.protocol ??= "json";
  if (!TRANSPORTS.includes(spec.transport)) throw new Error(`unknown transport ${JSON.stringify(spec.transport)}`);
  if (!PROTOCOLS.includes(spec.protocol)) throw new Error(`unknown protocol ${JSON.stringify(spec.protocol)}`);
  spec.timeoutMs ??= 20000;
  return spec;
}

// Step names say where a failure happened.
let step = "start";

// One user's page plus what it did on the network towards the service's /client/ endpoint.
class User {
  constructor(name, context, page) {
    this.name = name;
    this.context = context;
    this.page = page;
    this.console = [];
    this.net = { websockets: [], eventsources: [], polls: [], failed: [] };
    page.on("console", (m) => {
      const line = `${m.type()}: ${m.text()}`;
      this.console.push(line);
      log(`${name} console ${line}`);
    });
    page.on("pageerror", (err) => {
      this.console.push(`pageerror: ${err.message}`);
      log(`${name} pageerror ${err.message}`);
    });
    page.on("websocket", (ws) => {
      if (isClientURL(ws.url())) this.net.websockets.push(ws.url());
    });
    page.on("request", (req) => {
      if (!isClientURL(req.url())) return;
      if (req.resourceType() === "eventsource") this.net.eventsources.push(req.url());
      else if (req.method() === "GET" && !req.url().includes("/client/negotiate")) this.net.polls.push(req.url());
    });
    page.on("requestfailed", (req) => {
      const f = `${req.method()} ${req.url()}: ${req.failure()?.errorText ?? "failed"}`;
      this.net.failed.push(f);
      log(`${name} request failed ${f}`);
    });
  }

  state() {
    return this.page.evaluate(() => window.chatState ?? null);
  }

  async domMessages() {
    return this.page.$$eval("#messages li.message", (lis) =>
      lis.map((li) => ({ user: li.querySelector(".user")?.textContent ?? "", text: li.querySelector(".text")?.textContent ?? "" })),
    );
  }
}

// The service's client endpoint (negotiate and transports), as opposed to the app's pages.
function isClientURL(u) {
  try {
    return new URL(u).pathname.startsWith("/client");
  } catch {
    return false;
  }
}

async function waitConnected(u, timeout) {
  await u.page.waitForFunction(
    () => window.chatState && (window.chatState.state === "Connected" || window.chatState.error !== ""),
    null,
    { timeout, polling: 50 },
  );
  const s = await u.state();
  if (s.state !== "Connected") throw new Error(`${u.name} did not connect: state ${s.state}, error ${JSON.stringify(s.error)}`);
  return s;
}

async function waitMessages(u, n, timeout) {
  await u.page.waitForFunction((n) => window.chatState.messages.length >= n || window.chatState.error !== "", n, {
    timeout,
    polling: 50,
  });
  const s = await u.state();
  if (s.error) throw new Error(`${u.name} shows an error: ${s.error}`);
}

async function send(u, text) {
  await u.page.fill("#message-input", text);
  await u.page.click("#send-button");
  // The page clears the input once the hub method completed.
  await u.page.waitForFunction(() => document.getElementById("message-input").value === "" || window.chatState.error !== "", null, {
    polling: 50,
  });
  const s = await u.state();
  if (s.error) throw new Error(`${u.name} send failed: ${s.error}`);
}

function checkTransport(u, s, spec) {
  if (s.transport !== spec.transport) {
    throw new Error(`${u.name} selected transport ${JSON.stringify(s.transport)}, want ${spec.transport}`);
  }
  if (s.hubProtocol !== spec.protocol) {
    throw new Error(`${u.name} uses hub protocol ${JSON.stringify(s.hubProtocol)}, want ${spec.protocol}`);
  }
  // Cross-check on the wire: the client could only have used what it opened.
  const { websockets, eventsources, polls } = u.net;
  const ok = {
    WebSockets: websockets.length > 0 && eventsources.length === 0,
    ServerSentEvents: eventsources.length > 0 && websockets.length === 0,
    LongPolling: polls.length > 0 && websockets.length === 0 && eventsources.length === 0,
  }[spec.transport];
  if (!ok) {
    throw new Error(
      `${u.name}: network does not match ${spec.transport}: ${websockets.length} websockets, ${eventsources.length} eventsources, ${polls.length} polls`,
    );
  }
}

async function saveArtifacts(users, dir) {
  const saved = [];
  if (!dir) return saved;
  await fs.mkdir(dir, { recursive: true });
  for (const u of users) {
    const shot = path.join(dir, `${u.name}.png`);
    try {
      await u.page.screenshot({ path: shot, fullPage: true, timeout: 5000 });
      saved.push(shot);
    } catch (err) {
      log(`screenshot of ${u.name} failed: ${err.message}`);
    }
    const con = path.join(dir, `${u.name}-console.log`);
    const net = JSON.stringify(u.net, null, 2);
    await fs.writeFile(con, u.console.join("\n") + "\n\nnetwork (service /client requests):\n" + net + "\n");
    saved.push(con);
  }
  return saved;
}

async function main() {
  const started = Date.now();
  let spec;
  try {
    spec = await readSpec();
  } catch (err) {
    result({ ok: false, step: "spec", error: String(err?.message ?? err) });
    return 1;
  }
  // Never hang the caller: a wedged browser is a failure too.
  const watchdog = setTimeout(() => {
    result({ ok: false, step, error: `browser.mjs gave up after ${3 * spec.timeoutMs} ms` });
    process.exit(2);
  }, 3 * spec.timeoutMs + 15000);

  const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
  let browser;
  const users = [];
  try {
    step = "launch";
    // launch() gives every run a fresh temporary profile (user data dir) and removes it on close.
    browser = await chromium.launch({
      executablePath,
      headless: true,
      timeout: spec.timeoutMs,
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
    log(`launched ${executablePath} ${browser.version()}`);

    step = "open";
    for (const name of USERS) {
      const context = await browser.newContext();
      context.setDefaultTimeout(spec.timeoutMs);
      const page = await context.newPage();
      users.push(new User(name, context, page));
    }
    await Promise.all(
      users.map((u) => {
        const q = new URLSearchParams({ user: u.name, transport: spec.transport, protocol: spec.protocol });
        return u.page.goto(`${spec.baseURL}/?${q}`);
      }),
    );

    step = "connect";
    const states = await Promise.all(users.map((u) => waitConnected(u, spec.timeoutMs)));
    users.forEach((u, i) => checkTransport(u, states[i], spec));
    log(`connected: ${states.map((s) => `${s.user}=${s.connectionId} ${s.transport}/${s.hubProtocol}`).join(", ")}`);

    const nonce = Math.random().toString(36).slice(2, 8);
    const want = [
      { user: "alice", text: `hello from alice ${nonce} 👋 <b>` },
      { user: "bob", text: `hi alice, bob here ${nonce} ünïcode` },
    ];
    const [alice, bob] = users;

    step = "alice sends";
    await send(alice, want[0].text);
    await Promise.all(users.map((u) => waitMessages(u, 1, spec.timeoutMs)));

    step = "bob sends";
    await send(bob, want[1].text);
    await Promise.all(users.map((u) => waitMessages(u, 2, spec.timeoutMs)));

    step = "verify";
    for (const u of users) {
      const s = await u.state();
      const got = s.messages.map(({ user, text }) => ({ user, text }));
      const dom = await u.domMessages();
      for (const [what, list] of [["chatState.messages", got], ["#messages", dom]]) {
        if (JSON.stringify(list) !== JSON.stringify(want)) {
          throw new Error(`${u.name}'s ${what} = ${JSON.stringify(list)}, want ${JSON.stringify(want)}`);
        }
      }
      if (s.state !== "Connected") throw new Error(`${u.name} is ${s.state} after the exchange: ${s.error}`);
    }

    const final = await Promise.all(users.map((u) => u.state()));
    result({
      ok: true,
      transport: spec.transport,
      protocol: spec.protocol,
      chromium: browser.version(),
      durationMs: Date.now() - started,
      users: final.map((s, i) => ({
        user: s.user,
        connectionId: s.connectionId,
        transport: s.transport,
        hubProtocol: s.hubProtocol,
        websockets: users[i].net.websockets.length,
        eventsources: users[i].net.eventsources.length,
        polls: users[i].net.polls.length,
      })),
    });
    return 0;
  } catch (err) {
    const error = String(err?.message ?? err).split("\n")[0];
    log(`FAILED at ${step}: ${err?.stack ?? err}`);
    let artifacts = [];
    let states = {};
    try {
      artifacts = await saveArtifacts(users, spec.artifactsDir);
      for (const u of users) states[u.name] = await u.state().catch((e) => `unavailable: ${e.message}`);
    } catch (e) {
      log(`collecting artifacts failed: ${e.message}`);
    }
    result({
      ok: false,
      step,
      error,
      transport: spec.transport,
      protocol: spec.protocol,
      artifacts,
      states,
      failedRequests: Object.fromEntries(users.map((u) => [u.name, u.net.failed])),
      durationMs: Date.now() - started,
    });
    return 1;
  } finally {
    if (browser) await browser.close().catch((e) => log(`closing the browser: ${e.message}`));
    clearTimeout(watchdog);
  }
}

process.exitCode = await main();
