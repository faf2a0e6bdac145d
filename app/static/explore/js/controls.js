// Form controls generated from a catalogue parameter (name, type, default, ge/gt/le/lt, choices):
// a select for choices, a checkbox for bools, a slider for numbers bounded on both sides and a
// number field otherwise. Tensor parameters with a one-value default (PReLU's weight) get a
// number field and travel as [value]; other tensor parameters are not adjustable here.

let counter = 0;

const lower = (p) => p.ge ?? p.gt;
const upper = (p) => p.le ?? p.lt;

/** Whether the page can offer a control for this parameter. */
export function adjustable(param) {
  if (param.type !== "tensor") return true;
  return Array.isArray(param.default) && param.default.length === 1 && typeof param.default[0] === "number";
}

/** The value a control starts at: the default, else the catalogue example's, else 0. */
export function initialValue(param, example) {
  if (param.type === "tensor") return param.default[0];
  if (param.default !== undefined) return param.default;
  if (example && example[param.name] !== undefined) return example[param.name];
  return param.type === "bool" ? false : 0;
}

/** The parameter's value as the service expects it (undefined: leave it out). */
export function wireValue(param, value) {
  if (value === null || value === undefined || (typeof value === "number" && Number.isNaN(value))) return undefined;
  return param.type === "tensor" ? [value] : value;
}

function parse(param, raw) {
  if (raw === "") return null;
  const number = Number(raw);
  return param.type === "int" ? Math.round(number) : number;
}

function described(element, param, id) {
  if (!param.doc) return null;
  const help = document.createElement("p");
  help.className = "help";
  help.id = `${id}-help`;
  help.textContent = param.doc + bounds(param);
  element.setAttribute("aria-describedby", help.id);
  return help;
}

function bounds(param) {
  const parts = [];
  if (param.ge !== undefined) parts.push(`≥ ${param.ge}`);
  if (param.gt !== undefined) parts.push(`> ${param.gt}`);
  if (param.le !== undefined) parts.push(`≤ ${param.le}`);
  if (param.lt !== undefined) parts.push(`< ${param.lt}`);
  return parts.length ? ` (${parts.join(", ")})` : "";
}

/**
 * A labelled control for `param` starting at `value`; `onChange(value, final)` is called as it
 * changes (`final` false while a slider is being dragged).
 */
export function control(param, value, onChange) {
  const id = `param-${++counter}`;
  const wrap = document.createElement("div");
  wrap.className = "param";
  wrap.dataset.param = param.name;
  const label = document.createElement("label");
  label.htmlFor = id;
  label.textContent = param.name;

  let input;
  if (param.choices) {
    input = document.createElement("select");
    for (const choice of param.choices) {
      const option = document.createElement("option");
      option.value = String(choice);
      option.textContent = String(choice);
      input.append(option);
    }
    input.value = String(value);
    const numeric = param.choices.every((c) => typeof c === "number");
    input.addEventListener("change", () => onChange(numeric ? Number(input.value) : input.value, true));
    wrap.append(label, input);
  } else if (param.type === "bool") {
    wrap.classList.add("checkbox");
    input = document.createElement("input");
    input.type = "checkbox";
    input.checked = Boolean(value);
    input.addEventListener("change", () => onChange(input.checked, true));
    label.prepend(input);
    wrap.append(label);
  } else if (lower(param) !== undefined && upper(param) !== undefined) {
    const lo = lower(param);
    const hi = upper(param);
    const step = param.type === "int" ? 1 : (hi - lo) / 200;
    input = document.createElement("input");
    input.type = "range";
    input.min = String(param.gt !== undefined ? lo + step : lo);
    input.max = String(param.lt !== undefined ? hi - step : hi);
    input.step = String(step);
    input.value = String(value);
    const shown = document.createElement("output");
    shown.htmlFor = id;
    shown.textContent = String(value);
    input.addEventListener("input", () => {
      shown.textContent = input.value;
      onChange(parse(param, input.value), false);
    });
    input.addEventListener("change", () => onChange(parse(param, input.value), true));
    const slider = document.createElement("div");
    slider.className = "slider";
    slider.append(input, shown);
    wrap.append(label, slider);
  } else {
    input = document.createElement("input");
    input.type = "number";
    input.step = param.type === "int" ? "1" : "any";
    if (lower(param) !== undefined) input.min = String(lower(param));
    if (upper(param) !== undefined) input.max = String(upper(param));
    input.value = value === null || value === undefined ? "" : String(value);
    if (param.nullable) input.placeholder = "none";
    input.addEventListener("change", () => onChange(parse(param, input.value), true));
    wrap.append(label, input);
  }
  input.id = id;
  input.name = param.name;
  const help = described(input, param, id);
  if (help) wrap.append(help);
  return wrap;
}
