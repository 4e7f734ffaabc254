// Small helpers shared by the homepage and the dashboard: elements, JSON calls, genre colours.

/** Create an element: el("p", {class: "x", dataset: {id: "1"}}, "text", child). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "class") node.className = value;
    else if (key === "style") node.style.cssText = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  node.append(...children.filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

/** An API error carrying the server's message (the `detail` of a 4xx/5xx answer). */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** GET or POST JSON; throws ApiError with the server's field message on a non-2xx answer. */
export async function api(path, { method = "GET", body } = {}) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 204) return null;
  const payload = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, describeError(response.status, payload));
  return payload;
}

function describeError(status, payload) {
  const detail = payload?.detail;
  if (Array.isArray(detail)) {
    return detail.map((d) => `${(d.loc || []).slice(1).join(".") || "request"}: ${d.msg}`).join("; ");
  }
  return typeof detail === "string" ? detail : `HTTP ${status}`;
}

/** A hue in [0, 360) from a genre name (FNV-1a), the same on every page load and machine. */
export function genreHue(genre) {
  let hash = 0x811c9dc5;
  for (const ch of genre || "none") {
    hash ^= ch.codePointAt(0);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash % 360;
}

/** CSS custom properties giving a genre its colour: a light chip and a strong accent. */
export function genreStyle(genre) {
  const hue = genreHue(genre);
  return `--genre-bg: hsl(${hue} 70% 90%); --genre-fg: hsl(${hue} 60% 24%); --genre-accent: hsl(${hue} 55% 45%)`;
}

/** A genre chip: the genre's name on its colour. */
export function genreChip(genre) {
  return el("span", { class: "genre-chip", style: genreStyle(genre) }, genre || "no genre");
}

/** Milliseconds with a precision that suits their size: 0.042 ms, 3.1 ms, 120 ms. */
export function formatMs(ms) {
  if (!Number.isFinite(ms)) return "–";
  if (ms === 0) return "0 ms";
  if (ms < 0.1) return `${ms.toFixed(3)} ms`;
  if (ms < 10) return `${ms.toFixed(2)} ms`;
  return `${ms.toFixed(0)} ms`;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
