// Talking to this service (relative URLs, so a path prefix in front of it is kept), and the
// same requests written out as curl and Python.

export const endpoint = (path) => new URL(path, document.baseURI).href;

export async function getJSON(path) {
  const reply = await fetch(endpoint(path), { headers: { accept: "application/json" } });
  if (!reply.ok) throw new Error(`${path}: ${reply.status} ${await reply.text()}`);
  return reply.json();
}

/** POST a JSON body; resolves to {ok, status, body} (the service's error body on 4xx/5xx). */
export async function post(path, body, signal) {
  const reply = await fetch(endpoint(path), {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json" },
    body: JSON.stringify(body),
    signal,
  });
  let parsed = null;
  try {
    parsed = await reply.json();
  } catch {
    parsed = { message: `${reply.status} ${reply.statusText}` };
  }
  return { ok: reply.ok, status: reply.status, body: parsed };
}

/**
 * POST each body, at most `limit` in flight; resolves to the replies in order, or stops at the
 * first refusal and resolves to {failed: index, reply}.
 */
export async function postEach(path, bodies, limit, signal) {
  const replies = new Array(bodies.length);
  let next = 0;
  let failed = null;
  async function worker() {
    while (failed === null && next < bodies.length) {
      const index = next++;
      const reply = await post(path, bodies[index], signal);
      if (!reply.ok && failed === null) failed = { failed: index, reply };
      replies[index] = reply;
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, bodies.length) }, worker));
  return failed ?? { replies };
}

/** A number as the service sent it: non-finite values travel as the strings "NaN", "Infinity"... */
export const number = (value) => (typeof value === "string" ? Number(value) : value);

const shellQuote = (text) => `'${text.replaceAll("'", "'\\''")}'`;

export function curl(path, body) {
  return `curl -s ${shellQuote(endpoint(path))} -H 'content-type: application/json' -d ${shellQuote(JSON.stringify(body))}`;
}

function python(value) {
  if (value === null) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "number") return Number.isFinite(value) ? String(value) : JSON.stringify(String(value));
  if (Array.isArray(value)) return `[${value.map(python).join(", ")}]`;
  return `{${Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}: ${python(v)}`).join(", ")}}`;
}

export function pythonSnippet(path, body) {
  return [
    "import httpx",
    "",
    `body = ${python(body)}`,
    `reply = httpx.post(${JSON.stringify(endpoint(path))}, json=body)`,
    "reply.raise_for_status()",
    "print(reply.json())",
  ].join("\n");
}
