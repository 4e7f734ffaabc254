// The homepage: a user's 20 recommendations as cards that adapt live to skips, likes and
// completions, next to the upload form (upload.js).

import { SOURCE_LABELS, explainItem, pageStats } from "./explain.js";
import { upload } from "./upload.js";
import { api, el, formatMs, genreChip, genreStyle, sleep } from "./ui.js";

const POLL_MS = 1000; // how often the user's live state is checked for changes made elsewhere
const FULL_REFRESH_MS = 10_000; // trending and fresh items move even when the user does not
const VISIBLE_TIMEOUT_MS = 1500; // how long an action waits for its event to be applied
const ACTIONS = [
  ["complete", "Complete"],
  ["like", "Like"],
  ["skip", "Skip"],
];
const STAGES = ["features", "retrieval", "enrich", "ranking", "rules"];

const $ = (selector) => document.querySelector(selector);
const grid = $("#grid");
const picker = $("#user-picker");
const statusLine = $("#status");
const cards = new Map(); // item id -> its card, reused across refreshes so focus and open panels stay
const genresSeen = new Set();
// Items this user skipped on this page: sent as `exclude` so a skipped card goes away (the
// engine only hides completed items), while its genre still has to fall by itself.
const skipped = new Set();
const MAX_SKIPPED = 200;
let user = "";
let inflight = 0; // loads and actions under way: the poller waits for them
let signature = ""; // the user's live state at the last load; a change triggers a reload
let lastLoad = 0;
let revision = 0;

function say(message, isError = false) {
  statusLine.textContent = message;
  statusLine.classList.toggle("error", isError);
}

// Run `work` counted as in flight (the poller waits); its error goes to the status line.
async function track(work) {
  inflight += 1;
  document.body.dataset.inflight = String(inflight);
  try {
    return await work();
  } catch (err) {
    say(err.message || String(err), true);
    return undefined;
  } finally {
    inflight -= 1;
    document.body.dataset.inflight = String(inflight);
  }
}

const userPath = (suffix = "") => `/v1/users/${encodeURIComponent(user)}${suffix}`;

async function liveState() {
  const features = await api(userPath("/features"));
  const state = JSON.stringify([
    features.windows["5m"],
    features.recent_items.slice(0, 5),
    Object.keys(features.watched).length,
  ]);
  return { features, state };
}

async function loadRecs() {
  const requested = user;
  const body = await api(
    `/v1/recommendations/${encodeURIComponent(requested)}?n=20&explain=true` +
      `&exclude=${[...skipped].map(encodeURIComponent).join(",")}`,
  );
  if (requested !== user) return; // the user was switched while this was in flight
  render(body);
  lastLoad = performance.now();
}

function render(body) {
  const active = document.activeElement;
  const focus = grid.contains(active)
    ? { card: active.closest(".card"), action: active.dataset.action }
    : null;
  const focusIndex = focus ? [...grid.children].indexOf(focus.card) : -1;
  const stats = pageStats(body.items);
  const next = body.items.map((item) => updateCard(cards.get(item.item_id) || newCard(), item, stats));
  cards.clear();
  for (const card of next) cards.set(card.dataset.itemId, card);
  grid.replaceChildren(...next);
  if (focus) restoreFocus(focus, focusIndex);
  renderSummary(body);
  revision += 1;
  grid.dataset.revision = String(revision);
}

// Moving a card in the DOM drops keyboard focus: put it back on the same button, or on the
// card that took the place of one that left (e.g. after "complete").
function restoreFocus(focus, index) {
  const card = focus.card?.isConnected ? focus.card : grid.children[Math.min(index, grid.children.length - 1)];
  const target = card?.querySelector(`[data-action="${focus.action}"]`) || card?.querySelector("button");
  target?.focus({ preventScroll: true });
}

function newCard() {
  const parts = {
    chip: el("span"),
    source: el("span", { class: "badge" }),
    sponsored: el("span", { class: "badge sponsored" }, "sponsored"),
    title: el("h3", { class: "title" }),
    creator: el("p", { class: "creator" }),
    why: el("div", { class: "why-body" }),
  };
  const card = el("article", { class: "card", dataset: { testid: "rec-card" } });
  const buttons = ACTIONS.map(([type, label]) =>
    el("button", { type: "button", class: `action ${type}`, dataset: { action: type },
      onclick: () => act(card, type) }, label),
  );
  card.append(
    el("div", { class: "card-top" }, parts.chip, parts.source, parts.sponsored),
    parts.title,
    parts.creator,
    el("details", { class: "why" }, el("summary", {}, "Why this?"), parts.why),
    el("div", { class: "actions" }, ...buttons),
  );
  card.parts = parts;
  return card;
}

function updateCard(card, item, stats) {
  const { parts } = card;
  const title = item.title || item.item_id;
  Object.assign(card.dataset, { itemId: item.item_id, genre: item.genre, source: item.source });
  card.style.cssText = genreStyle(item.genre);
  card.setAttribute("aria-label", title);
  parts.chip.replaceWith((parts.chip = genreChip(item.genre)));
  parts.source.textContent = SOURCE_LABELS[item.source] || item.source;
  parts.source.className = `badge source-${item.source}`;
  parts.sponsored.hidden = !item.sponsored;
  parts.title.textContent = title;
  parts.creator.textContent = item.creator_id ? `by ${item.creator_id}` : "";
  for (const button of card.querySelectorAll("button")) {
    button.setAttribute("aria-label", `${button.textContent} “${title}”`);
  }
  const why = explainItem(item, stats);
  parts.why.replaceChildren(
    el("p", {}, why.source),
    el("ul", {}, ...why.reasons.map((r) => el("li", {}, r))),
    el("p", { class: "scores" }, why.scores),
  );
  if (item.genre) genresSeen.add(item.genre);
  return card;
}

function renderSummary(body) {
  const t = body.timings_ms;
  const stages = STAGES.map((s) => `${s} ${formatMs(t[s])}`).join(" · ");
  $("#summary").replaceChildren(
    el("strong", {}, body.user_id),
    ` · ${body.personalised ? "personalised" : "not personalised yet: trending and popular"}`,
    ` · model ${body.model_version} · ${formatMs(t.total)}`,
    el("span", { class: "stages" }, ` (${stages})`),
  );
  const counts = new Map();
  for (const item of body.items) counts.set(item.genre, (counts.get(item.genre) || 0) + 1);
  const sorted = [...counts].sort((a, b) => b[1] - a[1]);
  $("#genre-summary").replaceChildren(
    ...sorted.map(([genre, n]) => {
      const chip = genreChip(genre);
      chip.append(` ×${n}`);
      return chip;
    }),
  );
  $("#genre-options").replaceChildren(...[...genresSeen].sort().map((g) => el("option", { value: g })));
}

/** Post one event, wait until the stream processor has applied it, then reload the grid. */
async function act(card, type) {
  const itemId = card.dataset.itemId;
  const title = card.parts.title.textContent;
  const started = performance.now();
  card.classList.add("pending");
  await track(async () => {
    const before = (await liveState()).features.windows["5m"][type] || 0;
    await api("/v1/events", { method: "POST", body: { events: [{ user_id: user, item_id: itemId, type }] } });
    if (type === "skip" && skipped.size < MAX_SKIPPED) skipped.add(itemId);
    let applied = false;
    while (!applied && performance.now() - started < VISIBLE_TIMEOUT_MS) {
      const live = await liveState();
      applied = (live.features.windows["5m"][type] || 0) > before;
      signature = live.state;
      if (!applied) await sleep(25);
    }
    await loadRecs();
    const ms = Math.round(performance.now() - started);
    say(applied ? `${type} on “${title}”: the page adapted in ${ms} ms.`
      : `${type} on “${title}” was accepted but not applied within ${ms} ms.`, !applied);
  });
  card.classList.remove("pending");
}

async function poll() {
  if (!user || inflight > 0 || document.hidden) return;
  await track(async () => {
    const live = await liveState();
    if (live.state !== signature || performance.now() - lastLoad > FULL_REFRESH_MS) {
      signature = live.state;
      await loadRecs();
    }
  });
}

async function setUser(id) {
  user = id.trim();
  if (!user) return;
  picker.value = user;
  history.replaceState(null, "", `?user=${encodeURIComponent(user)}`);
  cards.clear();
  skipped.clear();
  grid.replaceChildren();
  await track(async () => {
    const live = await liveState();
    signature = live.state;
    await loadRecs();
    say(live.features.known ? `${user}: a known user.` : `${user}: new here, so the page starts from trending and popular items.`);
  });
}

// Synthetic worlds name their users user-0 ... user-N and MovieLens 1 ... N (the API lists no
// users): try a few random ids of both shapes until one the engine knows.
async function randomUser() {
  for (let attempt = 0; attempt < 8; attempt += 1) {
    const n = Math.floor(Math.random() * 1000);
    const tried = await Promise.all([`user-${n}`, `${n + 1}`].map((id) => api(`/v1/users/${id}/features`)));
    const known = tried.find((features) => features.known);
    if (known) return known.user_id;
  }
  return `user-${Math.floor(Math.random() * 1000)}`;
}

$("#user-form").addEventListener("submit", (event) => {
  event.preventDefault();
  setUser(picker.value);
});
$("#random-user").addEventListener("click", () => track(async () => setUser(await randomUser())));
$("#new-user").addEventListener("click", () => setUser(`visitor-${Math.random().toString(36).slice(2, 8)}`));
$("#upload-form").addEventListener("submit", (event) => {
  event.preventDefault();
  track(() => upload(event.currentTarget, $("#upload-result")));
});
setInterval(poll, POLL_MS);

const initial = new URLSearchParams(location.search).get("user");
track(async () => setUser(initial || (await randomUser())));
