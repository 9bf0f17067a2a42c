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

// --- shared bits of views -------------------------------------------------------------------------

function progressCell(job) {
  if (!job) return h("td", { class: "progress" }, h("span", { class: "muted" }, "…"));
  const percent = job.progressPercent ?? 0;
  return h(
    "td",
    { class: "progress", dataset: { job: job.id } },
    h("progress", { max: 100, value: percent, "data-percent": percent, title: `${percent}%` }),
    h("span", { class: "progress-text" }, `${percent}% · ${job.progressMessage || job.status}`),
  );
}

function fieldErrors(form, err) {
  for (const el of form.querySelectorAll(".field-error")) el.textContent = "";
  const errors = (err.body && err.body.errors) || {};
  let shown = false;
  for (const [field, messages] of Object.entries(errors)) {
    const slot = form.querySelector(`.field-error[data-field="${field}"]`);
    if (slot) {
      slot.textContent = messages.join("; ");
      shown = true;
    }
  }
  const general = form.querySelector(".field-error[data-field='']");
  if (general && !shown) general.textContent = err.message;
}

async function ensureJob(jobId) {
  if (!jobId || state.jobs.has(jobId)) return;
  try {
    state.jobs.set(jobId, await api("GET", `/v2/jobs/${jobId}`));
    scheduleRender();
  } catch {
    /* a job pruned since: nothing to show */
  }
}

// --- views ----------------------------------------------------------------------------------------

const VIEWS = {};

VIEWS.instances = {
  async load() {
    const rows = await api("GET", "/v2/dbInstances?limit=500");
    for (const row of rows) state.instances.set(row.id, row);
    state.page.instanceIds = rows.map((r) => r.id);
    for (const row of rows) if (IN_FLIGHT.has(row.status)) ensureJob(row.jobId);
  },
  render() {
    const parts = [h("h2", {}, "Instances")];
    if (full()) parts.push(createForm());
    parts.push(
      h(
        "table",
        { id: "instances" },
        h("thead", {}, h("tr", {}, ...["Id", "Name", "Status", "Database", "Template", "Progress", ""].map((t) => h("th", {}, t)))),
        h("tbody", {}),
      ),
    );
    $("#view").replaceChildren(...parts);
    this.live();
  },
  live() {
    const body = $("#instances tbody");
    if (!body) return;
    const ids = [...new Set([...state.instances.keys()])].sort((a, b) => b - a);
    const rows = ids.map((id) => instanceRow(state.instances.get(id)));
    const editing = body.querySelector("input");
    if (editing) return; // a rename being typed: redraw once it is sent or cancelled
    body.replaceChildren(...rows);
  },
};

function instanceRow(instance) {
  const inFlight = IN_FLIGHT.has(instance.status);
  if (inFlight) ensureJob(instance.jobId);
  const job = instance.jobId ? state.jobs.get(instance.jobId) : null;
  const actions = h("div", { class: "actions" });
  if (full() && !inFlight && instance.status !== "Deleted") {
    if (["Completed", "Rename_Failed"].includes(instance.status)) {
      actions.append(h("button", { type: "button", class: "rename", onclick: () => renameRow(instance, actions) }, "Rename"));
    }
    actions.append(
      h(
        "button",
        {
          type: "button",
          class: "danger delete",
          onclick: async () => {
            if (!confirm(`Delete instance ${instance.name} and drop its database?`)) return;
            const row = await act(`Delete ${instance.name}`, "DELETE", `/v2/dbInstances/${instance.id}`);
            state.instances.set(row.id, row);
            ensureJob(row.jobId);
            scheduleRender();
          },
        },
        "Delete",
      ),
    );
  }
  return h(
    "tr",
    { dataset: { id: instance.id, name: instance.name } },
    h("td", {}, instance.id),
    h("td", { class: "name" }, instance.name, instance.pendingName ? h("span", { class: "muted" }, ` → ${instance.pendingName}`) : null),
    h("td", { class: "status" }, badge(instance.status), instance.error ? h("span", { class: "progress-text" }, instance.error) : null),
    h("td", {}, instance.databaseName || "—"),
    h("td", {}, instance.databaseTemplate),
    job && (inFlight || state.page.watching === instance.id) ? progressCell(job) : h("td", { class: "progress" }),
    h("td", {}, actions),
  );
}

function renameRow(instance, cell) {
  const error = h("span", { class: "field-error", "data-field": "name" });
  const general = h("span", { class: "field-error", "data-field": "" });
  const form = h(
    "form",
    {
      class: "inline rename-form",
      onsubmit: async (event) => {
        event.preventDefault();
        try {
          const row = await api("PUT", `/v2/dbInstances/${instance.id}`, { name: new FormData(form).get("name") });
          state.instances.set(row.id, row);
          ensureJob(row.jobId);
          form.remove();
          notice(`Rename of ${instance.name}: accepted`, "info");
          scheduleRender();
        } catch (err) {
          fieldErrors(form, err);
        }
      },
    },
    h("input", { name: "name", value: instance.name, "aria-label": "New name" }),
    h("button", { type: "submit", class: "primary" }, "Save"),
    h("button", { type: "button", onclick: () => { form.remove(); scheduleRender(); } }, "Cancel"),
    error,
    general,
  );
  cell.replaceChildren(form);
}

function createForm() {
  const list = h("datalist", { id: "templates" }, ...state.config.templates.map((t) => h("option", { value: t })));
  const form = h(
    "form",
    {
      id: "create",
      class: "inline",
      onsubmit: async (event) => {
        event.preventDefault();
        const data = new FormData(form);
        try {
          const row = await api("POST", "/v2/dbInstances", {
            name: data.get("name"),
            databaseTemplate: data.get("databaseTemplate"),
          });
          fieldErrors(form, { body: {} });
          state.instances.set(row.id, row);
          state.page.watching = row.id;
          ensureJob(row.jobId);
          notice(`Create of ${row.name}: accepted (job ${row.jobId})`, "info");
          form.reset();
          scheduleRender();
        } catch (err) {
          fieldErrors(form, err);
        }
      },
    },
    h("label", {}, "Name", h("input", { name: "name", required: true }), h("span", { class: "field-error", "data-field": "name" })),
    h(
      "label",
      {},
      "Template",
      h("input", { name: "databaseTemplate", list: "templates", value: state.config.templates[0] || "" }),
      h("span", { class: "field-error", "data-field": "databaseTemplate" }),
    ),
    list,
    h("button", { class: "primary", type: "submit" }, "Create instance"),
    h("span", { class: "field-error", "data-field": "" }),
  );
  return form;
}

VIEWS.jobs = {
  async load() {
    const filters = state.page.filters || {};
    state.page.filters = filters;
    const query = new URLSearchParams({ limit: "100" });
    for (const [key, value] of Object.entries(filters)) if (value) query.set(key, value);
    const rows = await api("GET", `/v2/jobs?${query}`);
    for (const row of rows) state.jobs.set(row.id, row);
    state.page.jobs = rows.map((r) => r.id);
  },
  render() {
    const filters = state.page.filters;
    const select = (name, values) =>
      h(
        "select",
        { name, onchange: (e) => { filters[name] = e.target.value; show(state.view); } },
        h("option", { value: "" }, "any"),
        ...values.map((v) => h("option", { value: v, selected: filters[name] === v }, v)),
      );
    const bar = h(
      "div",
      { class: "filters" },
      h("label", {}, "Status", select("status", JOB_STATUSES)),
      h("label", {}, "Type", select("type", JOB_TYPES)),
      h(
        "label",
        {},
        "Instance id",
        h("input", {
          name: "instanceId",
          value: filters.instanceId || "",
          size: 6,
          onchange: (e) => { filters.instanceId = e.target.value.trim(); show(state.view); },
        }),
      ),
    );
    const head = ["Created", "Type", "Instance", "Status", "Progress", "Attempts", "Worker"];
    $("#view").replaceChildren(
      h("h2", {}, "Jobs"),
      bar,
      h("table", { id: "jobs" }, h("thead", {}, h("tr", {}, ...head.map((t) => h("th", {}, t)))), h("tbody", {})),
    );
    this.live();
  },
  live() {
    const body = $("#jobs tbody");
    if (!body) return;
    body.replaceChildren(
      ...state.page.jobs.map((id) => {
        const job = state.jobs.get(id);
        return h(
          "tr",
          { class: "link", dataset: { id }, onclick: () => (location.hash = `#/jobs/${id}`) },
          h("td", {}, when(job.createdAt)),
          h("td", {}, job.type),
          h("td", {}, job.instanceId ?? "—"),
          h("td", {}, badge(job.status)),
          progressCell(job),
          h("td", {}, job.attempts),
          h("td", {}, job.worker || "—"),
        );
      }),
    );
  },
};

VIEWS.job = {
  async load(id) {
    const [job, steps] = await Promise.all([api("GET", `/v2/jobs/${id}`), api("GET", `/v2/jobs/${id}/history`)]);
    state.jobs.set(id, job);
    state.page.steps = steps;
  },
  render(id) {
    $("#view").replaceChildren(h("p", {}, h("a", { href: "#/jobs" }, "← Jobs")), h("div", { id: "job" }));
    this.live(id);
  },
  live() {
    const id = state.view.arg;
    const job = state.jobs.get(id);
    const box = $("#job");
    if (!job || !box) return;
    const actions = [];
    if (full() && job.status === "Pending") {
      actions.push(
        h("button", {
          type: "button",
          class: "danger",
          onclick: async () => {
            const row = await act("Cancel the job", "DELETE", `/v2/jobs/${id}`);
            state.jobs.set(id, row);
            scheduleRender();
          },
        }, "Cancel job"),
      );
    }
    const facts = [
      ["Status", badge(job.status)],
      ["Progress", progressCell(job).childNodes[0]],
      ["Step", job.progressMessage || "—"],
      ["Type", job.type],
      ["Instance", job.instanceId ?? "—"],
      ["Attempts", job.attempts],
      ["Recoveries", job.recoveries],
      ["Worker", job.worker || "—"],
      ["Error", job.error || "—"],
      ["Created", when(job.createdAt)],
      ["Started", when(job.startedAt)],
      ["Finished", when(job.finishedAt)],
      ["Heartbeat", when(job.heartbeatAt)],
      ["Schedule", job.scheduleId || "—"],
      ["Correlation id", job.correlationId || "—"],
    ];
    const steps = h(
      "table",
      { id: "steps" },
      h("thead", {}, h("tr", {}, ...["Time", "Status", "%", "Step", "Attempts", "Error"].map((t) => h("th", {}, t)))),
      h(
        "tbody",
        {},
        ...state.page.steps.map((s) =>
          h("tr", {}, h("td", {}, when(s.at)), h("td", {}, s.status), h("td", {}, s.progressPercent ?? ""), h("td", {}, s.progressMessage || ""), h("td", {}, s.attempts), h("td", {}, s.error || "")),
        ),
      ),
    );
    box.replaceChildren(
      ...[
      h("h2", {}, `Job ${id}`),
      h("div", { class: "actions" }, ...actions),
      h("dl", {}, ...facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
      h("h2", {}, "Steps"),
      steps,
      h("h2", {}, "Parameters"),
      h("pre", {}, JSON.stringify(job.parameters, null, 2)),
      job.result ? h("h2", {}, "Result") : null,
      job.result ? h("pre", {}, JSON.stringify(job.result, null, 2)) : null,
      ].filter(Boolean),
    );
  },
};

function triggerText(trigger) {
  if (trigger.type === "cron") return `cron ${trigger.cron} (${trigger.timeZone || "UTC"})`;
  if (trigger.type === "interval") return `every ${trigger.intervalSeconds} s`;
  return `once at ${when(trigger.runAt)}`;
}

VIEWS.schedules = {
  async load() {
    state.page.schedules = await api("GET", "/v2/schedules?limit=500");
  },
  render() {
    const head = ["Name", "Job", "Trigger", "State", "Next fire", "Previous fire", "Fired", ""];
    $("#view").replaceChildren(
      h("h2", {}, "Schedules"),
      h(
        "table",
        { id: "schedules" },
        h("thead", {}, h("tr", {}, ...head.map((t) => h("th", {}, t)))),
        h("tbody", {}, ...state.page.schedules.map(scheduleRow)),
      ),
    );
  },
};

function scheduleRow(schedule) {
  const actions = h("div", { class: "actions" });
  const run = (what, method, path) => async (event) => {
    event.stopPropagation();
    if (method === "DELETE" && !confirm(`Delete the schedule ${schedule.name}?`)) return;
    await act(`${what} ${schedule.name}`, method, path);
    show(state.view);
  };
  if (full()) {
    if (schedule.state === "Paused" || schedule.state === "Error") {
      actions.append(h("button", { type: "button", class: "resume", onclick: run("Resume", "POST", `/v2/schedules/${schedule.id}/resume`) }, "Resume"));
    } else if (schedule.state === "Normal") {
      actions.append(h("button", { type: "button", class: "pause", onclick: run("Pause", "POST", `/v2/schedules/${schedule.id}/pause`) }, "Pause"));
    }
    actions.append(h("button", { type: "button", class: "danger delete", onclick: run("Delete", "DELETE", `/v2/schedules/${schedule.id}`) }, "Delete"));
  }
  return h(
    "tr",
    { class: "link", dataset: { id: schedule.id, name: schedule.name }, onclick: () => (location.hash = `#/schedules/${schedule.id}`) },
    h("td", {}, schedule.name),
    h("td", {}, schedule.job.type),
    h("td", {}, triggerText(schedule.trigger)),
    h("td", { class: "state" }, badge(schedule.state), schedule.error ? h("span", { class: "progress-text" }, schedule.error) : null),
    h("td", {}, when(schedule.nextFireTime)),
    h("td", {}, when(schedule.previousFireTime)),
    h("td", {}, schedule.fireCount),
    h("td", {}, actions),
  );
}

VIEWS.schedule = {
  async load(id) {
    const [schedule, runs] = await Promise.all([api("GET", `/v2/schedules/${id}`), api("GET", `/v2/schedules/${id}/runs?limit=100`)]);
    state.page.schedule = schedule;
    state.page.runs = runs;
  },
  render() {
    const { schedule, runs } = state.page;
    const head = ["Occurrence", "Fired at", "Outcome", "Job", "Detail"];
    $("#view").replaceChildren(
      h("p", {}, h("a", { href: "#/schedules" }, "← Schedules")),
      h("h2", {}, schedule.name),
      h("table", {}, h("tbody", {}, scheduleRow(schedule))),
      h("h2", {}, "Run history"),
      h(
        "table",
        { id: "runs" },
        h("thead", {}, h("tr", {}, ...head.map((t) => h("th", {}, t)))),
        h(
          "tbody",
          {},
          ...runs.map((r) =>
            h(
              "tr",
              {},
              h("td", {}, when(r.scheduledFireTime)),
              h("td", {}, when(r.actualFireTime)),
              h("td", {}, badge(r.outcome)),
              h("td", {}, r.jobId ? h("a", { href: `#/jobs/${r.jobId}` }, r.jobId.slice(0, 8)) : "—"),
              h("td", {}, r.detail || ""),
            ),
          ),
        ),
      ),
    );
  },
};

VIEWS["dead-letters"] = {
  async load() {
    state.page.letters = await api("GET", "/v2/deadLetters");
  },
  render() {
    const head = ["Queue", "Message", "Type", "Reason", "Dead-lettered", "Deliveries", "Job", "Instance", ""];
    const rows = state.page.letters.map((letter) => {
      const actions = h("div", { class: "actions" });
      if (full()) {
        actions.append(
          h(
            "button",
            {
              type: "button",
              class: "requeue",
              onclick: async () => {
                if (!confirm(`Requeue message ${letter.messageId}? Fix its cause first.`)) return;
                try {
                  await act(`Requeue of ${letter.messageId}`, "POST", `/v2/deadLetters/${encodeURIComponent(letter.messageId)}/requeue?queue=${encodeURIComponent(letter.queue)}`);
                } finally {
                  show(state.view, true);
                }
              },
            },
            "Requeue",
          ),
        );
      }
      return h(
        "tr",
        { dataset: { id: letter.messageId || "" } },
        h("td", {}, letter.queue),
        h("td", {}, letter.messageId || "—"),
        h("td", {}, letter.type || "—"),
        h("td", {}, letter.reason),
        h("td", {}, when(letter.deadLetteredAt)),
        h("td", {}, letter.deliveryCount ?? "—"),
        h("td", {}, letter.jobId ? h("a", { href: `#/jobs/${letter.jobId}` }, letter.jobId.slice(0, 8)) : "—"),
        h("td", {}, letter.instanceId ?? "—"),
        h("td", {}, actions),
      );
    });
    $("#view").replaceChildren(
      h("h2", {}, "Dead letters"),
      rows.length
        ? h("table", { id: "dead-letters" }, h("thead", {}, h("tr", {}, ...head.map((t) => h("th", {}, t)))), h("tbody", {}, ...rows))
        : h("p", { id: "dead-letters" }, "No dead-lettered messages."),
    );
  },
};

VIEWS.reconcile = {
  async load() {
    const [job] = await api("GET", "/v2/jobs?type=reconcile&status=Completed&limit=1");
    state.page.report = job || null;
  },
  render() {
    const job = state.page.report;
    if (!job) {
      $("#view").replaceChildren(h("h2", {}, "Reconcile"), h("p", {}, "No reconcile has run yet (schedule one: README, Schedules)."));
      return;
    }
    const result = job.result || {};
    const findings = result.findings || [];
    $("#view").replaceChildren(
      h("h2", {}, "Latest reconcile"),
      h("p", { id: "reconcile-summary" }, `${when(job.finishedAt)}: ${result.drift ?? 0} difference(s), ${result.repaired ?? 0} repaired. `, h("a", { href: `#/jobs/${job.id}` }, "the job")),
      findings.length
        ? h(
            "table",
            { id: "findings" },
            h("thead", {}, h("tr", {}, ...["Kind", "Detail", "Repaired"].map((t) => h("th", {}, t)))),
            h("tbody", {}, ...findings.map((f) => h("tr", {}, h("td", {}, f.kind), h("td", {}, f.detail), h("td", {}, f.repaired ? "yes" : "no")))),
          )
        : h("p", {}, "No drift: the records follow the database server."),
    );
  },
};

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
