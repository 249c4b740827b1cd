// main.js: the snaptext web client. Every text from the server goes into the
// page with textContent, never as markup. The token lives in this tab's
// sessionStorage only (no cookie), and is dropped on log out.
import { call, explain, newKey, retryable, routeMissing, utf8Bytes } from "./api.js";

const MAX_TEXT_BYTES = 4096;
const MAX_TIMEOUT = 2592000;
const $ = (id) => document.getElementById(id);
const store = window.sessionStorage;

const state = {
  token: store.getItem("snaptext.token"),
  me: null,
  sent: JSON.parse(store.getItem("snaptext.sent") || "[]"),
};

// ---- small helpers -------------------------------------------------------

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function ago(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 10) return "just now";
  if (s < 60) return `${s} seconds ago`;
  const m = Math.round(s / 60);
  if (m < 60) return m === 1 ? "1 minute ago" : `${m} minutes ago`;
  const h = Math.round(m / 60);
  return h === 1 ? "1 hour ago" : `${h} hours ago`;
}

/** "2026-11-23 10:15:00" (UTC, API.md) as a local date and time. */
function localTime(utc) {
  if (!utc) return "";
  const d = new Date(utc.replace(" ", "T") + "Z");
  return isNaN(d) ? utc : d.toLocaleString();
}

function duration(s) {
  const units = [[86400, "day"], [3600, "hour"], [60, "minute"], [1, "second"]];
  for (const [n, name] of units)
    if (s % n === 0 && s >= n) return `${s / n} ${name}${s / n === 1 ? "" : "s"}`;
  return `${s} seconds`;
}

function saveSent() {
  store.setItem("snaptext.sent", JSON.stringify(state.sent.slice(0, 50)));
}

// ---- the notice: one sentence per failure, with "Try again" when it helps --

let retryAction = null;

function showNotice(text, kind = "error", retry = null) {
  $("notice").hidden = false;
  $("notice").dataset.kind = kind;
  $("notice-text").textContent = text;
  retryAction = retry;
  $("notice-retry").hidden = retry === null;
}

function clearNotice() {
  $("notice").hidden = true;
  retryAction = null;
}

function fail(r, what, retry) {
  showNotice(explain(r, what), "error", retryable(r) ? retry : null);
}

// ---- account -------------------------------------------------------------

async function loadMe() {
  if (!state.token) { state.me = null; return; }
  const r = await call("GET", "/users/me", { token: state.token });
  if (r.status === 200) state.me = r.body;
  else if (r.status === 401) dropSession();
  else fail(r, "me", loadMe);
}

function dropSession() {
  state.token = null;
  state.me = null;
  store.removeItem("snaptext.token");
}

function render() {
  const me = state.me;
  $("who").hidden = !me;
  $("account").hidden = !!me;
  $("who-name").textContent = me ? me.username : "";
  $("who-role").hidden = !(me && me.role === "admin");
  $("admin").hidden = !(me && me.role === "admin");
  $("inbox-title").textContent = me ? `Your inbox (${me.username})` : "Your inbox";
  $("read-button").disabled = !me;
  $("sent-empty").hidden = state.sent.length > 0;
  renderSent();
}

async function onAuth(ev) {
  ev.preventDefault();
  const action = ev.submitter?.value === "register" ? "register" : "login";
  const username = $("auth-user").value.trim();
  const password = $("auth-pass").value;
  if (!username) return showNotice("Type a username first.");
  if (utf8Bytes(password) < 8) return showNotice("A password has at least 8 characters.");
  const r = await call("POST", action === "register" ? "/users" : "/sessions",
                       { body: { username, password } });
  if (r.status !== 201) return fail(r, action, () => $(action).click());
  state.token = r.body.token;
  store.setItem("snaptext.token", state.token);
  $("auth-pass").value = "";
  await loadMe();
  render();
  showNotice(action === "register" ? `Welcome, ${username}. You are registered and logged in.`
                                   : `Logged in as ${username}.`, "ok");
  $("send-to").focus();
}

async function onLogout() {
  const r = await call("DELETE", "/sessions/current", { token: state.token });
  if (r.status !== 204 && r.status !== 401) return fail(r, "logout", onLogout);
  dropSession();
  $("inbox-list").replaceChildren();
  $("inbox-state").hidden = true;
  render();
  showNotice("You are logged out. Snaps you already read stay gone.", "ok");
  $("auth-user").focus();
}

// ---- send ----------------------------------------------------------------

function updateCounter() {
  const n = utf8Bytes($("send-text").value);
  const c = $("send-count");
  c.textContent = `${n} / ${MAX_TEXT_BYTES} bytes`;
  c.classList.toggle("over", n > MAX_TEXT_BYTES);
  if (n > MAX_TEXT_BYTES) c.textContent += ` — ${n - MAX_TEXT_BYTES} too many`;
}

function chosenTimeout() {
  const v = document.querySelector('input[name="timeout"]:checked').value;
  if (v !== "custom") return Number(v);
  const n = Number($("custom-n").value);
  if (!Number.isInteger(n) || n < 1) return NaN;
  return n * Number($("custom-unit").value);
}

async function onSend(ev) {
  ev.preventDefault();
  const username = $("send-to").value.trim();
  const text = $("send-text").value;
  const timeout = chosenTimeout();
  if (!username) return showNotice("Say who the snap is for: type their username.");
  if (/[\s/]/u.test(username)) return showNotice("A username has no spaces and no '/'.");
  if (!text) return showNotice("Type a message first.");
  if (utf8Bytes(text) > MAX_TEXT_BYTES) return showNotice(`The message is longer than ${MAX_TEXT_BYTES} bytes. Shorten it.`);
  if (!(timeout >= 1 && timeout <= MAX_TIMEOUT)) return showNotice("Pick a custom time between 1 minute and 30 days.");
  const key = newKey();
  const attempt = async () => {
    $("send-button").disabled = true;
    $("send-result").hidden = true;
    const r = await call("POST", "/chat", { token: state.token, body: { username, text, timeout },
                                            headers: { "Idempotency-Key": key } });
    $("send-button").disabled = false;
    if (r.status !== 201) return fail(r, "send", attempt);
    clearNotice();
    const id = r.body.id;
    const res = $("send-result");
    res.hidden = false;
    res.textContent = `Sent to ${username} as snap #${id}. It disappears unread after ${duration(timeout)}.`;
    state.sent.unshift({ id, to: username, at: Date.now(), preview: text.slice(0, 60), state: null });
    saveSent();
    $("send-text").value = "";
    updateCounter();
    render();
  };
  await attempt();
}

// ---- inbox ---------------------------------------------------------------

async function onRead() {
  if (!state.me) return showNotice("Log in to read your snaps.");
  const key = newKey();
  const wait = $("inbox-wait").checked;
  const path = `/chats/${encodeURIComponent(state.me.username)}${wait ? "?wait=25" : ""}`;
  const attempt = async () => {
    const st = $("inbox-state");
    st.hidden = false;
    st.textContent = wait ? "Waiting for snaps (up to 25 seconds)…" : "Reading…";
    $("read-button").disabled = true;
    const r = await call("GET", path, { token: state.token, headers: { "Idempotency-Key": key } });
    $("read-button").disabled = false;
    if (r.status !== 200 || !Array.isArray(r.body)) {
      st.hidden = true;
      return fail(r, "read", attempt);
    }
    clearNotice();
    const more = r.headers.get("X-More-Messages") === "true";
    if (r.body.length === 0) st.textContent = "No unread snaps. Nothing was destroyed.";
    else st.textContent = `${r.body.length} snap${r.body.length === 1 ? "" : "s"} read and destroyed on the server; ` +
                          "they are shown below until you leave this page." + (more ? " More are waiting: read again." : "");
    const now = Date.now();
    const list = $("inbox-list");
    for (const m of r.body.slice().reverse()) {
      const li = el("li", "message fresh");
      li.append(el("p", "text", m.text));
      const meta = el("p", "meta");
      meta.append(`Snap #${m.id} · read `, el("span", "age", ago(now)));
      meta.lastChild.dataset.at = String(now);
      li.append(meta);
      list.prepend(li);
    }
  };
  await attempt();
}

// ---- snaps one sent: receipts and unsend ----------------------------------

const STATE_TEXT = {
  unread: (s) => `Not read yet. Disappears unread at ${localTime(s.expires_at)}.`,
  read: (s) => `Read at ${localTime(s.read_at)}.`,
  expired: () => "Expired unread: it was never delivered.",
  unsent: () => "Unsent: it will never be delivered.",
};

function renderSent() {
  const list = $("sent-list");
  list.replaceChildren();
  for (const s of state.sent) {
    const li = el("li", "message sent");
    li.dataset.id = String(s.id);
    const head = el("p", "meta");
    head.append(`Snap #${s.id} to `, el("strong", "", s.to), " · sent ", el("span", "age", ago(s.at)));
    head.lastChild.dataset.at = String(s.at);
    li.append(head);
    if (s.preview) li.append(el("p", "text preview", s.preview));
    li.append(el("p", "state", s.state || "Not checked yet."));
    const row = el("div", "row");
    const check = el("button", "secondary small", "Check if read");
    check.type = "button";
    check.addEventListener("click", () => checkStatus(s));
    const unsend = el("button", "quiet small", "Unsend");
    unsend.type = "button";
    unsend.addEventListener("click", () => unsendSnap(s));
    check.setAttribute("aria-label", `Check if snap #${s.id} was read`);
    unsend.setAttribute("aria-label", `Unsend snap #${s.id}`);
    row.append(check, unsend);
    li.append(row);
    list.append(li);
  }
}

function setSentState(s, text) {
  s.state = text;
  saveSent();
  const li = document.querySelector(`#sent-list li[data-id="${s.id}"] .state`);
  if (li) li.textContent = text;
}

async function checkStatus(s) {
  const r = await call("GET", `/chat/${s.id}/status`, { token: state.token });
  if (r.status === 200 && STATE_TEXT[r.body?.state]) {
    clearNotice();
    return setSentState(s, STATE_TEXT[r.body.state](r.body));
  }
  if (routeMissing(r)) return setSentState(s, explain(r, "status"));
  fail(r, "status", () => checkStatus(s));
}

async function unsendSnap(s) {
  const r = await call("DELETE", `/chat/${s.id}`, { token: state.token });
  if (r.status === 204) {
    clearNotice();
    return setSentState(s, STATE_TEXT.unsent());
  }
  if (routeMissing(r) || r.status === 409) return setSentState(s, explain(r, "unsend"));
  fail(r, "unsend", () => unsendSnap(s));
}

// ---- admin lookup --------------------------------------------------------

async function onLookup(ev) {
  ev.preventDefault();
  const id = $("admin-id").value.trim();
  if (!/^[1-9][0-9]{0,18}$/.test(id)) return showNotice("A message id is a whole number, 1 or more.");
  const r = await call("GET", `/chat/${id}`, { token: state.token });
  const dl = $("admin-result");
  if (r.status !== 200) {
    dl.hidden = true;
    return fail(r, "lookup", () => onLookup(ev));
  }
  clearNotice();
  const m = r.body;
  dl.replaceChildren();
  const fact = (k, v) => dl.append(el("dt", "", k), el("dd", "", v));
  fact("Id", String(m.id));
  fact("To", m.username);
  fact("From", m.from === null ? "(sent without an account)" : m.from);
  fact("Text", m.text);
  fact("Expires or expired", localTime(m.expiration_date));
  dl.hidden = false;
}

// ---- start ---------------------------------------------------------------

function wire() {
  $("auth-form").addEventListener("submit", onAuth);
  $("logout").addEventListener("click", onLogout);
  $("send-form").addEventListener("submit", onSend);
  $("send-text").addEventListener("input", updateCounter);
  for (const r of document.querySelectorAll('input[name="timeout"]'))
    r.addEventListener("change", () => { $("custom-box").hidden = r.value !== "custom" || !r.checked; });
  $("read-button").addEventListener("click", onRead);
  $("admin-form").addEventListener("submit", onLookup);
  $("notice-close").addEventListener("click", clearNotice);
  $("notice-retry").addEventListener("click", () => { const f = retryAction; clearNotice(); if (f) f(); });
  setInterval(() => {
    for (const a of document.querySelectorAll(".age[data-at]")) a.textContent = ago(Number(a.dataset.at));
  }, 15000);
}

wire();
updateCounter();
await loadMe();
render();
document.body.dataset.ready = "1";
