// attnrec's page: state lives in the address (history, user_id, k, model_name, explain), so a
// view can be linked and reloaded. Every text from the server goes in as text, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { history: [], user_id: "", k: 10, model_name: "", explain: "" };
let info = { feedback: false, models: [], example_history: [], cards: {} };
let cards = {};          // item_id -> {title, features}, from every answer so far
let answer = null;       // the last Recommend answer shown
let shown = 0;           // numbers each refresh, so a slow old answer never overwrites a newer one

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) node.append(child);
  return node;
}

function label(id) {
  const title = (cards[id] || {}).title;
  return title ? `${title} (${id})` : id;
}

function readAddress() {
  const params = new URLSearchParams(location.search);
  state.history = (params.get("history") || "").split(",").map((s) => s.trim()).filter(Boolean);
  state.user_id = params.get("user_id") || "";
  state.k = parseInt(params.get("k") || "10", 10) || 10;
  state.model_name = params.get("model_name") || "";
  state.explain = params.get("explain") || "";
}

function writeAddress() {
  const params = new URLSearchParams();
  if (state.history.length) params.set("history", state.history.join(","));
  for (const key of ["user_id", "model_name", "explain"]) if (state[key]) params.set(key, state[key]);
  if (state.k !== 10) params.set("k", String(state.k));
  history.replaceState(null, "", `${location.pathname}?${params}`);
}

function query(extra = {}) {
  const params = new URLSearchParams({ history: state.history.join(","), k: String(state.k), ...extra });
  if (state.user_id) params.set("user_id", state.user_id);
  if (state.model_name) params.set("model_name", state.model_name);
  return params;
}

async function call(path, options) {
  const response = await fetch(path, options);
  let body;
  try { body = await response.json(); } catch { body = { error: `${response.status} ${response.statusText}` }; }
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  Object.assign(cards, body.cards || {});
  return body;
}

function say(node, text, kind = "error") {
  node.textContent = text;
  node.className = text ? kind : "";
}

function renderHistory() {
  const list = $("history");
  list.replaceChildren(...state.history.map((id, i) => el("li", { "data-item-id": id },
    el("span", { class: "title", textContent: label(id) }),
    el("button", { type: "button", class: "remove", title: "Remove from the history", textContent: "×",
                   onclick: () => { state.history.splice(i, 1); changed(); } }))));
  if (!state.history.length) list.append(el("li", { class: "muted", textContent: "(empty)" }));
}

function features(id) {
  const values = (cards[id] || {}).features || {};
  return Object.entries(values).map(([name, value]) => `${name}: ${value}`).join(" · ");
}

function renderItems() {
  const list = $("items");
  if (!answer) { list.replaceChildren(); return; }
  list.replaceChildren(...answer.items.map((item) => {
    const row = el("li", { "data-item-id": item.item_id, class: item.item_id === state.explain ? "open" : "" },
      el("div", { class: "item" },
        el("span", { class: "title", textContent: label(item.item_id) }),
        el("span", { class: "score", textContent: item.score.toFixed(2), title: "score (logit)" })),
      el("div", { class: "features muted", textContent: features(item.item_id) }));
    const actions = el("div", { class: "actions" },
      el("button", { type: "button", class: "why", textContent: "Why?", onclick: () => explain(item.item_id) }));
    if (info.feedback) {
      for (const [type, text] of [["click", "Click"], ["purchase", "Purchase"], ["not_interested", "Not interested"]]) {
        actions.append(el("button", { type: "button", class: `feedback ${type}`, textContent: text,
                                      onclick: (event) => feedback(item.item_id, type, event.target) }));
      }
    }
    row.append(actions);
    return row;
  }));
}

async function refresh() {
  const mine = ++shown;
  writeAddress();
  renderHistory();
  say($("message"), "");
  if (!state.history.length && !state.user_id) {
    answer = null; renderItems(); closeExplanation();
    say($("message"), "Add an item to the history (or give a user id) to see recommendations.", "note");
    return;
  }
  try {
    const body = await call(`api/recommend?${query()}`);
    if (mine !== shown) return;
    answer = body;
    renderHistory();
    renderItems();
    const notes = [];
    if (body.unknown_item_ids.length) notes.push(`Not in this model's catalogue, left out: ${body.unknown_item_ids.join(", ")}.`);
    if (body.unknown_user) notes.push(`User ${state.user_id} is not known to this model: only the history counts.`);
    if (notes.length) say($("message"), notes.join(" "), "warning");
    $("model").textContent = `model ${body.model_version} · history used: ${body.history_used} items`;
    if (state.explain && !body.items.some((item) => item.item_id === state.explain)) {
      state.explain = "";  // no longer recommended: nothing to explain
      writeAddress();
      closeExplanation();
    }
    if (state.explain) await explain(state.explain);
  } catch (error) {
    if (mine !== shown) return;
    answer = null; renderItems(); closeExplanation();
    say($("message"), error.message);
  }
}

function closeExplanation() {
  $("explanation").hidden = true;
}

async function explain(itemId) {
  state.explain = itemId;
  writeAddress();
  for (const row of $("items").children) row.classList.toggle("open", row.dataset.itemId === itemId);
  const box = $("explanation");
  box.hidden = false;
  box.classList.add("loading");
  $("why-item").textContent = label(itemId);
  say($("why-message"), "");
  const mine = shown;
  try {
    const why = await call(`api/explain?${query({ item_id: itemId })}`);
    if (mine !== shown || state.explain !== itemId) return;
    $("reason").textContent = why.reason;
    const heatmap = $("heatmap");
    heatmap.src = why.image_png ? `data:image/png;base64,${why.image_png}` : "";
    heatmap.hidden = !why.image_png;
    const cf = why.counterfactual;
    $("counterfactual-box").hidden = !cf;
    if (cf) {
      $("counterfactual").textContent = cf.found
        ? `Without ${cf.item_ids.map(label).join(", ")}, it would fall to rank ${cf.new_rank}` +
          ` and ${label(cf.new_top_item_id)} would lead the list.`
        : "No small set of history items moves it out of the list: it rests on the history as a whole.";
    }
    const rows = (why.feature_reasons || []).map((r) => el("tr", {},
      el("td", { textContent: r.feature }), el("td", { textContent: r.value }),
      el("td", { textContent: (-r.score_drop).toFixed(2) }),
      el("td", { textContent: `${r.rank_without} (now ${r.rank_now})` })));
    $("features").tBodies[0].replaceChildren(...rows);
    $("features").hidden = !rows.length;
  } catch (error) {
    if (mine !== shown) return;
    $("reason").textContent = "";
    $("heatmap").hidden = true;
    say($("why-message"), error.message);
  } finally {
    box.classList.remove("loading");
  }
}

function randomHex(n) {
  return Array.from(crypto.getRandomValues(new Uint8Array(n)), (b) => b.toString(16).padStart(2, "0")).join("");
}

// Feedback without a user id is this browser's: one id it keeps, never shared with other visitors.
function visitor() {
  let id = localStorage.getItem("attnrec-visitor");
  if (!id) { id = `page-${randomHex(8)}`; localStorage.setItem("attnrec-visitor", id); }
  return id;
}

async function feedback(itemId, type, button) {
  const event = { event_id: randomHex(16), request_id: answer.request_id, user_id: state.user_id || visitor(),
                  item_id: itemId, event_type: type };
  button.disabled = true;
  try {
    const body = await call("api/feedback", { method: "POST", headers: { "Content-Type": "application/json" },
                                              body: JSON.stringify({ events: [event] }) });
    if (body.errors && body.errors.length) throw new Error(body.errors[0].message);
    button.classList.add("sent");
    button.title = "recorded";
  } catch (error) {
    button.disabled = false;
    say($("message"), `Feedback not recorded: ${error.message}`);
  }
}

let searching = 0;
async function search(text) {
  const mine = ++searching;
  const list = $("search-results");
  if (!text.trim()) { list.replaceChildren(); return; }
  try {
    const body = await call(`api/items?${new URLSearchParams({ q: text, limit: "12" })}`);
    if (mine !== searching) return;
    for (const item of body.items) cards[item.item_id] = { title: item.title, features: item.features };
    list.replaceChildren(...body.items.map((item) => el("li", {},
      el("button", { type: "button", "data-item-id": item.item_id, textContent: label(item.item_id),
                     onclick: () => { state.history.push(item.item_id); $("search").value = ""; list.replaceChildren(); changed(); } }))));
    if (!body.items.length) list.append(el("li", { class: "muted", textContent: "no item matches" }));
  } catch (error) {
    say($("message"), error.message);
  }
}

function changed() {
  $("example-note").hidden = true;
  refresh();
}

async function start() {
  readAddress();
  $("user-id").value = state.user_id;
  $("k").value = String(state.k);
  try {
    info = await call("api/info");
  } catch (error) {
    say($("message"), `The service did not answer: ${error.message}`);
    return;
  }
  if (info.models.length > 1) {
    $("model-pick").hidden = false;
    for (const name of info.models) $("model-name").append(el("option", { value: name, textContent: name }));
    $("model-name").value = state.model_name;
  }
  if (!state.history.length && !state.user_id && info.example_history.length) {
    state.history = [...info.example_history];
    $("example-note").hidden = false;
  }
  $("user-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.user_id = $("user-id").value.trim();
    state.k = parseInt($("k").value, 10) || 10;
    state.model_name = $("model-name").value;
    changed();
  });
  let timer;
  $("search").addEventListener("input", (event) => {
    clearTimeout(timer);
    timer = setTimeout(() => search(event.target.value), 150);
  });
  await refresh();
}

start();
