// The dashboard's pages (app.js holds the state, the API, signing in, the event stream and the
// routing): each view loads what it shows through the API, renders it, and re-draws its live
// parts when changes arrive.
"use strict";

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
      const path = (verb) => `/v2/deadLetters/${encodeURIComponent(letter.messageId)}/${verb}?queue=${encodeURIComponent(letter.queue)}`;
      if (full() && !letter.unreadable) {
        actions.append(
          h(
            "button",
            {
              type: "button",
              class: "requeue",
              onclick: async () => {
                if (!confirm(`Requeue message ${letter.messageId}? Fix its cause first.`)) return;
                try {
                  await act(`Requeue of ${letter.messageId}`, "POST", path("requeue"));
                } finally {
                  show(state.view, true);
                }
              },
            },
            "Requeue",
          ),
        );
      }
      if (full()) {
        actions.append(
          h(
            "button",
            {
              type: "button",
              class: "discard",
              onclick: async () => {
                if (!confirm(`Discard message ${letter.messageId} for good? It will not be sent again.`)) return;
                try {
                  await act(`Discard of ${letter.messageId}`, "POST", path("discard"));
                } finally {
                  show(state.view, true);
                }
              },
            },
            "Discard",
          ),
        );
      }
      return h(
        "tr",
        { dataset: { id: letter.messageId || "" } },
        h("td", {}, letter.queue),
        h("td", {}, letter.messageId || "—"),
        h("td", {}, letter.type || "—"),
        h("td", {}, letter.reason, letter.unreadable ? h("div", { class: "unreadable" }, `Unreadable: ${letter.unreadable}; it can only be discarded.`) : ""),
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
