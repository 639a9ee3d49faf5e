// Opens the page, asks for a report, watches the progress bar move, waits for the result,
// and saves a screenshot. Prints what it saw as one JSON line.
// Usage: node click.mjs URL SCREENSHOT.png
import { chromium } from "playwright-core";

const [url, screenshot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 900, height: 600 } });
  await page.goto(url);
  await page.fill("#title", "Browser report");
  await page.fill("#pages", "6");
  await page.click("#start");
  // The progress bar fills while the worker builds the report.
  await page.waitForFunction(() => {
    const bar = document.querySelector("#bar");
    return bar.value > 0 && bar.value < 100;
  }, null, { timeout: 20000 });
  const midway = await page.$eval("#bar", (bar) => bar.value);
  await page.waitForSelector("#result:not([hidden])", { timeout: 30000 });
  const seen = {
    midway,
    state: await page.textContent("#state"),
    bar: await page.$eval("#bar", (bar) => bar.value),
    result: await page.textContent("#result"),
    error: await page.$eval("#result", (box) => box.className === "error"),
  };
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(JSON.stringify(seen));
} finally {
  await browser.close();
}
