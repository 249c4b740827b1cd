// browser.mjs: the web client in a real browser — Debian's chromium driven
// by playwright-core (never a downloaded browser), through HAProxy on the
// stack that test_browser.py started. Two people register, one sends, the
// other reads once and finds it gone on the next read, the sender sees it
// read; a <script> text shows literally and runs nothing; an admin looks the
// message up; a 429 and a 503 (both real) show as sentences; keyboard alone
// and a phone-sized screen work. Screenshots go to SNAP_WEB_SHOTS.
// Talks to test_browser.py over stdin/stdout: it prints "@@stop-redis" and
// waits for a line back before the 503 part. Prints "N passed, N failed".
import { chromium } from "playwright-core";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

const BASE = process.env.SNAP_WEB_URL;
const LIMITED = process.env.SNAP_WEB_LIMITED_URL;
const SHOTS = process.env.SNAP_WEB_SHOTS;
const ADMIN = [process.env.SNAP_WEB_ADMIN_USER, process.env.SNAP_WEB_ADMIN_PASS];
const T = 15000 * Number(process.env.SNAP_TIMEOUT_MULTIPLIER || "1");
let passed = 0, failed = 0;

function check(name, ok, detail = "") {
  if (ok) { passed++; console.log(`ok ${name}`); }
  else { failed++; console.log(`not ok ${name}${detail ? ": " + detail : ""}`); }
}

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function askHarness(what) {
  console.log(`@@${what}`);
  const { value } = await lines.next();
  return value;
}

const userDir = mkdtempSync(join(tmpdir(), "snap-chromium-"));
const context = await chromium.launchPersistentContext(userDir, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  viewport: { width: 1280, height: 900 },
});
context.setDefaultTimeout(T);
if (SHOTS) mkdirSync(SHOTS, { recursive: true });
const shot = async (page, name, opts = {}) => {
  if (SHOTS) await page.screenshot({ path: join(SHOTS, name + ".png"), ...opts });
};

// Every page: nothing but this origin is ever asked for, no CSP violation,
// no dialog (an alert() would mean a text ran as script), no script error.
const offOrigin = [], violations = [], dialogs = [], pageErrors = [];
function watch(page, origin) {
  page.on("request", (req) => { if (!req.url().startsWith(origin + "/")) offOrigin.push(req.url()); });
  page.on("console", (m) => { if (/Content.Security.Policy/i.test(m.text())) violations.push(m.text()); });
  page.on("dialog", async (d) => { dialogs.push(d.message()); await d.dismiss(); });
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  return page;
}
async function openApp(origin, viewport) {
  const page = watch(await context.newPage(), origin);
  if (viewport) await page.setViewportSize(viewport);
  await page.goto(origin + "/");
  await page.waitForSelector("body[data-ready='1']");
  return page;
}

// Keyboard only: Tab until the element with this id has focus.
async function tabTo(page, id, max = 60) {
  for (let i = 0; i < max; i++) {
    await page.keyboard.press("Tab");
    if (await page.evaluate((want) => document.activeElement?.id === want, id)) return true;
  }
  throw new Error(`#${id} cannot be reached with Tab`);
}
const noticeText = (page) => page.locator("#notice-text").textContent();
async function waitNotice(page, re) {
  await page.waitForFunction((src) => new RegExp(src).test(document.getElementById("notice-text").textContent)
                                      && !document.getElementById("notice").hidden, re.source);
  return noticeText(page);
}
async function register(page, name, password) {
  await page.fill("#auth-user", name);
  await page.fill("#auth-pass", password);
  await page.click("#register");
  await page.waitForSelector("#who:not([hidden])");
}

const stamp = Date.now().toString(36);
const alice = "alice-" + stamp, bob = "bob-" + stamp;
const XSS = "<script>window.__ran = 1; alert(1)</script> <img src=x onerror=alert(2)> hi " + bob;

try {
  // ---- the front door, then bob registers with the keyboard alone -------
  const bobPage = await openApp(BASE);
  check("GET / lands on /app/", bobPage.url() === BASE + "/app/", bobPage.url());
  await shot(bobPage, "app-start");
  await tabTo(bobPage, "auth-user");
  await bobPage.keyboard.type(bob);
  await tabTo(bobPage, "auth-pass");
  await bobPage.keyboard.type("bob-password-1");
  await tabTo(bobPage, "register");
  await bobPage.keyboard.press("Enter");
  await bobPage.waitForSelector("#who:not([hidden])");
  check("bob registers with the keyboard alone",
        (await bobPage.locator("#who-name").textContent()) === bob);

  // ---- alice registers and sends the <script> text ----------------------
  const alicePage = await openApp(BASE);
  await register(alicePage, alice, "alice-password-1");
  await alicePage.fill("#send-to", bob);
  await alicePage.fill("#send-text", XSS);
  const counter = await alicePage.locator("#send-count").textContent();
  check("the byte counter counts UTF-8 bytes",
        counter.startsWith(`${Buffer.byteLength(XSS)} / 4096 bytes`), counter);
  await alicePage.check("input[name=timeout][value='3600']");
  await alicePage.click("#send-button");
  await alicePage.waitForSelector("#send-result:not([hidden])");
  const sentText = await alicePage.locator("#send-result").textContent();
  const m = /snap #(\d+)/.exec(sentText);
  check("alice sees her snap sent, with its id and timeout",
        m !== null && sentText.includes(`Sent to ${bob}`) && sentText.includes("1 hour"), sentText);
  const id = m ? m[1] : "0";
  await shot(alicePage, "app-sent");

  // ---- bob reads it once (keyboard), and the next read finds nothing ----
  check("the read button says that reading destroys",
        /destroy/i.test(await bobPage.locator("#read-button").textContent()) &&
        /Reading destroys/.test(await bobPage.locator("#inbox-warning").textContent()));
  await tabTo(bobPage, "read-button");
  await bobPage.keyboard.press("Enter");
  await bobPage.waitForSelector("#inbox-list li");
  const texts = await bobPage.locator("#inbox-list li .text").allTextContents();
  check("bob reads the snap, its text exactly as sent", texts.length === 1 && texts[0] === XSS,
        JSON.stringify(texts));
  const scripted = await bobPage.evaluate(() => ({
    ran: window.__ran === 1,
    tags: document.querySelectorAll("#inbox-list script, #inbox-list img").length,
  }));
  check("the <script> text shows literally and runs nothing",
        !scripted.ran && scripted.tags === 0 && dialogs.length === 0,
        JSON.stringify({ ...scripted, dialogs }));
  await shot(bobPage, "app-inbox");
  await bobPage.click("#read-button");
  await bobPage.waitForFunction(() => /No unread snaps/.test(document.getElementById("inbox-state").textContent));
  check("the next read finds it gone", true);

  // ---- the sender sees it read -------------------------------------------
  await alicePage.click(`#sent-list li[data-id="${id}"] button:has-text("Check if read")`);
  const stateLoc = alicePage.locator(`#sent-list li[data-id="${id}"] .state`);
  await alicePage.waitForFunction((sel) => !/Not checked yet/.test(document.querySelector(sel).textContent),
                                  `#sent-list li[data-id="${id}"] .state`);
  const stateText = await stateLoc.textContent();
  check("alice sees her snap read", /^Read at /.test(stateText), stateText);

  // ---- unsend: a second snap, withdrawn while unread ---------------------
  await alicePage.fill("#send-to", bob);
  await alicePage.fill("#send-text", "never mind");
  await alicePage.click("#send-button");
  await alicePage.waitForFunction((old) => !document.getElementById("send-result").textContent.includes(`#${old}.`), id);
  const id2 = /snap #(\d+)/.exec(await alicePage.locator("#send-result").textContent())[1];
  await alicePage.click(`#sent-list li[data-id="${id2}"] button:has-text("Unsend")`);
  await alicePage.waitForFunction((sel) => !/Not checked yet/.test(document.querySelector(sel).textContent),
                                  `#sent-list li[data-id="${id2}"] .state`);
  const unsendText = await alicePage.locator(`#sent-list li[data-id="${id2}"] .state`).textContent();
  check("alice unsends an unread snap", /^Unsent/.test(unsendText), unsendText);
  await shot(alicePage, "app-receipts");

  // ---- an admin looks the first message up -------------------------------
  const adminPage = await openApp(BASE);
  await adminPage.fill("#auth-user", ADMIN[0]);
  await adminPage.fill("#auth-pass", ADMIN[1]);
  await adminPage.click("#login");
  await adminPage.waitForSelector("#admin:not([hidden])");
  await adminPage.fill("#admin-id", id);
  await adminPage.click("#admin-button");
  await adminPage.waitForSelector("#admin-result:not([hidden])");
  const facts = await adminPage.locator("#admin-result dd").allTextContents();
  check("the admin finds the message: recipient, sender, text as sent",
        facts[0] === id && facts[1] === bob && facts[2] === alice && facts[3] === XSS, JSON.stringify(facts));
  await adminPage.fill("#admin-id", "999999999");
  await adminPage.click("#admin-button");
  check("an unknown id is said plainly", /no message with that id/.test(await waitNotice(adminPage, /no message/)));
  await adminPage.fill("#admin-id", id);
  await adminPage.click("#admin-button");
  await adminPage.waitForSelector("#notice[hidden]", { state: "attached" });
  await shot(adminPage, "app-admin");

  // ---- a phone-sized screen ----------------------------------------------
  const phone = await openApp(BASE, { width: 390, height: 844 });
  const widths = await phone.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
  check("on a phone-sized screen nothing runs off the side", widths[0] <= widths[1], JSON.stringify(widths));
  const box = await phone.locator("#send-button").boundingBox();
  check("on a phone the buttons are big enough to tap", box && box.height >= 36, JSON.stringify(box));
  await shot(phone, "app-phone", { fullPage: true });

  // ---- the API reference ---------------------------------------------------
  const docs = watch(await context.newPage(), BASE);
  await docs.goto(BASE + "/docs");
  await docs.waitForSelector(".swagger-ui .info .title");
  const title = await docs.locator(".swagger-ui .info .title").textContent();
  const ops = await docs.locator(".opblock").count();
  check("GET /docs renders the reference from openapi.json", /snaptext/.test(title) && ops >= 12,
        `${title} with ${ops} operations`);
  await shot(docs, "docs");

  // ---- a real 429: the HAProxy limit of the second proxy -----------------
  const limited = await openApp(LIMITED);
  await limited.fill("#auth-user", alice);
  await limited.fill("#auth-pass", "alice-password-1");
  await limited.click("#login");
  await limited.waitForSelector("#who:not([hidden])");
  await limited.fill("#send-to", bob);
  let said = "";
  for (let i = 0; i < 40 && !/Too many requests/.test(said); i++) {
    await limited.fill("#send-text", "again " + i);
    await limited.click("#send-button");
    await limited.waitForFunction(() => !document.getElementById("send-button").disabled);
    said = (await limited.locator("#notice").isHidden()) ? "" : await noticeText(limited);
  }
  check("a 429 is shown as a sentence with its wait",
        /^Too many requests right now\. Wait \d+ seconds?, then try again\.$/.test(said), said);
  check("the 429 offers to try again", await limited.locator("#notice-retry").isVisible());
  await shot(limited, "app-rate-limited");

  // ---- a real 503: Redis stopped -----------------------------------------
  await askHarness("stop-redis");
  await alicePage.fill("#send-to", bob);
  await alicePage.fill("#send-text", "while Redis is down");
  await alicePage.click("#send-button");
  const down = await waitNotice(alicePage, /unavailable/);
  check("a 503 is shown as a sentence with when to retry",
        /^snaptext is unavailable for a moment .*Try again in \d+ seconds?\.$/.test(down), down);
  check("the 503 offers to try again", await alicePage.locator("#notice-retry").isVisible());
  await shot(alicePage, "app-unavailable");

  check("no page asked anything of another origin", offOrigin.length === 0, offOrigin.join(" "));
  check("no Content-Security-Policy violation", violations.length === 0, violations.join(" | "));
  check("no script error on any page", pageErrors.length === 0, pageErrors.join(" | "));
} catch (e) {
  failed++;
  console.log("not ok the browser run stopped: " + (e.stack || e));
} finally {
  await context.close();
  rmSync(userDir, { recursive: true, force: true });
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
