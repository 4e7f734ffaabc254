// The "why" of a recommendation in words: its source, and the ranker inputs that set it apart
// most from the other items on the page (largest deviation from the page's average).

export const SOURCE_LABELS = {
  personal: "for you",
  trending: "trending",
  fresh: "new",
  popular: "popular",
  similar: "similar",
};

const SOURCE_SENTENCES = {
  personal: "Found for you: nearest neighbour of your taste and this session in the item index.",
  trending: "Trending: one of the items whose engagement is growing fastest right now.",
  fresh: "New: a recent upload whose content matches what you watch.",
  popular: "Popular: among the most engaged items overall (a fallback when little is known).",
};

const pct = (v) => `${Math.round(v * 100)}%`;
const two = (v) => v.toFixed(2).replace("-", "−");
const unlog = (v) => Math.round(Math.expm1(Math.max(0, v)));

function age(hours) {
  if (hours < 1) return `${Math.max(1, Math.round(hours * 60))} min ago`;
  if (hours < 48) return `${Math.round(hours)} h ago`;
  return `${Math.round(hours / 24)} days ago`;
}

// Each describer turns one value (as the ranker saw it) into words; `high` says whether it is
// above the page's average, which decides the phrasing.
const DESCRIBERS = {
  retrieval_similarity: (v, high) =>
    high ? `very close to your taste profile (${two(v)})` : `a looser match to your taste (${two(v)})`,
  cos_session: (v, high) =>
    high ? `in line with what you watched just now (${two(v)})` : `a change from what you watched just now (${two(v)})`,
  cos_long_term: (v, high) =>
    high ? `matches your long-term taste (${two(v)})` : `outside your usual taste (${two(v)})`,
  genre_share_recent: (v, _high, item) => `${pct(v)} of your recent items are ${item.genre || "this genre"}`,
  item_ctr_24h: (v) => `${pct(v)} of viewers clicked it in the last 24 h`,
  item_ctr_1h: (v) => `${pct(v)} of viewers clicked it in the last hour`,
  item_skip_rate_24h: (v) => `${pct(v)} of viewers skipped it in the last 24 h`,
  item_log_engaged_5m: (v) => `${unlog(v)} engagements in the last 5 minutes`,
  item_log_engaged_1h: (v) => `${unlog(v)} engagements in the last hour`,
  item_log_engaged_24h: (v) => `${unlog(v)} engagements in the last 24 h`,
  item_velocity: (v, high) => (high ? `engagement is accelerating` : `engagement is cooling down`),
  item_log_age_hours: (v) => `published ${age(Math.expm1(Math.max(0, v)))}`,
};

// Below this session strength (tanh of the session vector's norm) the session has decayed
// to nothing and its direction is noise: do not explain an item by it.
const SESSION_MIN = 0.05;

// When nothing stands out (a page of near-identical items), these are the most readable.
const FALLBACK = [
  "cos_long_term", "cos_session", "genre_share_recent", "item_ctr_24h", "item_log_engaged_24h",
  "item_log_age_hours",
];

/** False for a value that says nothing about this item: a similarity to a missing vector. */
function meaningful(name, item) {
  const values = item.explain;
  if (name === "cos_session") return values.session_strength > SESSION_MIN;
  if (name === "cos_long_term") return values.has_long_term > 0;
  if (name === "retrieval_similarity") return item.source === "personal" || item.source === "fresh";
  return true;
}

/** Mean and standard deviation of each explained value over the items on the page. */
export function pageStats(items) {
  const stats = {};
  for (const name of Object.keys(DESCRIBERS)) {
    const values = items.map((i) => i.explain?.[name]).filter((v) => Number.isFinite(v));
    if (values.length === 0) continue;
    const mean = values.reduce((a, b) => a + b, 0) / values.length;
    const variance = values.reduce((a, b) => a + (b - mean) ** 2, 0) / values.length;
    stats[name] = { mean, std: Math.sqrt(variance) };
  }
  return stats;
}

/** The source sentence and the three most telling values of `item`, in words. */
export function explainItem(item, stats) {
  const values = item.explain || {};
  const scored = [];
  for (const [name, { mean, std }] of Object.entries(stats)) {
    const value = values[name];
    if (!Number.isFinite(value) || std < 1e-6) continue;
    if (!meaningful(name, item)) continue;
    scored.push({ name, value, z: (value - mean) / std });
  }
  scored.sort((a, b) => Math.abs(b.z) - Math.abs(a.z));
  const chosen = scored.filter((s) => Math.abs(s.z) >= 0.5).slice(0, 3);
  for (const name of FALLBACK) {
    if (chosen.length >= 3) break;
    if (meaningful(name, item) && Number.isFinite(values[name]) && !chosen.some((c) => c.name === name)) {
      chosen.push({ name, value: values[name], z: 0 });
    }
  }
  return {
    source: SOURCE_SENTENCES[item.source] || `Source: ${item.source}.`,
    reasons: chosen.map((c) => DESCRIBERS[c.name](c.value, c.z >= 0, item)),
    scores: Number.isFinite(values.p_click)
      ? `p(click) ${pct(values.p_click)} · p(finish) ${pct(values.p_complete)} · score ${item.score.toFixed(3)}`
      : `score ${item.score.toFixed(3)}`,
  };
}
