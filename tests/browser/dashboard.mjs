// Drives the operations dashboard as a person would, in Debian's Chromium:
// opens the page, types the API key, connects, and reports what is on the
// screen as one JSON line per snapshot. A line "again" on stdin waits for
// the page's own auto-refresh (no reload) and reports again; "done" or the
// end of stdin takes the screenshot and quits; "search <mode> <query>" picks
// the mode, types the query into the search box, submits it and reports the
// hits; "context" ticks "with context" for the searches after it.
//   node dashboard.mjs <base URL> <API key> <screenshot.png>
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";

const [base, key, screenshot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  // This machine has no network beyond loopback: keep Chromium from trying.
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
const problems = [];
page.on("pageerror", (error) => problems.push(String(error)));
page.on("console", (message) => { if (message.type() === "error") problems.push(message.text()); });

async function snapshot() {
  return page.evaluate(() => {
    const text = (selector) => document.querySelector(selector)?.textContent.trim();
    const rows = (selector, read) => [...document.querySelectorAll(selector)].map(read);
    const visible = (selector) => { const e = document.querySelector(selector); return !!e && e.offsetParent !== null; };
    return {
      tenant: text("#tenant"),
      health: text("#health"),
      updated: text("#updated"),
      error: visible("#error") ? text("#error") : null,
      states: Object.fromEntries(rows("[data-state]", (e) => [e.dataset.state, Number(e.querySelector("b").textContent)])),
      queues: Object.fromEntries(rows("[data-queue]", (e) => [e.dataset.queue, e.querySelector(".dead-letters").textContent])),
      services: rows("#services tr", (e) => e.textContent.trim()),
      syncs: rows("[data-sync]", (e) => Object.fromEntries(["scanned", "new", "unchanged", "note"]
        .map((c) => [c, e.querySelector("." + c).textContent]).concat([["prefix", e.querySelector("code").textContent],
          ["state", e.querySelector(".pill").textContent]]))),
      failures: rows("[data-job]", (e) => ({ key: e.querySelector("code").textContent, reason: e.querySelector(".reason").textContent })),
      cost: text("#cost"), budget: text("#budget"), tokens: text("#tokens"),
      completed_last_hour: Number(text("#completed-hour")),
      throughput_bars: document.querySelectorAll("#throughput g[data-minute]").length,
      key_field_empty: document.querySelector("#key").value === "",
      hits: rows("[data-hit]", (e) => ({ key: e.querySelector("code").textContent,
        where: e.querySelector(".where").textContent, headings: e.querySelector(".headings").textContent,
        context: e.querySelector(".context")?.textContent ?? null })),
      no_results: document.querySelector("#hits .muted") !== null,
    };
  });
}

async function report() {
  console.log(JSON.stringify({ ...(await snapshot()), problems }));
}

await page.goto(base + "/");
await page.getByLabel("API key").fill(key);
await page.getByRole("button", { name: "Connect" }).click();
await page.waitForFunction(() => document.querySelector("#updated").textContent !== "never"
  || getComputedStyle(document.querySelector("#error")).display !== "none", null, { timeout: 20000 });
await report();

for await (const line of createInterface({ input: process.stdin })) {
  if (line.startsWith("search ")) {
    const [, mode, ...words] = line.split(" ");
    const query = words.join(" ");
    await page.getByLabel("Search mode").selectOption(mode);
    await page.getByLabel("Search query").fill(query);
    await page.getByRole("button", { name: "Search" }).click();
    await page.waitForFunction(([q, m]) => {
      const hits = document.querySelector("#hits");
      return (hits.dataset.query === q && hits.dataset.mode === m)
        || getComputedStyle(document.querySelector("#error")).display !== "none";
    }, [query, mode], { timeout: 20000 });
    await report();
    continue;
  }
  if (line.trim() === "context") {
    await page.getByLabel("with context").check();
    continue;
  }
  if (line.trim() !== "again") break;
  const before = await page.textContent("#updated");
  await page.waitForFunction((previous) => document.querySelector("#updated").textContent !== previous,
    before, { timeout: 20000 });
  await report();
}
await page.screenshot({ path: screenshot, fullPage: true });
await browser.close();
process.exit(0); // stdin may still be open
