// The /check page in headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core;
// no browser is downloaded): opens BASE/check#key=KEY, waits for the verdict, and prints what
// the page shows and its result object as one JSON line. ICE stays on loopback (the flags).
//
// Input (environment): BASE (http://127.0.0.1:PORT), KEY (an API key, or empty to type none),
//   USER_DATA_DIR; CHROMIUM optional. Output: {"ok": true, "verdict", "state", "rows",
//   "result"} or {"ok": false, "error"}. Every wait is bounded; the process always exits.
import { chromium } from "playwright-core";
import { BASE_FLAGS } from "./chromium_flags.mjs";

const env = process.env;
const flags = [
  ...BASE_FLAGS,
  "--allow-loopback-in-peer-connection",
  "--disable-features=WebRtcHideLocalIpsWithMdns",
];

async function main() {
  const context = await chromium.launchPersistentContext(env.USER_DATA_DIR, {
    executablePath: env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: flags,
    timeout: 30000,
  });
  try {
    const page = await context.newPage();
    await page.goto(`${env.BASE}/check#key=${encodeURIComponent(env.KEY || "")}`, { timeout: 10000 });
    if (!env.KEY) {
      // No key in the address: type a wrong one and press Check.
      await page.fill("#key", "not-a-key-of-this-server");
      await page.click("#run");
    }
    await page.waitForFunction(
      () => ["ok", "failed"].includes(document.getElementById("verdict").dataset.state),
      null,
      { timeout: 60000 },
    );
    const shown = await page.evaluate(() => ({
      verdict: document.getElementById("verdict").textContent,
      state: document.getElementById("verdict").dataset.state,
      rows: [...document.querySelectorAll("#candidates tbody tr")].map((r) =>
        [...r.cells].map((c) => c.textContent)),
      rtt: document.getElementById("rtt").textContent,
      result: window.checkResult,
    }));
    console.log(JSON.stringify({ ok: true, ...shown }));
  } finally {
    await context.close();
  }
}

const timer = setTimeout(() => {
  console.log(JSON.stringify({ ok: false, error: "timed out after 100 s" }));
  process.exit(1);
}, 100000);
main()
  .catch((e) => console.log(JSON.stringify({ ok: false, error: String(e?.stack ?? e) })))
  .finally(() => { clearTimeout(timer); process.exit(0); });
