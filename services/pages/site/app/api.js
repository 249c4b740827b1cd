// api.js: the snaptext HTTP API as the web client uses it (API.md), and the
// sentences a person reads when a call fails. Nothing here touches the page.

/** One call. Resolves to {status, body, headers, retryAfter}; status 0 when
 *  the server could not be reached at all. Never throws. */
export async function call(method, path, { token, body, headers } = {}) {
  const h = { ...(headers || {}) };
  if (token) h.Authorization = "Bearer " + token;
  if (body !== undefined) h["Content-Type"] = "application/json";
  let resp;
  try {
    resp = await fetch(path, {
      method, headers: h, body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit", cache: "no-store", redirect: "error",
    });
  } catch {
    return { status: 0, body: null, headers: new Headers(), retryAfter: null };
  }
  let parsed = null;
  const text = await resp.text().catch(() => "");
  if (text) {
    try { parsed = JSON.parse(text); } catch { parsed = null; }
  }
  const ra = resp.headers.get("Retry-After");
  const retryAfter = ra !== null && /^[0-9]+$/.test(ra) ? Number(ra) : null;
  return { status: resp.status, body: parsed, headers: resp.headers, retryAfter };
}

/** A fresh Idempotency-Key (API.md: 1-64 of A-Z a-z 0-9 _ -). */
export function newKey() {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** UTF-8 length of s, as the API counts it. */
export function utf8Bytes(s) {
  return new TextEncoder().encode(s).length;
}

const seconds = (n) => (n === 1 ? "1 second" : `${n} seconds`);

/** 1 when an answer says the route itself is missing (a server older than
 *  API.md's receipt and unsend routes): HAProxy's or a service's "no such
 *  route" 404, or a 405 for the method. */
export function routeMissing(r) {
  if (r.status === 405) return true;
  return r.status === 404 && /no such route/i.test(r.body?.message || "");
}

/** The sentence for a failed call. what: "send", "read", "login",
 *  "register", "status", "unsend", "lookup", "logout". */
export function explain(r, what) {
  const code = r.body?.error || "";
  const msg = r.body?.message || "";
  const wait = r.retryAfter ?? 1;
  switch (r.status) {
    case 0:
      return "snaptext cannot be reached. Check your connection, then try again.";
    case 400:
      if (what === "read" && /wait/i.test(msg))
        return "This server cannot wait for new snaps yet. Untick the waiting box and read again.";
      return `That did not work: ${msg || "the request was not accepted"}. Correct it and try again.`;
    case 401:
      if (what === "login") return "Wrong username or password. Check both and try again.";
      return "You need to log in first (or your session has ended). Log in, then try again.";
    case 403:
      if (what === "lookup") return "Only admins can look up messages.";
      if (what === "read") return "You can only read your own inbox.";
      return "You are not allowed to do that: only the sender of a snap (or an admin) can.";
    case 404:
      if (what === "status" && routeMissing(r)) return "This server does not report receipts yet, so there is nothing to show about this snap.";
      if (what === "unsend" && routeMissing(r)) return "This server cannot unsend snaps yet.";
      return "There is no message with that id.";
    case 405:
      if (what === "status") return "This server does not report receipts yet, so there is nothing to show about this snap.";
      if (what === "unsend") return "This server cannot unsend snaps yet.";
      return "The server does not offer that here.";
    case 409:
      if (what === "register") return "That username is already taken. Pick another one.";
      if (what === "unsend") return "Too late to unsend: it was already read, has expired, or was unsent before.";
      return "That conflicts with an earlier request. Reload the page and try again.";
    case 413:
      return "That is too large to send. Shorten the text and try again.";
    case 415:
      return "The server did not accept the request's format. Reload the page and try again.";
    case 429:
      if (code === "inbox_full")
        return "The recipient's inbox is full: they must read their snaps before they can get new ones. Nothing was sent.";
      if (what === "login")
        return `Too many failed logins. Wait ${seconds(wait)}, then try again.`;
      return `Too many requests right now. Wait ${seconds(wait)}, then try again.`;
    case 503:
      return `snaptext is unavailable for a moment (its storage cannot be reached). Try again in ${seconds(wait)}.`;
    default:
      if (r.status >= 500) return `snaptext had a problem (${r.status}). Try again in a moment.`;
      return `Unexpected answer (${r.status}): ${msg || "no details"}.`;
  }
}

/** Worth offering a "Try again" button. */
export function retryable(r) {
  return r.status === 0 || r.status === 429 && r.body?.error !== "inbox_full" || r.status >= 500;
}
