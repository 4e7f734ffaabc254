// The upload form: a new item is embedded from its text and searchable at once; the answer
// shows how long indexing took and which items it landed next to.

import { api, el, formatMs, genreChip } from "./ui.js";

const newItemId = () => `upload-${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;

/** POST the form's item to /v1/items, then list its nearest items in `result`. */
export async function upload(form, result) {
  const field = (name) => form.elements[name].value.trim();
  const item = {
    item_id: newItemId(),
    title: field("title"),
    description: field("description"),
    tags: field("tags").split(",").map((t) => t.trim()).filter(Boolean),
    genres: field("genre") ? [field("genre")] : [],
    creator_id: field("creator"),
  };
  result.replaceChildren(el("p", {}, "Uploading…"));
  try {
    const created = await api("/v1/items", { method: "POST", body: item });
    const similar = await api(`/v1/items/${encodeURIComponent(item.item_id)}/similar?n=8`);
    result.replaceChildren(
      el("p", { class: "indexed", dataset: { testid: "indexed-ms", itemId: item.item_id } },
        `Indexed in ${formatMs(created.indexed_ms)}: “${created.item.title}” (${item.item_id}) is recommendable now.`),
      el("h3", {}, "Most similar items"),
      el("ol", { class: "similar", dataset: { testid: "similar-list" } },
        ...similar.items.map((s) => el("li", { dataset: { itemId: s.item_id, genre: s.genre } },
          genreChip(s.genre), " ", el("span", {}, s.title || s.item_id),
          el("span", { class: "similarity", title: "cosine similarity" }, s.score.toFixed(3))))),
    );
    form.reset();
  } catch (err) {
    // The server names the offending field (e.g. "title: String should have at least 1 character").
    result.replaceChildren(el("p", { class: "error", role: "alert" }, `Not uploaded: ${err.message}`));
  }
}
