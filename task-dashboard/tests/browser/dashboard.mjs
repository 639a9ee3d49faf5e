// Watches the dashboard in Chromium: the overview's counts rise live while tasks run,
// then a pending task is revoked from its page; the pages of a hostile queue name and
// task id run none of their script. Prints what it saw as one JSON line.
// Usage: PLAYWRIGHT_FROM=<a package.json next to node_modules/playwright-core>
//        node dashboard.mjs BASE_URL PENDING_TASK_ID SCREENSHOT_PREFIX HOSTILE_TASK_ID
import { createRequire } from "module";

const require = createRequire(process.env.PLAYWRIGHT_FROM);
const { chromium } = require("playwright-core");
const [base, taskId, shots, hostileId] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 600 } });
  // A dialog the pages did not ask for (the hostile data's alert) is recorded.
  const dialogs = [];
  page.on("dialog", (dialog) => { dialogs.push(dialog.message()); dialog.dismiss(); });
  await page.goto(`${base}/`);
  const before = Number(await page.textContent("#succeeded"));
  await page.waitForFunction((b) => Number(document.querySelector("#succeeded").textContent) >= b + 20, before, { timeout: 30000 });
  const after = Number(await page.textContent("#succeeded"));
  const live = await page.textContent("#live");
  await page.screenshot({ path: `${shots}-overview.png` });
  await page.goto(`${base}/tasks/${taskId}`);
  const pending = await page.textContent("#state");
  await page.click("button:text-is('revoke')");
  await page.waitForFunction(() => document.querySelector("#state")?.textContent === "REVOKED", null, { timeout: 10000 });
  await page.screenshot({ path: `${shots}-task.png` });
  const state = await page.textContent("#state");
  // The hostile data's pages: the dead letters, and the task's own.
  await page.goto(`${base}/dead`);
  await page.waitForTimeout(300);
  const deadShown = (await page.textContent("body")).includes(hostileId);
  // Its retry button: where the id once landed inside inline JavaScript.
  await page.click("button:text-is('retry')");
  await page.waitForTimeout(500);
  await page.goto(`${base}/tasks/${encodeURIComponent(hostileId)}`);
  await page.waitForTimeout(300);
  const title = await page.textContent("h1");
  console.log(JSON.stringify({ before, after, live, pending, state, dialogs, deadShown, title }));
} finally {
  await browser.close();
}
