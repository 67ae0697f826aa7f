// driver.mjs lets Go tests (package e2e/jsclient) drive the official
// @microsoft/signalr client. It reads one JSON command per line on stdin and
// writes one JSON reply per command plus unsolicited event lines on stdout;
// stderr carries human-readable logs only. See README.md for the protocol.
//
// Commands run concurrently: a pending invoke must not block the stop or
// handleResult that the test issues while the server is still working.

import { createRequire } from "node:module";
import readline from "node:readline";

// The packages have no "exports" map, so an ESM import would pick the CJS
// build anyway; require() keeps us on the documented Node code path (which
// loads ws, eventsource and node-fetch itself).
const require = createRequire(import.meta.url);
const signalR = require("@microsoft/signalr");
const { MessagePackHubProtocol } = require("@microsoft/signalr-protocol-msgpack");
const msgpackVersion = require("@microsoft/signalr-protocol-msgpack/package.json").version;

/** @type {Map<string, {hub: any, handlers: Map<string, {name: string, mode: string, value: any}>}>} */
const conns = new Map();
let exiting = false;

function log(...parts) {
  process.stderr.write(`[driver] ${parts.join(" ")}\n`);
}

function write(obj) {
  let line;
  try {
    line = JSON.stringify(obj);
  } catch (e) {
    // Only reachable for values toWire could not tame; keep the seq so the
    // Go side is not left waiting.
    line = JSON.stringify({ seq: obj.seq ?? null, ok: false, error: `driver: cannot encode reply: ${errString(e)}` });
  }
  process.stdout.write(line + "\n");
}

function errString(e) {
  if (e === undefined || e === null) return "";
  if (e instanceof Error) return e.message || String(e);
  return String(e);
}

// toWire turns values produced by the client (msgpack may yield Uint8Array,
// Map, bigint, Date) into something JSON can carry losslessly enough for tests.
function toWire(v) {
  if (v === undefined) return null;
  if (v === null || typeof v === "string" || typeof v === "boolean") return v;
  if (typeof v === "number") return Number.isFinite(v) ? v : String(v);
  if (typeof v === "bigint") return Number.isSafeInteger(Number(v)) ? Number(v) : v.toString();
  if (v instanceof Uint8Array) return { $bin: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("base64") };
  if (v instanceof ArrayBuffer) return { $bin: Buffer.from(v).toString("base64") };
  if (v instanceof Date) return v.toISOString();
  if (Array.isArray(v)) return v.map(toWire);
  if (v instanceof Map) {
    const o = {};
    for (const [k, x] of v) o[String(k)] = toWire(x);
    return o;
  }
  if (typeof v === "object") {
    const o = {};
    for (const [k, x] of Object.entries(v)) o[k] = toWire(x);
    return o;
  }
  return String(v);
}

// fromWire is the inverse for values coming from Go: {"$bin":"<base64>"}
// becomes a Uint8Array so msgpack sends a real bin value.
function fromWire(v) {
  if (Array.isArray(v)) return v.map(fromWire);
  if (v !== null && typeof v === "object") {
    const keys = Object.keys(v);
    if (keys.length === 1 && keys[0] === "$bin" && typeof v.$bin === "string") {
      return new Uint8Array(Buffer.from(v.$bin, "base64"));
    }
    const o = {};
    for (const k of keys) o[k] = fromWire(v[k]);
    return o;
  }
  return v;
}

const logLevels = {
  "": signalR.LogLevel.Error,
  trace: signalR.LogLevel.Trace,
  debug: signalR.LogLevel.Debug,
  information: signalR.LogLevel.Information,
  info: signalR.LogLevel.Information,
  warning: signalR.LogLevel.Warning,
  warn: signalR.LogLevel.Warning,
  error: signalR.LogLevel.Error,
  critical: signalR.LogLevel.Critical,
  none: signalR.LogLevel.None,
};

function parseTransport(t) {
  if (t === undefined || t === null || t === "") return undefined; // any
  let mask = 0;
  for (const part of String(t).split(/[|,\s]+/).filter(Boolean)) {
    const bit = signalR.HttpTransportType[part];
    if (typeof bit !== "number") throw new Error(`unknown transport ${JSON.stringify(part)}`);
    mask |= bit;
  }
  return mask;
}

const transportClasses = {
  WebSocketTransport: "WebSockets",
  ServerSentEventsTransport: "ServerSentEvents",
  LongPollingTransport: "LongPolling",
};

function transportName(hub) {
  // HubConnection.connection / HttpConnection.transport are internal but
  // stable across 6.x-10.x; tests use this to assert the negotiated transport.
  const name = hub?.connection?.transport?.constructor?.name ?? "";
  return transportClasses[name] ?? name;
}

function getConn(name) {
  const c = conns.get(name);
  if (!c) throw new Error(`unknown connection ${JSON.stringify(name)}`);
  return c;
}

// register installs at most one JS handler per method: with several handlers
// the client keeps only the last return value, so a plain event handler added
// after a result handler would silently turn the result into "no result".
function register(c, connName, method) {
  if (typeof method !== "string" || method === "") throw new Error("method must be a non-empty string");
  const key = method.toLowerCase();
  let h = c.handlers.get(key);
  if (h) return h;
  h = { name: method, mode: "none", value: undefined };
  c.handlers.set(key, h);
  c.hub.on(method, (...args) => {
    write({ event: "message", conn: connName, method: h.name, args: toWire(args) });
    if (h.mode === "result") return fromWire(h.value);
    if (h.mode === "error") throw new Error(h.value);
    return undefined;
  });
  return h;
}

async function opConnect(cmd) {
  const name = cmd.conn;
  if (typeof name !== "string" || name === "") throw new Error("conn must be a non-empty string");
  if (typeof cmd.url !== "string" || cmd.url === "") throw new Error("url must be a non-empty string");
  const old = conns.get(name);
  if (old && old.hub.state !== signalR.HubConnectionState.Disconnected) {
    throw new Error(`connection ${JSON.stringify(name)} already exists in state ${old.hub.state}`);
  }

  const level = logLevels[String(cmd.logLevel ?? "").toLowerCase()];
  if (level === undefined) throw new Error(`unknown logLevel ${JSON.stringify(cmd.logLevel)}`);
  const logger = {
    log(l, message) {
      if (l >= level && level !== signalR.LogLevel.None) {
        process.stderr.write(`[${name}] ${signalR.LogLevel[l]}: ${message}\n`);
      }
    },
  };

  const options = { logger, skipNegotiation: !!cmd.skipNegotiation };
  const transport = parseTransport(cmd.transport);
  if (transport !== undefined) options.transport = transport;
  if (typeof cmd.accessToken === "string" && cmd.accessToken !== "") {
    const token = cmd.accessToken;
    options.accessTokenFactory = () => token;
  }
  if (cmd.headers && typeof cmd.headers === "object") options.headers = { ...cmd.headers };

  let builder = new signalR.HubConnectionBuilder().withUrl(cmd.url, options).configureLogging(logger);
  switch (cmd.protocol ?? "") {
    case "":
    case "json":
      break;
    case "messagepack":
      builder = builder.withHubProtocol(new MessagePackHubProtocol());
      break;
    default:
      throw new Error(`unknown protocol ${JSON.stringify(cmd.protocol)}`);
  }
  if (cmd.statefulReconnect) builder = builder.withStatefulReconnect();
  if (cmd.automaticReconnect) {
    builder = Array.isArray(cmd.reconnectDelaysMs)
      ? builder.withAutomaticReconnect(cmd.reconnectDelaysMs.map(Number))
      : builder.withAutomaticReconnect();
  }
  if (cmd.serverTimeoutMs > 0) builder = builder.withServerTimeout(Number(cmd.serverTimeoutMs));
  if (cmd.keepAliveIntervalMs > 0) builder = builder.withKeepAliveInterval(Number(cmd.keepAliveIntervalMs));

  const hub = builder.build();
  const c = { hub, handlers: new Map() };
  for (const m of cmd.handlers ?? []) register(c, name, m);
  hub.onclose((err) => write({ event: "close", conn: name, error: errString(err) }));
  hub.onreconnecting((err) => write({ event: "reconnecting", conn: name, error: errString(err) }));
  hub.onreconnected((id) => write({ event: "reconnected", conn: name, connectionId: id ?? "" }));

  conns.set(name, c);
  try {
    await hub.start();
  } catch (e) {
    if (conns.get(name) === c) conns.delete(name);
    throw e;
  }
  return { connectionId: hub.connectionId ?? "", transport: transportName(hub) };
}

async function opInvoke(cmd) {
  const c = getConn(cmd.conn);
  const result = await c.hub.invoke(cmd.method, ...fromWire(cmd.args ?? []));
  return { result: toWire(result) };
}

async function opSend(cmd) {
  const c = getConn(cmd.conn);
  await c.hub.send(cmd.method, ...fromWire(cmd.args ?? []));
  return {};
}

function opStream(cmd) {
  const c = getConn(cmd.conn);
  const items = [];
  return new Promise((resolve, reject) => {
    c.hub.stream(cmd.method, ...fromWire(cmd.args ?? [])).subscribe({
      next: (item) => items.push(toWire(item)),
      complete: () => resolve({ items }),
      error: (err) => {
        const e = new Error(errString(err));
        e.extra = { items };
        reject(e);
      },
    });
  });
}

async function opStop(cmd) {
  const c = getConn(cmd.conn);
  await c.hub.stop();
  return {};
}

function opState(cmd) {
  const c = getConn(cmd.conn);
  return { state: c.hub.state, connectionId: c.hub.connectionId ?? "", transport: transportName(c.hub) };
}

function opOn(cmd) {
  register(getConn(cmd.conn), cmd.conn, cmd.method);
  return {};
}

function opHandleResult(cmd) {
  const h = register(getConn(cmd.conn), cmd.conn, cmd.method);
  if (typeof cmd.error === "string" && cmd.error !== "") {
    h.mode = "error";
    h.value = cmd.error;
  } else {
    h.mode = "result";
    // A missing result means null: undefined would make the client answer
    // "Client didn't provide a result.".
    h.value = cmd.result === undefined ? null : cmd.result;
  }
  return {};
}

async function stopAll() {
  await Promise.allSettled([...conns.values()].map((c) => c.hub.stop()));
}

async function opExit() {
  exiting = true;
  await withTimeout(stopAll(), 5000);
  return {};
}

function withTimeout(p, ms) {
  let timer;
  return Promise.race([p, new Promise((resolve) => (timer = setTimeout(resolve, ms)))]).finally(() =>
    clearTimeout(timer),
  );
}

const ops = {
  ping: () => ({ signalr: signalR.VERSION, msgpack: msgpackVersion, node: process.version }),
  connect: opConnect,
  invoke: opInvoke,
  send: opSend,
  stream: opStream,
  stop: opStop,
  state: opState,
  on: opOn,
  handleResult: opHandleResult,
  exit: opExit,
};

async function handle(line) {
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (e) {
    write({ seq: null, ok: false, error: `driver: bad JSON: ${errString(e)}` });
    return;
  }
  // Only a numeric seq can be matched by the Go side; anything else is
  // answered with seq:null so the reply is still visible in the test log.
  const seq = typeof cmd?.seq === "number" ? cmd.seq : null;
  try {
    if (cmd === null || typeof cmd !== "object" || Array.isArray(cmd)) throw new Error("command must be a JSON object");
    if (exiting && cmd.op !== "exit") throw new Error("driver is exiting");
    const fn = Object.hasOwn(ops, cmd.op) ? ops[cmd.op] : undefined;
    if (!fn) throw new Error(`unknown op ${JSON.stringify(cmd.op)}`);
    if (cmd.args !== undefined && !Array.isArray(cmd.args)) throw new Error("args must be an array");
    const reply = await fn(cmd);
    write({ seq, ok: true, ...reply });
    if (cmd.op === "exit") finish(0);
  } catch (e) {
    write({ seq, ok: false, error: errString(e), ...(e?.extra ?? {}) });
  }
}

function finish(code) {
  // stdout is a pipe (synchronous on Linux); the callback form still makes
  // sure the last reply is flushed before the process goes away.
  process.stdout.write("", () => process.exit(code));
}

// A driver that dies takes every pending Go call with it; log and keep going
// instead (the client library occasionally rejects promises nobody awaits).
process.on("uncaughtException", (e) => log("uncaught exception:", e?.stack ?? errString(e)));
process.on("unhandledRejection", (e) => log("unhandled rejection:", e?.stack ?? errString(e)));

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity, terminal: false });
rl.on("line", (line) => {
  if (line.trim() === "") return;
  handle(line).catch((e) => log("handler failed:", errString(e)));
});
// EOF on stdin means the Go side is gone (or done): do not linger as an orphan.
rl.on("close", () => {
  exiting = true;
  withTimeout(stopAll(), 5000).finally(() => finish(0));
});
