// The review page: shows what the server chose, sends each key press as a vote.
// Everything from the server is written with textContent, never as HTML.
"use strict";

const TOKEN = new URLSearchParams(location.search).get("token") || "";
const KEYS = {
  pairs: [
    ["ArrowLeft", "←", "left is better", () => vote({choice: "left"}, "first")],
    ["ArrowRight", "→", "right is better", () => vote({choice: "right"}, "second")],
    ["ArrowDown", "↓", "tie", () => vote({choice: "tie"})],
    [" ", "space", "skip", () => skip()],
    ["z", "z", "undo", () => undo()],
  ],
  stars: [
    ..."12345".split("").map((n) => [n, n, "★".repeat(Number(n)), () => vote({stars: Number(n)})]),
    ["f", "f", "favourite", () => vote({favourite: true})],
    [" ", "space", "skip", () => skip()],
    ["z", "z", "undo", () => undo()],
  ],
};
let item = null;
let busy = false;

const $ = (selector) => document.querySelector(selector);
const setState = (state) => { document.body.dataset.state = state; };
const say = (text) => { $("#status").textContent = text; };

async function api(path, payload) {
  const options = {headers: {"X-Review-Token": TOKEN}};
  if (payload !== undefined) {
    options.method = "POST";
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(payload);
  }
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({error: response.statusText}));
  if (!response.ok) throw new Error(data.error || String(response.status));
  return data;
}

function imageUrl(path) {
  return path + "?token=" + encodeURIComponent(TOKEN);
}

function buildKeys(mode) {
  const nav = $("#keys");
  nav.replaceChildren();
  for (const [, label, meaning, action] of KEYS[mode]) {
    const button = document.createElement("button");
    const kbd = document.createElement("kbd");
    kbd.textContent = label;
    button.append(kbd, meaning);
    button.addEventListener("click", () => act(action));
    nav.append(button);
  }
}

function showParameters(parameters) {
  const list = $("#parameters");
  list.replaceChildren();
  for (const [name, value] of Object.entries(parameters || {})) {
    const term = document.createElement("dt");
    const detail = document.createElement("dd");
    term.textContent = name;
    detail.textContent = String(value);
    list.append(term, detail);
  }
}

async function show(next) {
  item = next;
  if (document.body.dataset.mode !== next.mode) {
    document.body.dataset.mode = next.mode;
    buildKeys(next.mode);
  }
  const images = next.mode === "pairs" ? [next.left, next.right] : [next.src];
  const figures = [$("#first"), $("#second")];
  for (const figure of figures) {
    figure.classList.remove("chosen");
    figure.querySelector("figcaption").textContent = "";
  }
  await Promise.all(images.map((src, i) => {
    const img = figures[i].querySelector("img");
    img.src = imageUrl(src);
    img.alt = next.mode === "pairs" ? (i === 0 ? "left image" : "right image") : "image to rate";
    return img.decode().catch(() => undefined);
  }));
  showParameters(next.mode === "stars" ? next.parameters : null);
  const p = next.progress;
  $("#progress").textContent = next.mode === "pairs"
    ? `${p.votes} pair votes by you · ${p.pairs} pairs in this run`
    : `${p.rated} of ${p.images} images rated by you`;
}

async function loadNext() {
  await show(await api("/api/next"));
}

function revealPair(answer, chosenFigure) {
  const r = answer.reveal;
  if (chosenFigure) $("#" + chosenFigure).classList.add("chosen");
  const left = r.left[r.axis], right = r.right[r.axis];
  const verdict = r.choice === "tie" ? "a tie" : `${r.choice} (${r.axis} ${r.choice === "left" ? left : right})`;
  $("#reveal").textContent = `Last pair: ${r.axis} ${left} (left) vs ${right} (right); you chose ${verdict}.`;
}

async function vote(payload, chosenFigure) {
  const body = item.mode === "pairs" ? {pair: item.pair, ...payload} : {image: item.image, ...payload};
  const answer = await api("/api/vote", body);
  document.body.dataset.votes = String(Number(document.body.dataset.votes) + 1);
  if (item.mode === "pairs") {
    revealPair(answer, chosenFigure);
  } else {
    const shown = Object.entries(answer.reveal.parameters).map(([k, v]) => `${k} ${v}`).join(", ");
    const what = payload.favourite ? "favourite" : "★".repeat(payload.stars);
    $("#reveal").textContent = `Saved ${what} for ${shown || "this image"}.`;
    if (payload.favourite) return;  // stay: the image may still get its stars
  }
  await loadNext();
}

async function skip() {
  await api("/api/skip", item.mode === "pairs" ? {pair: item.pair} : {image: item.image});
  $("#reveal").textContent = "Skipped.";
  await loadNext();
}

async function undo() {
  const answer = await api("/api/undo", {});
  if (!answer.undone) {
    $("#reveal").textContent = "Nothing of yours to undo.";
    return;
  }
  document.body.dataset.votes = String(Number(document.body.dataset.votes) - 1);
  $("#reveal").textContent = `Took back your last vote (${answer.undone.choice}).`;
  if (answer.next) await show(answer.next);
}

async function act(action) {
  if (busy || !item) return;
  busy = true;
  setState("busy");
  try {
    await action();
    say("");
    setState("ready");
  } catch (error) {
    say("Not saved: " + error.message);
    setState("error");
  } finally {
    busy = false;
  }
}

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey || !item) return;
  const binding = KEYS[item.mode].find(([key]) => key === event.key);
  if (!binding) return;
  event.preventDefault();
  act(binding[3]);
});

loadNext().then(() => setState("ready")).catch((error) => {
  say("Cannot load: " + error.message);
  setState("error");
});
