// The dashboard in a real browser (Debian's Chromium, driven by playwright-core), against a
// real host: log in once with the admin token through the form, send traffic to `echo`,
// and read what the page plots (window.surge, the page's own series) and shows (the DOM).
// Prints one JSON object for tests/dashboard.rs to check; exits non-zero on a failure.
//
// usage: node dashboard.mjs <base url> <admin token> <screenshot.png>
import { chromium } from "playwright-core";

const [base, token, shot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
  ],
});
const result = {};
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));

  // Without a session the page is the login form, answered 401.
  const first = await page.goto(base + "/dashboard");
  result.unauthenticatedStatus = first.status();
  // Log in once: the form sets the session cookie and sends the browser to the page.
  await page.fill("#token", token);
  await Promise.all([page.waitForURL(base + "/dashboard"), page.click("button[type=submit]")]);
  const cookies = await page.context().cookies();
  const session = cookies.find((c) => c.name === "surge_dashboard");
  result.cookie = session && { httpOnly: session.httpOnly, sameSite: session.sameSite };

  await page.waitForFunction(() => window.surge && window.surge.functions().includes("echo"), null, { timeout: 30000 });
  // Two updates in: the page has a baseline before the traffic.
  await page.waitForFunction(() => window.surge.updates() >= 3, null, { timeout: 30000 });
  const read = () => page.evaluate(() => {
    const s = window.surge.series("echo");
    const dom = document.querySelector("section[data-function=echo] [data-stat=rps] b");
    return {
      points: s.t.length,
      rps: s.rps.slice(),
      ready: s.ready.slice(),
      desired: s.desired.slice(),
      domRps: dom ? dom.textContent : null,
      updates: window.surge.updates(),
    };
  });
  result.before = await read();

  // Traffic: four clients back to back for 8 s (bounded in time and count), to this host only.
  const until = Date.now() + 8000;
  let sent = 0, ok = 0;
  const client = async () => {
    while (Date.now() < until && sent < 20000) {
      sent++;
      const r = await fetch(base + "/echo", { method: "POST", body: '{"from":"the browser test"}' });
      await r.arrayBuffer();
      if (r.ok) ok++;
    }
  };
  await Promise.all([client(), client(), client(), client()]);
  result.sent = sent;
  result.ok = ok;
  // The page plots it within a few of its one-second updates.
  await page.waitForFunction(() => {
    const s = window.surge.series("echo");
    return Math.max(...s.rps) > 0 && Math.max(...s.ready) >= 1;
  }, null, { timeout: 20000 });
  await page.waitForTimeout(1500);
  result.after = await read();
  result.canvases = await page.locator("section[data-function=echo] canvas").count();
  result.nodeCanvases = await page.locator("#node canvas").count();
  result.events = await page.evaluate(() => window.surge.events().map((e) => e.kind + ":" + e.function));
  result.pageErrors = pageErrors;
  await page.screenshot({ path: shot, fullPage: true });

  // The data endpoint with the session works; with no credentials it is 401.
  result.dataWithSession = (await page.request.get(base + "/dashboard/data")).status();
  const anon = await browser.newContext();
  result.dataWithout = (await anon.request.get(base + "/dashboard/data")).status();
  result.pageWithout = (await anon.request.get(base + "/dashboard")).status();
  await anon.close();
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
