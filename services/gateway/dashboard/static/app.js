// The operators' dashboard: plain JavaScript, no build step, nothing from other origins. Every
// read and action goes through the public API with the signed-in client's token; live changes
// come from GET /v2/events (Server-Sent Events, read with fetch so that the token and the tenant
// travel as headers; reconnects send Last-Event-ID and miss nothing still kept).
"use strict";

const FULL = "edfi_admin_api/full_access";
const READ_ONLY = "edfi_admin_api/read_only";
const IN_FLIGHT = new Set(["Pending", "InProgress", "Pending_Rename", "Pending_Delete"]);
const TERMINAL_JOB = new Set(["Completed", "Failed", "Cancelled"]);
const JOB_TYPES = ["createInstance", "renameInstance", "deleteInstance", "reconcile", "prune"];
const JOB_STATUSES = ["Pending", "Running", "Completed", "Failed", "Cancelled"];

const state = {
  config: { multiTenant: false, templates: [], oidcIssuer: null },
  token: null,
  scope: null,
  clientId: null,
  tenant: null,
  tenants: [],
  instances: new Map(), // id -> instance, as the API shows it
  jobs: new Map(), // id -> job
  lastEventId: null,
  stream: null, // AbortController of the event stream
  live: false,
  view: null, // { name, arg }
  page: {}, // what the current view loaded (lists, filters)
};

// --- small DOM helpers (text always as text: names come from users) -------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const $ = (selector) => document.querySelector(selector);
const when = (iso) => (iso ? new Date(iso).toLocaleString() : "—");
const badge = (status) => h("span", { class: `badge ${status}`, "data-status": status }, status);
const full = () => state.scope === FULL;

function notice(text, kind = "error") {
  const box = $("#notice");
  box.textContent = text;
  box.className = kind;
  box.hidden = !text;
}

// The pages, filled in by views.js: name -> { load(arg), render(arg), live() }.
const VIEWS = {};

// --- the API ------------------------------------------------------------------------------------

class Problem extends Error {
  constructor(status, body) {
    super((body && (body.detail || body.title)) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

function headers(extra) {
  const out = { Accept: "application/json", ...extra };
  if (state.token) out.Authorization = `Bearer ${state.token}`;
  if (state.config.multiTenant && state.tenant) out.tenant = state.tenant;
  return out;
}

async function api(method, path, body) {
  const init = { method, headers: headers() };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (response.status === 401 && state.token) {
    signOut("Your session has ended: sign in again.");
  }
  if (!response.ok) throw new Problem(response.status, data);
  return data;
}

// An action from a button: what the API says goes in the notice (a refusal included).
async function act(what, method, path, body) {
  try {
    const result = await api(method, path, body);
    notice(`${what}: done`, "info");
    return result;
  } catch (err) {
    notice(`${what} refused (${err.status}): ${err.message}`);
    throw err;
  }
}

// --- signing in -----------------------------------------------------------------------------------

async function token(clientId, secret, scope) {
  const form = new URLSearchParams({
    grant_type: "client_credentials",
    client_id: clientId,
    client_secret: secret,
    scope,
  });
  const response = await fetch("/connect/token", { method: "POST", body: form });
  const body = await response.json();
  if (!response.ok) throw new Problem(response.status, body);
  return body;
}

async function signIn(clientId, secret, scope) {
  let granted;
  try {
    granted = await token(clientId, secret, scope);
  } catch (err) {
    // A client registered for reads only cannot have full access: sign it in read-only.
    if (scope === FULL && err.body && err.body.error === "invalid_scope") {
      granted = await token(clientId, secret, READ_ONLY);
    } else {
      throw err;
    }
  }
  useToken(granted.access_token, granted.scope, clientId);
}

function useToken(accessToken, scope, who) {
  state.token = accessToken;
  state.scope = scope;
  state.clientId = who;
  sessionStorage.setItem("edfi-im", JSON.stringify({ token: accessToken, scope, who }));
  start();
}

function claims(jwt) {
  try {
    return JSON.parse(atob(jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
  } catch {
    return {};
  }
}

function signOut(message) {
  if (state.stream) state.stream.abort();
  state.stream = null;
  state.token = null;
  sessionStorage.removeItem("edfi-im");
  state.instances.clear();
  state.jobs.clear();
  state.lastEventId = null;
  $("#nav").hidden = true;
  $("#session").hidden = true;
  notice(message || "", message ? "error" : "info");
  renderSignIn();
}

function renderSignIn() {
  const errors = h("p", { class: "field-error", id: "sign-in-error" });
  const form = h(
    "form",
    {
      id: "sign-in",
      onsubmit: async (event) => {
        event.preventDefault();
        const data = new FormData(form);
        errors.textContent = "";
        try {
          await signIn(data.get("clientId"), data.get("clientSecret"), data.get("scope"));
        } catch (err) {
          errors.textContent = err.body && err.body.detail ? err.body.detail : err.message;
        }
      },
    },
    h("label", {}, "Client id", h("input", { name: "clientId", required: true, autocomplete: "username" })),
    h(
      "label",
      {},
      "Client secret",
      h("input", { name: "clientSecret", type: "password", required: true, autocomplete: "current-password" }),
    ),
    h(
      "label",
      {},
      "Access",
      h(
        "select",
        { name: "scope" },
        h("option", { value: FULL }, "Full access"),
        h("option", { value: READ_ONLY }, "Read only"),
      ),
    ),
    h("button", { class: "primary", type: "submit" }, "Sign in"),
    errors,
  );
  const cards = [h("div", { class: "card" }, h("h2", {}, "Sign in with an API client"), form)];
  if (state.config.oidcIssuer && state.config.oidcClientId) {
    cards.unshift(
      h(
        "div",
        { class: "card" },
        h("h2", {}, "Sign in with your identity provider"),
        h("button", { id: "oidc-sign-in", class: "primary", type: "button", onclick: () => oidcStart().catch((err) => notice(`Sign-in failed: ${err.message}`)) }, `Sign in at ${state.config.oidcIssuer}`),
      ),
    );
  } else if (state.config.oidcIssuer) {
    const tokenForm = h(
      "form",
      {
        onsubmit: (event) => {
          event.preventDefault();
          const value = new FormData(tokenForm).get("token").trim();
          const scope = String(claims(value).scope || claims(value).scp || "");
          useToken(value, scope.includes(FULL) ? FULL : READ_ONLY, claims(value).sub || "OIDC");
        },
      },
      h("label", {}, `Access token from ${state.config.oidcIssuer}`, h("input", { name: "token", required: true })),
      h("button", { type: "submit" }, "Use this token"),
    );
    cards.push(h("div", { class: "card" }, h("h2", {}, "Or with your identity provider"), tokenForm));
  }
  $("#view").replaceChildren(...cards);
}

// --- OpenID Connect: authorization code with PKCE, at the configured issuer -------------------

const b64url = (bytes) => btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const redirectUri = () => `${location.origin}/dashboard`;

async function oidcStart() {
  const issuer = state.config.oidcIssuer.replace(/\/$/, "");
  const discovery = await (await fetch(`${issuer}/.well-known/openid-configuration`)).json();
  const verifier = b64url(crypto.getRandomValues(new Uint8Array(32)));
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  const nonce = b64url(crypto.getRandomValues(new Uint8Array(16)));
  sessionStorage.setItem("edfi-im-oidc", JSON.stringify({ verifier, state: nonce, tokenEndpoint: discovery.token_endpoint }));
  const query = new URLSearchParams({
    response_type: "code",
    client_id: state.config.oidcClientId,
    redirect_uri: redirectUri(),
    scope: state.config.oidcScope,
    state: nonce,
    code_challenge: b64url(new Uint8Array(digest)),
    code_challenge_method: "S256",
  });
  location.assign(`${discovery.authorization_endpoint}?${query}`);
}

// Back from the issuer (`?code=…&state=…`): the code for a token, with the PKCE verifier.
async function oidcFinish() {
  const params = new URLSearchParams(location.search);
  if (!params.has("code") && !params.has("error")) return false;
  const saved = JSON.parse(sessionStorage.getItem("edfi-im-oidc") || "null");
  sessionStorage.removeItem("edfi-im-oidc");
  history.replaceState(null, "", `/dashboard${location.hash}`);
  if (params.has("error")) {
    notice(`Sign-in refused by the identity provider: ${params.get("error_description") || params.get("error")}`);
    return false;
  }
  if (!saved || params.get("state") !== saved.state) {
    notice("Sign-in refused: the identity provider's answer does not match a sign-in started here.");
    return false;
  }
  const response = await fetch(saved.tokenEndpoint, {
    method: "POST",
    body: new URLSearchParams({
      grant_type: "authorization_code",
      code: params.get("code"),
      redirect_uri: redirectUri(),
      client_id: state.config.oidcClientId,
      code_verifier: saved.verifier,
    }),
  });
  const body = await response.json();
  if (!response.ok) {
    notice(`Sign-in failed: ${body.error_description || body.error || response.status}`);
    return false;
  }
  const granted = claims(body.access_token);
  const scope = String(body.scope || granted.scope || granted.scp || "");
  useToken(body.access_token, scope.includes(FULL) ? FULL : READ_ONLY, granted.preferred_username || granted.sub || "OIDC");
  return true;
}

// --- the event stream ---------------------------------------------------------------------------

function setLive(on) {
  state.live = on;
  const el = $("#live");
  el.className = `live ${on ? "on" : "off"}`;
  el.textContent = on ? "live" : "reconnecting";
}

async function follow() {
  if (state.stream) state.stream.abort();
  const controller = new AbortController();
  state.stream = controller;
  let retry = 3000;
  while (!controller.signal.aborted && state.token) {
    try {
      const extra = { Accept: "text/event-stream" };
      if (state.lastEventId !== null) extra["Last-Event-ID"] = String(state.lastEventId);
      const response = await fetch("/v2/events", { headers: headers(extra), signal: controller.signal });
      if (response.status === 401) return signOut("Your session has ended: sign in again.");
      if (!response.ok) throw new Error(`events: HTTP ${response.status}`);
      setLive(true);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const r = onBlock(block);
          if (r) retry = r;
        }
      }
    } catch (err) {
      if (controller.signal.aborted) return;
    }
    setLive(false);
    await new Promise((resolve) => setTimeout(resolve, retry));
  }
}

function onBlock(block) {
  let event = "message";
  let id = null;
  let retry = null;
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue; // a heartbeat
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
    else if (field === "id") id = value;
    else if (field === "retry") retry = Number(value);
  }
  if (id !== null) state.lastEventId = id;
  if (!data.length) return retry;
  const body = JSON.parse(data.join("\n"));
  if (event === "job") {
    state.jobs.set(body.id, body);
    onJob(body);
  } else if (event === "instance") {
    state.instances.set(body.id, body);
  } else if (event === "reset") {
    reload(); // what happened meanwhile is no longer kept: read it all again
    return retry;
  }
  scheduleRender();
  return retry;
}

let renderPending = false;
function scheduleRender() {
  if (renderPending) return;
  renderPending = true;
  requestAnimationFrame(() => {
    renderPending = false;
    renderLive();
  });
}

// A live view re-draws only its live parts, so a form being typed in is left alone.
function renderLive() {
  const view = state.view && VIEWS[state.view.name];
  if (view && view.live) view.live();
}

function onJob(job) {
  const page = state.page;
  if (state.view && state.view.name === "jobs" && page.jobs && !page.jobs.includes(job.id)) {
    if (matches(job, page.filters)) page.jobs.unshift(job.id);
  }
  if (state.view && state.view.name === "job" && state.view.arg === job.id && page.steps) {
    page.steps.push({ at: new Date().toISOString(), ...pick(job) });
  }
}

function pick(job) {
  const { status, progressMessage, progressPercent, attempts, error, worker } = job;
  return { status, progressMessage, progressPercent, attempts, error, worker };
}

function matches(job, filters) {
  return (
    (!filters.status || job.status === filters.status) &&
    (!filters.type || job.type === filters.type) &&
    (!filters.instanceId || String(job.instanceId) === String(filters.instanceId))
  );
}

// --- routing --------------------------------------------------------------------------------------

function route() {
  const [name, arg] = location.hash.replace(/^#\/?/, "").split("/");
  if (name === "jobs" && arg) return { name: "job", arg };
  if (name === "schedules" && arg) return { name: "schedule", arg };
  return { name: VIEWS[name] ? name : "instances", arg: null };
}

async function show(view, keepNotice) {
  state.view = view;
  const keepFilters = state.page.filters && view.name === "jobs" ? state.page.filters : undefined;
  state.page = keepFilters ? { filters: keepFilters } : {};
  if (!keepNotice) notice("");
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("current", link.dataset.view === view.name || `${link.dataset.view}` === `${view.name}s`);
  }
  try {
    await VIEWS[view.name].load(view.arg);
    if (state.view !== view) return;
    VIEWS[view.name].render(view.arg);
  } catch (err) {
    if (state.token) $("#view").replaceChildren(h("p", { class: "field-error" }, `Could not load this page: ${err.message}`));
  }
}

function reload() {
  if (state.view) show(state.view, true);
}

async function start() {
  $("#nav").hidden = false;
  $("#session").hidden = false;
  $("#who").textContent = `${state.clientId}${state.scope === READ_ONLY ? " (read only)" : ""}`;
  document.body.classList.toggle("read-only", !full());
  if (state.config.multiTenant) {
    try {
      state.tenants = (await api("GET", "/adminconsole/tenants")).map((t) => t.document.name);
    } catch {
      state.tenants = [];
    }
    const saved = sessionStorage.getItem("edfi-im-tenant");
    state.tenant = state.tenants.includes(saved) ? saved : state.tenants[0] || null;
    const picker = $("#tenant");
    picker.replaceChildren(...state.tenants.map((t) => h("option", { value: t, selected: t === state.tenant }, t)));
    $("#tenant-picker").hidden = false;
  }
  state.lastEventId = null;
  follow();
  show(route());
}

window.addEventListener("hashchange", () => state.token && show(route()));

document.addEventListener("DOMContentLoaded", async () => {
  state.config = await (await fetch("/dashboard/config.json")).json();
  $("#sign-out").addEventListener("click", () => signOut());
  $("#tenant").addEventListener("change", (event) => {
    state.tenant = event.target.value;
    sessionStorage.setItem("edfi-im-tenant", state.tenant);
    state.instances.clear();
    state.jobs.clear();
    state.lastEventId = null; // another tenant's stream
    follow();
    show(route());
  });
  if (await oidcFinish()) return;
  const saved = JSON.parse(sessionStorage.getItem("edfi-im") || "null");
  if (saved && saved.token && (claims(saved.token).exp || 0) * 1000 > Date.now()) {
    state.token = saved.token;
    state.scope = saved.scope;
    state.clientId = saved.who;
    start();
  } else {
    renderSignIn();
  }
});

// For scripts and tests: the page's own API helper, with its token and tenant.
window.dashboard = { api, act, state };
