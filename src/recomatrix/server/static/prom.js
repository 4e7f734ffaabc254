// Prometheus text exposition in the browser: parse a /metrics scrape, then compute rates and
// histogram quantiles from two scrapes the way PromQL's rate() and histogram_quantile() do.

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?\s*$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?\s*/g;

/** A sample value as the exposition format writes it ("+Inf", "NaN", "1.5e-05"). */
export function parseValue(text) {
  if (text === "+Inf") return Infinity;
  if (text === "-Inf") return -Infinity;
  return Number(text);
}

function unescapeLabel(value) {
  return value.replace(/\\(["\\n])/g, (_, ch) => (ch === "n" ? "\n" : ch));
}

/** Every sample of a scrape: [{name, labels, value}], comments and blank lines skipped. */
export function parseMetrics(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const match = SAMPLE.exec(line);
    if (!match) continue;
    const labels = {};
    for (const [, key, value] of (match[2] || "").matchAll(LABEL)) labels[key] = unescapeLabel(value);
    samples.push({ name: match[1], labels, value: parseValue(match[3]) });
  }
  return samples;
}

const matches = (labels, want) => Object.entries(want).every(([k, v]) => labels[k] === v);

/** The sum of a metric's samples whose labels include `want` (PromQL: sum(name{want})). */
export function sum(samples, name, want = {}) {
  let total = 0;
  for (const s of samples) if (s.name === name && matches(s.labels, want)) total += s.value;
  return total;
}

/** The distinct values of one label of a metric, in order of first appearance. */
export function labelValues(samples, name, label) {
  const seen = [];
  for (const s of samples) {
    if (s.name === name && label in s.labels && !seen.includes(s.labels[label])) seen.push(s.labels[label]);
  }
  return seen;
}

/** Per-second increase of a counter between two scrapes {at (s), samples}; a reset counts from 0. */
export function rate(previous, current, name, want = {}) {
  const seconds = current.at - previous.at;
  if (!(seconds > 0)) return NaN;
  const now = sum(current.samples, name, want);
  const before = sum(previous.samples, name, want);
  return (now >= before ? now - before : now) / seconds;
}

/** Cumulative buckets [{le, count}] of histogram `name` (summed over other labels), by le. */
export function buckets(samples, name, want = {}) {
  const byLe = new Map();
  for (const s of samples) {
    if (s.name !== `${name}_bucket` || !matches(s.labels, want)) continue;
    const le = parseValue(s.labels.le);
    byLe.set(le, (byLe.get(le) || 0) + s.value);
  }
  return [...byLe].map(([le, count]) => ({ le, count })).sort((a, b) => a.le - b.le);
}

/** Buckets observed between two scrapes: the per-bucket increase (older scrape may be null). */
export function bucketIncrease(older, newer) {
  if (!older) return newer;
  const before = new Map(older.map((b) => [b.le, b.count]));
  const reset = newer.some((b) => b.count < (before.get(b.le) || 0));
  return newer.map((b) => ({ le: b.le, count: reset ? b.count : b.count - (before.get(b.le) || 0) }));
}

/**
 * The q-quantile of cumulative buckets, interpolated linearly inside the bucket holding it, as
 * Prometheus's histogram_quantile(): NaN without observations; the highest finite bound when
 * the quantile falls in the +Inf bucket.
 */
export function histogramQuantile(q, cumulative) {
  const n = cumulative.length;
  if (n < 2 || cumulative[n - 1].le !== Infinity) return NaN;
  const total = cumulative[n - 1].count;
  if (!(total > 0)) return NaN;
  const rank = q * total;
  let b = cumulative.findIndex((bucket) => bucket.count >= rank);
  if (b === n - 1) return cumulative[n - 2].le;
  if (b === 0 && cumulative[0].le <= 0) return cumulative[0].le;
  b = Math.max(b, 0);
  const lower = b === 0 ? 0 : cumulative[b - 1].le;
  const countBelow = b === 0 ? 0 : cumulative[b - 1].count;
  const inBucket = cumulative[b].count - countBelow;
  if (inBucket <= 0) return lower;
  return lower + (cumulative[b].le - lower) * ((rank - countBelow) / inBucket);
}
