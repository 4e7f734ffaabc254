// The ops dashboard: scrapes /metrics every 2 s and derives every figure from the Prometheus
// text itself (rates and histogram quantiles between scrapes), so it never disagrees with
// Prometheus. Trending items come from /v1/trending.

import { lineChart, logBarChart } from "./charts.js";
import { bucketIncrease, buckets, histogramQuantile, labelValues, parseMetrics, rate, sum } from "./prom.js";
import { api, el, formatMs, genreChip, sleep } from "./ui.js";

const SCRAPE_MS = 2000;
const HISTORY_S = 180; // what the line charts show
const LATENCY_WINDOW_S = 30; // per-stage quantiles over this window (since start if idle)
const LAG_WINDOW_S = 10; // stream-lag quantiles over this window, per point
const STAGES = ["features", "retrieval", "enrich", "ranking", "rules", "total"];

const $ = (selector) => document.querySelector(selector);
const scrapes = []; // {at: epoch seconds, samples}, oldest first
const series = { requests: [], accepted: [], applied: [], lagP50: [], lagP99: [], main: [], delta: [] };
const versionsSeen = [];
let latency = null; // the last per-stage quantiles, for redraws on resize

const perSecond = (v) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));
const ms = (seconds) => formatMs(seconds * 1000);
const count = (v) => Math.round(v).toLocaleString("en");

async function scrape() {
  const response = await fetch("/metrics", { cache: "no-store" });
  if (!response.ok) throw new Error(`GET /metrics answered HTTP ${response.status}`);
  return { at: Date.now() / 1000, samples: parseMetrics(await response.text()) };
}

/** The oldest kept scrape no older than `seconds` before the newest (the newest if alone). */
function since(seconds) {
  const newest = scrapes[scrapes.length - 1];
  return scrapes.find((s) => s.at >= newest.at - seconds - 0.5) || newest;
}

function windowQuantiles(name, want, seconds) {
  const now = scrapes[scrapes.length - 1];
  const base = since(seconds);
  const observed = bucketIncrease(base === now ? null : buckets(base.samples, name, want), buckets(now.samples, name, want));
  const recent = observed.length > 0 && observed[observed.length - 1].count > 0;
  const cumulative = buckets(now.samples, name, want);
  const use = recent && base !== now ? observed : cumulative;
  return { p50: histogramQuantile(0.5, use), p99: histogramQuantile(0.99, use), windowed: recent && base !== now };
}

function record(current, previous) {
  const t = current.at;
  const push = (key, v) => series[key].push({ t, v });
  if (previous) {
    push("requests", rate(previous, current, "recomatrix_recommendations_total"));
    push("accepted", rate(previous, current, "recomatrix_events_accepted_total"));
    push("applied", rate(previous, current, "recomatrix_events_applied_total"));
    const lag = windowQuantiles("recomatrix_event_visible_seconds", {}, LAG_WINDOW_S);
    push("lagP50", lag.windowed ? lag.p50 * 1000 : null);
    push("lagP99", lag.windowed ? lag.p99 * 1000 : null);
  }
  push("main", sum(current.samples, "recomatrix_index_items", { part: "main" }));
  push("delta", sum(current.samples, "recomatrix_index_items", { part: "delta" }));
  for (const key of Object.keys(series)) {
    while (series[key].length && series[key][0].t < t - HISTORY_S) series[key].shift();
  }
  latency = STAGES.map((stage) => ({ stage, ...windowQuantiles("recomatrix_stage_seconds", { stage }, LATENCY_WINDOW_S) }));
}

function draw() {
  const now = scrapes[scrapes.length - 1]?.at;
  if (now === undefined) return;
  lineChart($("[data-testid=chart-requests]"), {
    now, windowS: HISTORY_S, format: perSecond, label: "Recommendation requests per second",
    series: [{ name: "requests/s", points: series.requests }],
  });
  lineChart($("[data-testid=chart-events]"), {
    now, windowS: HISTORY_S, format: perSecond, label: "Events per second",
    series: [{ name: "accepted/s", points: series.accepted }, { name: "applied/s", points: series.applied }],
  });
  lineChart($("[data-testid=chart-lag]"), {
    now, windowS: HISTORY_S, format: (v) => formatMs(v), label: "Event to feature visible, milliseconds",
    series: [{ name: "p50", points: series.lagP50 }, { name: "p99", points: series.lagP99 }],
  });
  lineChart($("[data-testid=chart-index]"), {
    now, windowS: HISTORY_S, format: count, label: "Items in the vector index",
    series: [{ name: "main", points: series.main }, { name: "delta", points: series.delta }],
  });
  drawLatency();
}

function drawLatency() {
  const box = $("[data-testid=chart-latency]");
  logBarChart(box, {
    rows: latency.map((l) => ({ name: l.stage, values: [l.p50 * 1000, l.p99 * 1000] })),
    bars: ["p50", "p99"], format: (v) => `${v} ms`, label: "Latency per stage, p50 and p99, milliseconds",
  });
  const windowed = latency.every((l) => l.windowed || !Number.isFinite(l.p50));
  $("#latency-window").textContent = windowed ? `last ${LATENCY_WINDOW_S} s` : "since the process started (idle lately)";
  $("#latency-table").replaceChildren(
    ...latency.map((l) => el("tr", { dataset: { stage: l.stage, p50: l.p50, p99: l.p99 } },
      el("th", { scope: "row" }, l.stage), el("td", {}, ms(l.p50)), el("td", {}, ms(l.p99)))),
  );
}

function drawModel(current) {
  const versions = labelValues(current.samples, "recomatrix_model_info", "version")
    .filter((v) => sum(current.samples, "recomatrix_model_info", { version: v }) === 1);
  const box = $("[data-testid=chart-model]");
  const serving = versions.join(", ") || "none";
  if (!versionsSeen.length || versionsSeen[versionsSeen.length - 1].version !== serving) {
    versionsSeen.push({ version: serving, at: new Date() });
  }
  box.dataset.version = serving;
  box.dataset.samples = String(versions.length);
  $("#model-version").textContent = serving;
  $("#model-history").replaceChildren(
    ...versionsSeen.slice(-5).reverse().map((v) => el("li", {}, `${v.version} seen from ${v.at.toLocaleTimeString()}`)),
  );
}

async function drawTrending() {
  const body = await api("/v1/trending?n=10");
  const box = $("[data-testid=chart-trending]");
  box.dataset.samples = String(body.items.length);
  $("#trending-list").replaceChildren(
    ...(body.items.length ? body.items.map((item) => el("li", { dataset: { itemId: item.item_id } },
      genreChip(item.genre), " ", el("span", { class: "trend-title" }, item.title || item.item_id),
      el("span", { class: "trend-score" }, item.score.toFixed(1))))
      : [el("li", { class: "empty" }, "Nothing trending: no engagement in the last 5 minutes.")]),
  );
}

async function tick() {
  const started = performance.now();
  const current = await scrape();
  scrapes.push(current);
  while (scrapes.length > 2 && scrapes[0].at < current.at - HISTORY_S) scrapes.shift();
  record(current, scrapes[scrapes.length - 2]);
  draw();
  drawModel(current);
  await drawTrending();
  const status = $("#scrape-status");
  status.textContent = `scraped ${current.samples.length} samples at ${new Date().toLocaleTimeString()} in ${formatMs(performance.now() - started)}`;
  status.classList.remove("error");
  document.body.dataset.scrapes = String(Number(document.body.dataset.scrapes || 0) + 1);
}

async function run() {
  for (;;) {
    try {
      await tick();
    } catch (err) {
      const status = $("#scrape-status");
      status.textContent = `scrape failed: ${err.message}`;
      status.classList.add("error");
    }
    await sleep(SCRAPE_MS);
  }
}

window.addEventListener("resize", () => { if (latency) draw(); });
run();
