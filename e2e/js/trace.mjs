// trace.mjs opens signalrd's live-trace page (admin listener /trace) in headless Chromium with
// playwright-core, waits until it shows the expected app server and client, asks the test to
// make the client send a message (GET triggerURL), waits for that message's live event row, then
// turns "show payloads" on, triggers again and waits for a row showing the payload text. It
// always saves a screenshot (trace.png) and the page's console log into artifactsDir.
//
//   node trace.mjs '{"pageURL":"http://127.0.0.1:9090/trace?token=t","triggerURL":"http://127.0.0.1:5000/send",
//                    "serverId":"...","connectionId":"...","payloadText":"...","artifactsDir":"/tmp/a"}'
//
// stdout: exactly one JSON line, {"ok":true,"dom":{...},"screenshot":"..."} (exit 0) or
// {"ok":false,"step":...,"error":...} (exit 1). stderr: progress and the page's console.
// Chromium: $CHROMIUM or /usr/bin/chromium.

import { chromium } from "playwright-core";
import fs from "node:fs/promises";
import path from "node:path";

function log(...args) {
  process.stderr.write(`[trace.mjs ${new Date().toISOString().slice(11, 23)}] ${args.join(" ")}\n`);
}

function result(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

let step = "start";

// dom reads what the page shows, from its data attributes and cells.
async function dom(page) {
  return page.evaluate(() => ({
    status: document.getElementById("status-text")?.textContent ?? "",
    servers: [...document.querySelectorAll("tr.server-row")].map((r) => ({
      serverId: r.dataset.serverId,
      cid: r.dataset.cid,
      text: r.textContent,
    })),
    clients: [...document.querySelectorAll("tr.client-row")].map((r) => ({
      connectionId: r.dataset.connectionId,
      cells: [...r.cells].map((c) => c.textContent),
    })),
    events: [...document.querySelectorAll("tr.event-row")].map((r) => ({
      kind: r.dataset.kind,
      cells: [...r.cells].map((c) => c.textContent),
    })),
  }));
}

async function trigger(url) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`trigger ${url}: ${res.status} ${await res.text()}`);
}

async function main() {
  const started = Date.now();
  let spec;
  try {
    spec = JSON.parse(process.argv[2]);
    for (const k of ["pageURL", "triggerURL", "serverId", "connectionId", "payloadText", "artifactsDir"]) {
      if (typeof spec[k] !== "string" || spec[k] === "") throw new Error(`spec.${k} is required`);
    }
    spec.timeoutMs ??= 20000;
  } catch (err) {
    result({ ok: false, step: "spec", error: String(err?.message ?? err) });
    return 1;
  }
  const watchdog = setTimeout(() => {
    result({ ok: false, step, error: `trace.mjs gave up after ${3 * spec.timeoutMs} ms` });
    process.exit(2);
  }, 3 * spec.timeoutMs + 15000);

  const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
  const consoleLines = [];
  let browser, page;
  const screenshot = path.join(spec.artifactsDir, "trace.png");
  const saveArtifacts = async () => {
    await fs.mkdir(spec.artifactsDir, { recursive: true });
    await page.screenshot({ path: screenshot, fullPage: true, timeout: 5000 });
    await fs.writeFile(path.join(spec.artifactsDir, "trace-console.log"), consoleLines.join("\n") + "\n");
  };
  try {
    step = "launch";
    browser = await chromium.launch({
      executablePath,
      headless: true,
      timeout: spec.timeoutMs,
      args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"],
    });
    log(`launched ${executablePath} ${browser.version()}`);
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    context.setDefaultTimeout(spec.timeoutMs);
    page = await context.newPage();
    page.on("console", (m) => { consoleLines.push(`${m.type()}: ${m.text()}`); log(`console ${m.type()}: ${m.text()}`); });
    page.on("pageerror", (err) => { consoleLines.push(`pageerror: ${err.message}`); log(`pageerror ${err.message}`); });

    step = "open";
    const resp = await page.goto(spec.pageURL);
    if (!resp || resp.status() !== 200) throw new Error(`GET /trace answered ${resp?.status()}`);

    step = "live";
    log(step);
    await page.waitForFunction(() => document.getElementById("status-text")?.textContent === "live", null, { polling: 50 });

    step = "topology";
    log(step);
    await page.waitForFunction(
      ({ serverId, connectionId }) =>
        document.querySelector(`tr.server-row[data-server-id="${CSS.escape(serverId)}"]`) &&
        document.querySelector(`tr.client-row[data-connection-id="${CSS.escape(connectionId)}"]`),
      { serverId: spec.serverId, connectionId: spec.connectionId },
      { polling: 100 },
    );

    step = "message event";
    log(step);
    await trigger(spec.triggerURL);
    const messageRow = ({ connectionId, text }) =>
      [...document.querySelectorAll('tr.event-row[data-kind="message"]')].some(
        (r) => r.textContent.includes(connectionId) && r.textContent.includes("client-to-server") && r.textContent.includes(text),
      );
    await page.waitForFunction(messageRow, { connectionId: spec.connectionId, text: "Invocation" }, { polling: 50 });
    const hidden = await page.evaluate((t) => document.getElementById("event-rows").textContent.includes(t), spec.payloadText);
    if (hidden) throw new Error("the payload text shows although payloads were not asked for");

    step = "payloads";
    log(step);
    await page.check("#payloads");
    await page.waitForFunction(() => document.getElementById("status-text")?.textContent === "live", null, { polling: 50 });
    await trigger(spec.triggerURL);
    await page.waitForFunction(messageRow, { connectionId: spec.connectionId, text: spec.payloadText }, { polling: 50 });

    step = "screenshot";
    log(step);
    await saveArtifacts();
    const d = await dom(page);
    result({ ok: true, chromium: browser.version(), durationMs: Date.now() - started, screenshot, dom: d });
    return 0;
  } catch (err) {
    const error = String(err?.message ?? err).split("\n")[0];
    log(`FAILED at ${step}: ${err?.stack ?? err}`);
    let d = null;
    try {
      if (page) {
        await saveArtifacts();
        d = await dom(page);
      }
    } catch (e) {
      log(`collecting artifacts failed: ${e.message}`);
    }
    result({ ok: false, step, error, dom: d, screenshot, durationMs: Date.now() - started });
    return 1;
  } finally {
    if (browser) await browser.close().catch((e) => log(`closing the browser: ${e.message}`));
    clearTimeout(watchdog);
  }
}

process.exitCode = await main();
