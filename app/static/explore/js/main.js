// The explorer: pick functions from the catalogue, set their parameters, and plot what the
// service answers. Each redraw is one POST per function over the whole x grid, or, for a loss
// without reduction "none", one small POST per point (POINT_REQUESTS at a time).
// `window.explorer.lastData` holds exactly what was sent and plotted (for tests and the curious).

import { curl, getJSON, number, post, postEach, pythonSnippet } from "./api.js";
import { Chart, PALETTE, saturated } from "./chart.js";
import { adjustable, control, initialValue, wireValue } from "./controls.js";
import { activationSweep, lossSweep, oneRequest } from "./sweeps.js";

const $ = (id) => document.getElementById(id);

// Requests in flight at once for a loss asked point by point: a browser opens at most six
// connections to one origin, so more would only wait in its queue.
const POINT_REQUESTS = 6;

const MODES = {
  activation: {
    path: "activate",
    sweep: activationSweep,
    start: ["sigmoid", "gelu", "leaky_relu"],
    range: { min: -5, max: 5, points: 401 },
    rangeLegend: "Range of x",
    captions: ["f(x)", "f′(x) = df/dx"],
    axes: ["x", "f(x)", "f′(x)"],
  },
  loss: {
    path: "loss",
    sweep: lossSweep,
    start: ["mse_loss", "l1_loss", "huber_loss", "cross_entropy"],
    range: { min: -3, max: 3, points: 401 },
    rangeLegend: "Range of the prediction x",
    captions: ["loss(x)", "∂loss/∂x"],
    axes: ["prediction x", "loss", "∂loss/∂x"],
  },
};

const state = {
  mode: "activation",
  catalogue: {}, // mode -> [entry]
  chosen: { activation: new Map(), loss: new Map() }, // mode -> name -> {params, sweep, color}
  notices: { activation: [], loss: [] }, // mode -> what the address asked for and is not plotted, and why
  results: [],
  x: [],
};

const explorer = { lastData: null, redraws: 0, ready: false };
window.explorer = explorer;

const charts = { value: new Chart($("value-chart"), "f(x)"), grad: new Chart($("grad-chart"), "f′(x)") };

// ----- the function list and each chosen function's controls -----

function entryOf(name) {
  return state.catalogue[state.mode].find((e) => e.name === name);
}

/** The entry a name from the address stands for: its name or an alias, in any case. */
function lookUp(mode, name) {
  const wanted = name.toLowerCase();
  const named = (e) => e.name === wanted || (e.aliases ?? []).some((a) => a.toLowerCase() === wanted);
  return state.catalogue[mode].find(named);
}

const perPoint = (entry) => state.mode === "loss" && !oneRequest(entry);

function nextColor(chosen) {
  const used = new Set([...chosen.values()].map((c) => c.color));
  return PALETTE.find((c) => !used.has(c)) ?? PALETTE[chosen.size % PALETTE.length];
}

function choose(name) {
  const entry = entryOf(name);
  const sweep = MODES[state.mode].sweep(entry);
  const chosen = state.chosen[state.mode];
  const params = {};
  for (const p of entry.params) {
    if (adjustable(p) && !sweep.fixed.includes(p.name)) params[p.name] = initialValue(p, entry.example?.params);
  }
  const sweepValues = Object.fromEntries((sweep.controls ?? []).map((c) => [c.name, c.default]));
  chosen.set(name, { params, sweep: sweepValues, color: nextColor(chosen) });
}

function renderList() {
  const list = $("function-list");
  list.replaceChildren();
  const chosen = state.chosen[state.mode];
  for (const entry of state.catalogue[state.mode]) {
    const sweep = MODES[state.mode].sweep(entry);
    const label = document.createElement("label");
    label.dataset.name = entry.name;
    const box = document.createElement("input");
    box.type = "checkbox";
    box.value = entry.name;
    box.checked = chosen.has(entry.name);
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.setAttribute("aria-hidden", "true");
    swatch.style.background = chosen.get(entry.name)?.color ?? "transparent";
    label.append(box, swatch, entry.name);
    if (typeof sweep === "string") {
      box.disabled = true;
      label.classList.add("unsupported");
      label.title = `Not plotted here: ${sweep}`;
      const why = document.createElement("span");
      why.className = "visually-hidden";
      why.textContent = ` (not plotted here: ${sweep})`;
      label.append(why);
    } else {
      label.title = entry.summary ?? entry.name;
    }
    box.addEventListener("change", () => {
      if (box.checked) choose(entry.name);
      else chosen.delete(entry.name);
      state.notices[state.mode] = [];
      writeHash();
      renderList();
      renderParams();
      schedule(0);
      list.querySelector(`input[value="${entry.name}"]`)?.focus();
    });
    list.append(label);
  }
  applyFilter();
  renderUnplottable();
}

// The functions of this mode with no sweep, named under the list with the reason.
function renderUnplottable() {
  const byReason = new Map();
  for (const entry of state.catalogue[state.mode]) {
    const sweep = MODES[state.mode].sweep(entry);
    if (typeof sweep === "string") byReason.set(sweep, [...(byReason.get(sweep) ?? []), entry.name]);
  }
  $("unplottable").textContent = [...byReason]
    .map(([why, names]) => `Not plotted here: ${names.join(", ")} (${why}).`)
    .join(" ");
}

function applyFilter() {
  const text = $("filter").value.trim().toLowerCase();
  for (const label of $("function-list").children) {
    label.hidden = Boolean(text) && !label.dataset.name.includes(text);
  }
}

function renderParams() {
  const holder = $("function-params");
  holder.replaceChildren();
  for (const [name, chosen] of state.chosen[state.mode]) {
    const entry = entryOf(name);
    const sweep = MODES[state.mode].sweep(entry);
    const set = document.createElement("fieldset");
    set.dataset.function = name;
    const legend = document.createElement("legend");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.setAttribute("aria-hidden", "true");
    swatch.style.background = chosen.color;
    legend.append(swatch, name);
    set.append(legend);
    for (const p of entry.params) {
      if (!(p.name in chosen.params)) continue;
      set.append(
        control(p, chosen.params[p.name], (value, final) => {
          chosen.params[p.name] = value;
          schedule(final ? 0 : 60);
        }),
      );
    }
    for (const c of sweep.controls ?? []) {
      const element = control(c, chosen.sweep[c.name], (value, final) => {
        chosen.sweep[c.name] = value;
        schedule(final ? 0 : 60);
      });
      element.dataset.sweep = "true";
      set.append(element);
    }
    const note = document.createElement("p");
    note.className = "sweep-note";
    const fixed = sweep.fixed.filter((f) => entry.params.some((p) => p.name === f) && !perPoint(entry));
    const hidden = entry.params.filter((p) => !adjustable(p)).map((p) => p.name);
    note.textContent = [
      sweep.note,
      perPoint(entry)
        ? "It takes no reduction \"none\", so each point is its own request (a batch of one), " +
          `${POINT_REQUESTS} at a time; the request shown below is the first point's.`
        : "",
      fixed.length ? `Fixed: ${fixed.map((f) => (f === "reduction" ? "reduction = none" : `${f} = -1`)).join(", ")}.` : "",
      hidden.length ? `Left at their defaults: ${hidden.join(", ")}.` : "",
    ]
      .filter(Boolean)
      .join(" ");
    set.append(note);
    holder.append(set);
  }
}

// ----- computing -----

function grid() {
  const min = Number($("x-min").value);
  const max = Number($("x-max").value);
  const points = Math.round(Number($("points").value));
  if (!Number.isFinite(min) || !Number.isFinite(max) || !(min < max)) throw new Error("the range needs from < to");
  if (!(points >= 3 && points <= 5001)) throw new Error("points must be between 3 and 5001");
  return Array.from({ length: points }, (_, i) => Number(((min * (points - 1 - i) + max * i) / (points - 1)).toPrecision(7)));
}

function requestBody(name, chosen, sweep, xs, reduce) {
  const entry = entryOf(name);
  const tensors = sweep.body(xs, chosen.sweep);
  const params = {};
  for (const p of entry.params) {
    if (p.name in chosen.params) {
      const value = wireValue(p, chosen.params[p.name]);
      if (value !== undefined) params[p.name] = value;
    }
  }
  Object.assign(params, tensors.params ?? {});
  if (reduce) params.reduction = "none";
  const { params: _ignored, ...rest } = tensors;
  const body = { function: name, ...rest };
  if (Object.keys(params).length) body.params = params;
  body.grad = true;
  return body;
}

const refusal = (reply) => `${reply.status}: ${reply.body?.message ?? JSON.stringify(reply.body)}`;

// The whole grid in one request; the values read back, or null with result.error set.
async function whole(result, chosen, sweep, xs, signal) {
  result.request = requestBody(result.function, chosen, sweep, xs, state.mode === "loss");
  result.requests = 1;
  const reply = await post(result.path, result.request, signal);
  if (!reply.ok) {
    result.error = refusal(reply);
    return null;
  }
  return sweep.read(reply.body);
}

// One request per point, each a batch of one: its loss is the loss at that point whatever the
// loss reduces to. Stops at the first refusal.
async function pointByPoint(result, chosen, sweep, xs, signal) {
  const bodies = xs.map((x) => requestBody(result.function, chosen, sweep, [x], false));
  result.request = bodies[0];
  result.requests = bodies.length;
  const answer = await postEach(result.path, bodies, POINT_REQUESTS, signal);
  if (answer.reply) {
    result.error = `${refusal(answer.reply)} (at x = ${xs[answer.failed]}, asked point by point)`;
    return null;
  }
  const y = [];
  const dy = [];
  for (const reply of answer.replies) {
    const read = sweep.read({ ...reply.body, loss: [reply.body.loss].flat(Infinity) });
    y.push(read.y[0]);
    dy.push(read.dy[0]);
  }
  return { y, dy };
}

async function curve(name, chosen, x, signal) {
  const entry = entryOf(name);
  const sweep = MODES[state.mode].sweep(entry);
  const path = MODES[state.mode].path;
  const inside = sweep.domain ? x.map((v) => v >= sweep.domain[0] && v <= sweep.domain[1]) : x.map(() => true);
  const xs = x.filter((_, i) => inside[i]);
  const result = { function: name, color: chosen.color, path, request: null, requests: 0, y: [], dy: [], error: null };
  if (!xs.length) {
    result.error = `needs x within [${sweep.domain.join(", ")}]`;
    return result;
  }
  const ask = perPoint(entry) ? pointByPoint : whole;
  const read = await ask(result, chosen, sweep, xs, signal);
  if (!read) return result;
  let k = 0;
  result.y = x.map((_, i) => (inside[i] ? number(read.y[k++]) : null));
  k = 0;
  result.dy = x.map((_, i) => (inside[i] ? number(read.dy[k++]) : null));
  return result;
}

let timer = null;
let generation = 0;
let inflight = null;

// Every change schedules a redraw and makes the answers still in flight stale.
function schedule(delay) {
  generation += 1;
  clearTimeout(timer);
  timer = setTimeout(redraw, delay);
}

async function redraw() {
  const mine = generation;
  inflight?.abort();
  inflight = new AbortController();
  let x;
  try {
    x = grid();
  } catch (error) {
    $("status").textContent = `Not plotted: ${error.message}.`;
    return;
  }
  document.documentElement.dataset.state = "loading";
  const started = performance.now();
  const chosen = [...state.chosen[state.mode]];
  let results;
  try {
    results = await Promise.all(chosen.map(([name, c]) => curve(name, c, x, inflight.signal)));
  } catch (error) {
    if (error.name === "AbortError") return;
    results = chosen.map(([name, c]) => ({ function: name, color: c.color, requests: 0, y: [], dy: [], error: String(error) }));
  }
  if (mine !== generation) return;
  state.x = x;
  state.results = results;
  render(performance.now() - started);
}

// ----- drawing -----

function render(milliseconds) {
  const mode = MODES[state.mode];
  const x = state.x;
  const shade = $("shade").checked;
  const threshold = Number($("threshold").value) || 0;
  const drawn = state.results.filter((r) => !r.error);
  for (const r of state.results) r.saturated = r.error ? [] : saturated(x, r.dy, threshold);
  const curves = (key) =>
    drawn.map((r) => ({ label: r.function, color: r.color, values: r[key], saturated: shade ? r.saturated : null }));
  charts.value.yLabel = mode.axes[1];
  charts.grad.yLabel = mode.axes[2];
  charts.value.draw(x, curves("y"), mode.axes[0]);
  charts.grad.draw(x, curves("dy"), mode.axes[0]);
  $("value-caption").textContent = mode.captions[0];
  $("grad-caption").textContent = mode.captions[1];
  $("value-summary").textContent = summary(drawn, "y", x);
  $("grad-summary").textContent = summary(drawn, "dy", x, shade ? threshold : null);

  const problems = [
    ...state.notices[state.mode],
    ...state.results.filter((r) => r.error).map((r) => `${r.function}: not plotted: ${r.error}`),
  ];
  $("errors").replaceChildren(
    ...problems.map((text) => {
      const p = document.createElement("p");
      p.textContent = text;
      return p;
    }),
  );
  const names = drawn.map((r) => r.function).join(", ") || "nothing";
  const requests = state.results.reduce((sum, r) => sum + r.requests, 0);
  $("status").textContent =
    milliseconds === undefined
      ? $("status").textContent
      : `Plotted ${names} at ${x.length} points from ${x[0]} to ${x[x.length - 1]}: ${requests} requests, ${Math.round(milliseconds)} ms.`;
  renderRequestChoices();

  explorer.lastData = {
    mode: state.mode,
    x,
    threshold,
    milliseconds,
    notices: [...state.notices[state.mode]],
    curves: state.results.map(({ color, ...r }) => r),
  };
  if (milliseconds !== undefined) explorer.redraws += 1;
  document.documentElement.dataset.redraws = String(explorer.redraws);
  document.documentElement.dataset.state = "ready";
  document.dispatchEvent(new CustomEvent("explorer:drawn"));
}

function summary(drawn, key, x, threshold = null) {
  if (!drawn.length) return "No curves.";
  return drawn
    .map((r) => {
      const values = r[key].filter((v) => typeof v === "number" && Number.isFinite(v));
      if (!values.length) return `${r.function}: no finite values.`;
      const lo = Math.min(...values).toPrecision(3);
      const hi = Math.max(...values).toPrecision(3);
      let text = `${r.function}: from ${lo} to ${hi} over x in [${x[0]}, ${x[x.length - 1]}].`;
      if (threshold !== null && r.saturated.length) {
        const parts = r.saturated.map(([a, b]) => `[${a.toPrecision(3)}, ${b.toPrecision(3)}]`).join(", ");
        text += ` Gradient below ${threshold} on ${parts}.`;
      }
      return text;
    })
    .join(" ");
}

function renderRequestChoices() {
  const select = $("request-for");
  const previous = select.value;
  const withRequests = state.results.filter((r) => r.request);
  select.replaceChildren(
    ...withRequests.map((r) => {
      const option = document.createElement("option");
      option.value = r.function;
      option.textContent = r.function;
      return option;
    }),
  );
  if (withRequests.some((r) => r.function === previous)) select.value = previous;
  showRequest();
}

function showRequest() {
  const r = state.results.find((c) => c.function === $("request-for").value && c.request);
  $("curl-code").textContent = r ? curl(r.path, r.request) : "";
  $("python-code").textContent = r ? pythonSnippet(r.path, r.request) : "";
}

async function copy(button) {
  const text = $(button.dataset.copy).textContent;
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = "Copied";
  } catch {
    const range = document.createRange();
    range.selectNodeContents($(button.dataset.copy));
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    button.textContent = "Selected: press Ctrl+C";
  }
  setTimeout(() => (button.textContent = "Copy"), 2000);
}

// ----- modes and start-up -----

// The address names the mode and the functions (#activations=sigmoid,gelu), so a view can be shared.
const HASH = { activation: "activations", loss: "losses" };

function writeHash() {
  const names = [...state.chosen[state.mode].keys()].join(",");
  history.replaceState(null, "", `#${HASH[state.mode]}=${names}`);
}

function readHash() {
  const match = /^#(activations|losses)(?:=(.*))?$/.exec(decodeURIComponent(location.hash));
  if (!match) return { mode: "activation", names: null };
  const names = match[2] === undefined ? null : match[2].split(",").filter(Boolean);
  return { mode: match[1] === "losses" ? "loss" : "activation", names };
}

function setMode(mode, first = false) {
  if (!first) {
    MODES[state.mode].range = { min: $("x-min").value, max: $("x-max").value, points: $("points").value };
  }
  state.mode = mode;
  const m = MODES[mode];
  $("x-min").value = m.range.min;
  $("x-max").value = m.range.max;
  $("points").value = m.range.points;
  $("range-legend").textContent = m.rangeLegend;
  $("functions-legend").textContent = mode === "activation" ? "Activation functions" : "Loss functions";
  document.querySelector(`input[name="mode"][value="${mode}"]`).checked = true;
  writeHash();
  renderList();
  renderParams();
  schedule(0);
}

// Why a name the address gives is not in this mode's list.
function unknown(mode, name) {
  const other = mode === "loss" ? "activation" : "loss";
  const there = lookUp(other, name);
  const kind = other === "loss" ? "a loss" : "an activation";
  if (there) return `${there.name} is ${kind}: open #${HASH[other]}=${there.name}`;
  return `no ${mode} of that name in this service's catalogue (GET /functions lists them)`;
}

async function start() {
  const [activations, losses] = await Promise.all([
    getJSON("functions?kind=activation"),
    getJSON("functions?kind=loss"),
  ]);
  state.catalogue = { activation: activations.functions, loss: losses.functions };
  const wanted = readHash();
  for (const mode of Object.keys(MODES)) {
    state.mode = mode;
    const fromAddress = mode === wanted.mode && wanted.names;
    for (const name of fromAddress ? wanted.names : MODES[mode].start) {
      const entry = lookUp(mode, name);
      const why = entry ? MODES[mode].sweep(entry) : unknown(mode, name);
      if (typeof why === "string") {
        if (fromAddress) state.notices[mode].push(`${name}: not plotted: ${why}.`);
      } else if (!state.chosen[mode].has(entry.name)) {
        choose(entry.name);
      }
    }
  }
  for (const radio of document.querySelectorAll('input[name="mode"]')) {
    radio.addEventListener("change", () => radio.checked && setMode(radio.value));
  }
  for (const id of ["x-min", "x-max", "points"]) $(id).addEventListener("change", () => schedule(0));
  for (const id of ["shade", "threshold"]) $(id).addEventListener("change", () => render());
  $("filter").addEventListener("input", applyFilter);
  $("request-for").addEventListener("change", showRequest);
  $("controls").addEventListener("submit", (event) => event.preventDefault());
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", () => copy(button));
  }
  explorer.ready = true;
  setMode(wanted.mode, true);
}

start().catch((error) => {
  $("status").textContent = `The catalogue could not be loaded: ${error.message}`;
});
