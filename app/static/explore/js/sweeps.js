// How each catalogue function is swept along one number x: the request body for a grid of x
// (one request for the whole grid), and how to read f(x) and df/dx back from the reply.
// The service computes every number; this only lays out tensors and picks entries.

const repeat = (n, value) => Array.from({ length: n }, () => value);
const column = (reply, key) => (reply[key] ?? []).map((row) => row[0]);

// ----- activations -----

const elementwise = {
  note: "Each point is one element of the input; the gradient is the vector-Jacobian product with ones.",
  fixed: [],
  body: (xs) => ({ input: xs }),
  read: (reply) => ({ y: reply.output, dy: reply.grad }),
};

// softmax, softmin, log_softmax (functions with a `dim`): each point is the vector [x, 0].
const pair = {
  note: "Each point is the vector [x, 0] along dim -1; plotted: the output's first entry and its derivative in x.",
  fixed: ["dim"],
  body: (xs) => ({
    input: xs.map((x) => [x, 0]),
    grad_output: repeat(xs.length, [1, 0]),
    params: { dim: -1 },
  }),
  read: (reply) => ({ y: column(reply, "output"), dy: column(reply, "grad") }),
};

// glu: the gate half moves, the value half is 1, so the output is the gate sigmoid(x).
const gate = {
  note: "Each point is the vector [1, x]: value 1, gate x (glu halves dim -1); plotted: the output and its derivative in x.",
  fixed: ["dim"],
  body: (xs) => ({ input: xs.map((x) => [1, x]), params: { dim: -1 } }),
  read: (reply) => ({ y: column(reply, "output"), dy: (reply.grad ?? []).map((row) => row[1]) }),
};

// softmax2d: softmax over the channels of a (C, H, W) image: channel 0 moves, channel 1 is 0.
const channels = {
  note: "Each point is a pixel with two channels [x, 0] (input shape (2, N, 1)); plotted: channel 0 and its derivative in x.",
  fixed: [],
  body: (xs) => ({
    input: [xs.map((x) => [x]), xs.map(() => [0])],
    grad_output: [xs.map(() => [1]), xs.map(() => [0])],
  }),
  read: (reply) => ({ y: (reply.output?.[0] ?? []).map((p) => p[0]), dy: (reply.grad?.[0] ?? []).map((p) => p[0]) }),
};

export function activationSweep(entry) {
  if (entry.name === "glu") return gate;
  if (entry.name === "softmax2d") return channels;
  if (entry.params.some((p) => p.name === "dim")) return pair;
  return elementwise;
}

// ----- losses (reduction "none": one loss per point; without it, one request per point) -----

/**
 * Whether one request gives the loss at every point: the loss takes reduction "none". A loss
 * without it (a plugin written as a tutorial writes one) is asked point by point instead: one
 * small request per x, each answering the loss at that point, so nothing is needed of it but
 * its forward.
 */
export function oneRequest(entry) {
  const reduction = entry.params.find((p) => p.name === "reduction");
  return Boolean(reduction?.choices?.includes("none"));
}

const CLASSES = { name: "classes", type: "int", doc: "number of classes (logits per point)", default: 3, ge: 2, le: 10 };

function targetControl(tensor) {
  if (/1 or -1/.test(tensor.doc)) {
    return { name: "target", type: "float", doc: tensor.doc, default: 1, choices: [1, -1] };
  }
  if (/probabilit/.test(tensor.doc)) {
    return { name: "target", type: "float", doc: tensor.doc, default: 1, ge: 0, le: 1 };
  }
  return { name: "target", type: "float", doc: tensor.doc, default: 1 };
}

// The inputs of these losses must lie in a range; the grid is cut to it.
const DOMAINS = { binary_cross_entropy: [0, 1] };

function pointwiseLoss(entry, target) {
  const extra = entry.tensors.filter(
    (t) => t.location === "inputs" && t.required && t.element_type === "floating point",
  );
  const extraNote = extra.length ? `; ${extra.map((t) => `${t.name} = 1`).join(", ")}` : "";
  return {
    note: `Each point is one prediction x against the target (shape (N, 1))${extraNote}; plotted: the loss and its gradient in x.`,
    fixed: ["reduction"],
    controls: [targetControl(target)],
    domain: DOMAINS[entry.name],
    body: (xs, sweep) => {
      const body = { input: xs.map((x) => [x]), target: xs.map(() => [sweep.target]) };
      if (extra.length) body.inputs = Object.fromEntries(extra.map((t) => [t.name, xs.map(() => [1])]));
      return body;
    },
    read: (reply) => ({ y: (reply.loss ?? []).flat(), dy: (reply.grad?.input ?? []).flat() }),
  };
}

function classificationLoss(entry, target) {
  const padded = /-1 ends/.test(target.doc); // multilabel_margin_loss: a list of classes ended by -1
  return {
    note: "Each point is a row of logits [x, 0, …, 0] for the target class; x is the first logit. Plotted: the loss and its gradient in x.",
    fixed: ["reduction"],
    controls: [
      CLASSES,
      { name: "target_class", type: "int", doc: "the true class (x is the logit of class 0)", default: 0, ge: 0, le: 9 },
    ],
    body: (xs, sweep) => {
      const classes = sweep.classes;
      const k = Math.min(sweep.target_class, classes - 1);
      const row = (x) => [x, ...repeat(classes - 1, 0)];
      const label = padded ? [k, ...repeat(classes - 1, -1)] : k;
      return { input: xs.map(row), target: xs.map(() => label) };
    },
    read: (reply) => ({ y: (reply.loss ?? []).flat(), dy: column(reply.grad ?? {}, "input") }),
  };
}

const ranking = {
  note: "Each point ranks score x (input1) against a fixed score (input2); plotted: the loss and its gradient in x.",
  fixed: ["reduction"],
  controls: [
    { name: "other_score", type: "float", doc: "input2, the score x is ranked against", default: 0 },
    { name: "target", type: "float", doc: "1 if input1 should rank higher, -1 otherwise", default: 1, choices: [1, -1] },
  ],
  body: (xs, sweep) => ({
    inputs: { input1: xs, input2: xs.map(() => sweep.other_score) },
    target: xs.map(() => sweep.target),
  }),
  read: (reply) => ({ y: reply.loss ?? [], dy: reply.grad?.input1 ?? [] }),
};

/** The sweep of a loss, or a string saying why it has none. */
export function lossSweep(entry) {
  const byName = Object.fromEntries(entry.tensors.map((t) => [t.name, t]));
  if (entry.name === "margin_ranking_loss") return ranking;
  const input = byName.input;
  const target = byName.target;
  if (!input || input.location !== "top level" || !target) {
    return "its tensors are vectors or sequences, not one prediction";
  }
  if (/integer/.test(target.element_type)) return classificationLoss(entry, target);
  return pointwiseLoss(entry, target);
}
