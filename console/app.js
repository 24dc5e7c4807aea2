// The segment console: sign in with a key, build a filter (text or rows), see the exact count,
// charts and sample users, save segments, follow their events, export. Every value that comes
// from Clerk or metadata is put on the page as text (textContent), never as markup.

import { Api, ApiError, filterSpec } from "./api.js";
import { barChart, columnChart, sparkline } from "./charts.js";
import { OPERATORS, modelOf, modelText, operatorsFor, typedText, valueText } from "./filter.js";

const $ = (id) => document.getElementById(id);
const numbers = new Intl.NumberFormat();
const KEY = "clerk-index-key";

function element(tag, properties = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(properties)) {
    if (name === "text") node.textContent = value;
    else if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

function debounce(fn, ms) {
  let timer;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

function ago(ms) {
  const seconds = Math.max(0, Math.round((Date.now() - Number(ms)) / 1000));
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  return `${Math.round(seconds / 3600)} h ago`;
}

function freshnessText(freshness) {
  if (!freshness) return "";
  const parts = [`${numbers.format(Number(freshness.userCount || 0))} users indexed`, `generation ${freshness.generation || 0}`];
  if (freshness.newestUpdatedAtMs) parts.push(`newest change ${ago(freshness.newestUpdatedAtMs)}`);
  return `as of now: ${parts.join(" · ")}`;
}

const state = {
  api: null,
  fields: [], // { path, type } readable by the key
  canSegments: true,
  lastCount: null,
  sequence: 0, // drops answers to older edits
  page: { tokens: [""], index: 0, sort: null },
  values: new Map(), // path -> top values, for suggestions
  watch: null,
  segment: null,
};

// ---- sign in -------------------------------------------------------------------------------

async function signIn(key) {
  const api = new Api(key);
  const described = await api.call("UserIndex", "DescribeFields", {});
  state.api = api;
  sessionStorage.setItem(KEY, key);
  state.fields = [
    ...(described.coreFields || []).map((f) => ({ path: f.path, type: f.kind === "integer" ? "integer" : f.kind })),
    ...(described.fields || []).map((f) => ({ path: f.path, type: f.types?.[0]?.type || "string" })),
  ];
  const list = $("paths");
  list.replaceChildren(...state.fields.map((f) => element("option", { value: f.path })));
  // What the key may do decides what the page offers: any key lists segments, the segments
  // scope changes them.
  const caller = await api.call("UserIndex", "DescribeCaller", {});
  state.scopes = new Set(caller.scopes || []);
  state.canSegments = true;
  state.canManage = state.scopes.has("segments");
  $("signed-in-as").textContent = `${caller.keyName} (${[...state.scopes].join(", ") || "no scopes"})`;
  $("tab-segments").hidden = !state.canSegments;
  $("save-card").hidden = !state.canManage;
  for (const id of ["segment-save", "segment-delete"]) $(id).hidden = !state.canManage;
  const firstMetadata = state.fields.find((f) => f.path.startsWith("public.") && f.type === "string");
  $("chart-path").value = firstMetadata ? firstMetadata.path : "email_domain";
  $("sign-in-view").hidden = true;
  $("tabs").hidden = false;
  $("sign-out").hidden = false;
  show("build");
  renderBuilder({ groups: [{ rows: [] }] });
  refresh();
}

$("sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("sign-in-error").textContent = "";
  try {
    await signIn($("api-key").value.trim());
  } catch (error) {
    $("sign-in-error").textContent = error.code === "unauthenticated" ? "That key was not accepted." : error.message;
  }
});

$("sign-out").addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  location.reload();
});

function show(view) {
  $("build-view").hidden = view !== "build";
  $("segments-view").hidden = view !== "segments";
  $("tab-build").setAttribute("aria-pressed", String(view === "build"));
  $("tab-segments").setAttribute("aria-pressed", String(view === "segments"));
  if (view === "segments") loadSegments();
  else stopWatch();
}
$("tab-build").addEventListener("click", () => show("build"));
$("tab-segments").addEventListener("click", () => show("segments"));

// ---- the filter: text, errors, warnings, builder --------------------------------------------

const text = $("filter-text");

function showError(error, source) {
  const box = $("filter-error");
  if (!error) {
    box.hidden = true;
    return;
  }
  box.hidden = false;
  $("filter-error-message").textContent = error.message;
  const marked = $("filter-error-marked");
  const position = error.position;
  if (position === null || position === undefined) {
    marked.replaceChildren(source);
  } else {
    const at = source.slice(position, position + 1) || " ";
    marked.replaceChildren(source.slice(0, position), element("mark", { text: at, "data-position": position }), source.slice(position + 1));
  }
}

async function refresh({ fromBuilder = false } = {}) {
  if (!state.api) return;
  const sequence = ++state.sequence;
  const source = text.value;
  const filter = filterSpec(source);
  try {
    const [validated, counted] = await Promise.all([
      filter ? state.api.call("UserIndex", "ValidateFilter", { filter }) : Promise.resolve(null),
      state.api.call("UserIndex", "CountUsers", { filter }),
    ]);
    if (sequence !== state.sequence) return;
    showError(null);
    const count = Number(counted.count);
    $("count").textContent = numbers.format(count);
    $("count").dataset.count = String(count);
    const delta = state.lastCount === null ? 0 : count - state.lastCount;
    $("count-delta").textContent = delta ? `(${delta > 0 ? "+" : "−"}${numbers.format(Math.abs(delta))})` : "";
    state.lastCount = count;
    $("count-freshness").textContent = freshnessText(counted.freshness);
    $("freshness").textContent = `${numbers.format(Number(counted.freshness?.userCount || 0))} users indexed`;
    $("filter-warnings").replaceChildren(...(validated?.warnings || []).map((w) => element("li", { text: w.message })));
    if (!fromBuilder) {
      const model = modelOf(validated?.tree);
      $("builder-note").hidden = model !== null;
      if (model) renderBuilder(model);
    }
    state.page = { tokens: [""], index: 0, sort: state.page.sort };
    loadChart();
    loadUsers();
  } catch (error) {
    if (sequence !== state.sequence) return;
    if (error instanceof ApiError && error.code === "invalid_argument") showError(error, source);
    else showError(error, source);
  }
}
const refreshSoon = debounce(refresh, 300);
text.addEventListener("input", () => {
  refreshSoon();
  suggest();
});

// The builder: groups ORed, rows ANDed, NOT per row and per group. Keyboard: Enter in a row's
// values adds a row below it, Enter in a field moves to its values, Esc drops an empty row or
// undoes the values being typed.
let model = { groups: [{ rows: [] }] };
const emptyRow = () => ({ path: "", op: "OPERATOR_EQ", values: [], not: false });

function focusRow(g, i) {
  document.querySelectorAll(`[data-group="${g}"] .row .path`)[i]?.focus();
}

function typeOf(path) {
  return state.fields.find((f) => f.path === path)?.type || "string";
}

function builderChanged() {
  text.value = modelText(model);
  $("builder-note").hidden = true;
  refreshSoon({ fromBuilder: true });
}

function rowEditor(row, group, index, g) {
  const id = `row-${Math.random().toString(36).slice(2, 8)}`;
  const path = element("input", { class: "path", list: "paths", value: row.path, "aria-label": "Field", id: `${id}-path`, spellcheck: "false" });
  const op = element("select", { "aria-label": "Operator" });
  const fillOperators = () => {
    const offered = operatorsFor(typeOf(path.value));
    if (!offered.includes(row.op)) offered.push(row.op);
    op.replaceChildren(...offered.map((name) => element("option", { value: name, text: OPERATORS[name].label })));
    op.value = row.op;
  };
  fillOperators();
  const values = element("input", { class: "values", value: row.values.join(", "), "aria-label": "Values (comma-separated for several)", spellcheck: "false" });
  const valueList = element("datalist", { id: `${id}-values` });
  values.setAttribute("list", valueList.id);
  const negate = element("input", { type: "checkbox", id: `${id}-not` });
  negate.checked = row.not;
  const update = () => {
    row.path = path.value.trim();
    row.op = op.value;
    const count = OPERATORS[row.op].values;
    values.hidden = count === 0;
    row.values = count === 1 ? [values.value] : values.value.split(",").map((v) => v.trim()).filter(Boolean);
    row.not = negate.checked;
    builderChanged();
  };
  values.hidden = OPERATORS[row.op].values === 0;
  values.placeholder = row.op === "LAST_DAYS" ? "days, e.g. 30" : "";
  op.addEventListener("change", () => {
    values.placeholder = op.value === "LAST_DAYS" ? "days, e.g. 30" : "";
  });
  path.addEventListener("change", () => {
    fillOperators();
    update();
    topValues(path.value).then((top) => valueList.replaceChildren(...top.map((v) => element("option", { value: v.text }))));
  });
  op.addEventListener("change", update);
  values.addEventListener("input", debounce(update, 300));
  negate.addEventListener("change", update);
  const dropIfEmpty = () => {
    if (path.value.trim()) return false;
    group.rows.splice(index, 1);
    renderBuilder(model);
    builderChanged();
    focusRow(g, Math.max(0, index - 1));
    return true;
  };
  path.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      (values.hidden ? negate : values).focus();
    } else if (event.key === "Escape") {
      dropIfEmpty();
    }
  });
  values.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      update();
      group.rows.splice(index + 1, 0, emptyRow());
      renderBuilder(model);
      focusRow(g, index + 1);
    } else if (event.key === "Escape" && !dropIfEmpty()) {
      values.value = row.values.join(", ");
    }
  });
  const remove = element("button", { type: "button", "aria-label": "Remove condition", text: "×" });
  remove.addEventListener("click", () => {
    group.rows.splice(index, 1);
    renderBuilder(model);
    builderChanged();
  });
  return element("div", { class: "row" }, path, op, values, valueList, element("label", { for: negate.id }, negate, " not"), remove);
}

function groupTitle(group, g) {
  const id = `group-${g}-not`;
  const negate = element("input", { type: "checkbox", id, class: "group-not" });
  negate.checked = Boolean(group.not);
  const title = element("span");
  const words = () => {
    const lead = g === 0 ? "Users where" : "or";
    title.textContent = `${lead} ${group.not ? "not all" : "all"} of:`;
  };
  words();
  negate.addEventListener("change", () => {
    group.not = negate.checked;
    words();
    builderChanged();
  });
  return element("div", { class: "group-title" }, title, element("label", { for: id }, negate, " not (none together)"));
}

function renderBuilder(next) {
  model = next;
  const groups = model.groups.map((group, g) => {
    const add = element("button", { type: "button", text: "+ condition" });
    add.addEventListener("click", () => {
      group.rows.push(emptyRow());
      renderBuilder(model);
      focusRow(g, group.rows.length - 1);
    });
    return element(
      "div",
      { class: "group", "data-group": g },
      groupTitle(group, g),
      ...group.rows.map((row, i) => rowEditor(row, group, i, g)),
      add,
    );
  });
  $("builder").replaceChildren(...groups);
}

$("add-group").addEventListener("click", () => {
  model.groups.push({ rows: [emptyRow()], not: false });
  renderBuilder(model);
  focusRow(model.groups.length - 1, 0);
});

// ---- autocomplete ---------------------------------------------------------------------------

async function topValues(path) {
  if (!path) return [];
  if (state.values.has(path)) return state.values.get(path);
  try {
    const answer = await state.api.call("UserIndex", "FacetUsers", { facets: [{ path, terms: { size: 20 } }] });
    const buckets = answer.facets?.[0]?.terms?.buckets || [];
    const top = buckets.map((b) => ({ text: typedText(b.value), literal: valueText(b.value), count: Number(b.count) }));
    state.values.set(path, top);
    return top;
  } catch {
    return [];
  }
}

let suggestions = [];
let selected = -1;

async function suggest() {
  const before = text.value.slice(0, text.selectionStart);
  const valueContext = before.match(/([A-Za-z_][\w.`-]*)\s*(=|!=|IN\s*\[(?:[^\]]*,)?)\s*("?[^"\s,\]]*)$/);
  const word = before.match(/[A-Za-z_][\w.`-]*$/)?.[0] || "";
  let items = [];
  if (valueContext) {
    const [, path, , partial] = valueContext;
    const top = await topValues(path);
    const typed = partial.replace(/^"/, "").toLowerCase();
    items = top
      .filter((v) => v.text.toLowerCase().startsWith(typed) && v.literal !== partial)
      .map((v) => ({ label: v.literal, hint: numbers.format(v.count), replace: partial.length, insert: v.literal }));
  } else if (word) {
    items = state.fields
      .filter((f) => f.path.startsWith(word) && f.path !== word)
      .map((f) => ({ label: f.path, hint: f.type, replace: word.length, insert: f.path }));
  }
  suggestions = items.slice(0, 8);
  selected = suggestions.length ? 0 : -1;
  renderSuggestions();
}

function renderSuggestions() {
  const list = $("suggestions");
  list.hidden = suggestions.length === 0;
  list.replaceChildren(
    ...suggestions.map((item, i) => {
      const option = element("li", { role: "option", "aria-selected": String(i === selected) }, element("span", { text: item.label }), element("span", { class: "muted", text: item.hint }));
      option.addEventListener("mousedown", (event) => {
        event.preventDefault();
        accept(i);
      });
      return option;
    }),
  );
}

function accept(i) {
  const item = suggestions[i];
  const at = text.selectionStart;
  text.value = text.value.slice(0, at - item.replace) + item.insert + text.value.slice(at);
  const cursor = at - item.replace + item.insert.length;
  text.setSelectionRange(cursor, cursor);
  suggestions = [];
  renderSuggestions();
  refreshSoon();
}

text.addEventListener("keydown", (event) => {
  if ($("suggestions").hidden) return;
  if (event.key === "ArrowDown" || event.key === "ArrowUp") {
    event.preventDefault();
    selected = (selected + (event.key === "ArrowDown" ? 1 : suggestions.length - 1)) % suggestions.length;
    renderSuggestions();
  } else if ((event.key === "Enter" || event.key === "Tab") && selected >= 0) {
    event.preventDefault();
    accept(selected);
  } else if (event.key === "Escape") {
    suggestions = [];
    renderSuggestions();
  }
});
text.addEventListener("blur", () => setTimeout(() => {
  suggestions = [];
  renderSuggestions();
}, 100));

// ---- charts ---------------------------------------------------------------------------------

function niceInterval(span) {
  const raw = Math.max(span / 20, 1e-9);
  const power = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * power).find((v) => v >= raw);
}

async function loadChart() {
  const sequence = (state.chartSequence = (state.chartSequence || 0) + 1);
  const path = $("chart-path").value.trim();
  const kind = $("chart-kind").value;
  const real = $("chart");
  // Drawn off the page, and put on it only if no newer chart was asked for meanwhile.
  const target = {
    replaceChildren: (...nodes) => sequence === state.chartSequence && real.replaceChildren(...nodes),
  };
  if (!path) return target.replaceChildren();
  const filter = filterSpec(text.value);
  try {
    if (kind === "terms") {
      const answer = await state.api.call("UserIndex", "FacetUsers", { filter, facets: [{ path, terms: { size: 15 } }] });
      const terms = answer.facets[0].terms || {};
      const buckets = (terms.buckets || []).map((b) => ({ label: typedText(b.value), count: Number(b.count) }));
      const other = Number(terms.otherCount || 0);
      target.replaceChildren(barChart(buckets, { title: `users by ${path}` }), element("p", { class: "muted", text: other ? `${numbers.format(other)} more in other values` : "" }));
    } else if (kind === "stats" || kind === "histogram") {
      const stats = await state.api.call("UserIndex", "FacetUsers", { filter, facets: [{ path, stats: { percentiles: [50, 90, 99] } }] });
      const s = stats.facets[0].stats || {};
      if (kind === "stats") {
        const rows = [["count", s.count], ["min", s.min], ["max", s.max], ["average", s.avg], ["sum", s.sum], ...(s.percentiles || []).map((p) => [`p${p.percent}`, p.value])];
        target.replaceChildren(element("table", { class: "stats" }, ...rows.map(([k, v]) => element("tr", {}, element("td", { text: k }), element("td", { text: numbers.format(Number(v || 0)) })))));
        return;
      }
      const interval = niceInterval(Number(s.max || 0) - Number(s.min || 0));
      const answer = await state.api.call("UserIndex", "FacetUsers", { filter, facets: [{ path, histogram: { interval } }] });
      const buckets = (answer.facets[0].histogram?.buckets || []).map((b) => ({ label: numbers.format(Number(b.key || 0)), count: Number(b.count || 0) }));
      target.replaceChildren(columnChart(buckets, { title: `${path} histogram` }));
    } else {
      const interval = kind === "week" ? "CALENDAR_INTERVAL_WEEK" : "CALENDAR_INTERVAL_MONTH";
      const answer = await state.api.call("UserIndex", "FacetUsers", { filter, facets: [{ path, dateHistogram: { interval } }] });
      const buckets = (answer.facets[0].dateHistogram?.buckets || []).map((b) => ({ label: (b.keyAsString || "").slice(0, kind === "week" ? 10 : 7), count: Number(b.count || 0) }));
      target.replaceChildren(columnChart(buckets, { title: `${path} per ${kind}` }));
    }
  } catch (error) {
    target.replaceChildren(element("p", { class: "error", text: error.message }));
  }
}
$("chart-path").addEventListener("change", loadChart);
$("chart-kind").addEventListener("change", () => {
  const kind = $("chart-kind").value;
  if ((kind === "week" || kind === "month") && !typeOf($("chart-path").value).includes("date")) $("chart-path").value = "created_at";
  loadChart();
});

// ---- the users table ------------------------------------------------------------------------

function columns() {
  return $("table-columns").value.split(",").map((c) => c.trim()).filter(Boolean);
}

function fieldsFor(cols) {
  return cols.flatMap((c) => (c === "email" ? ["email_addresses", "primary_email_address_id"] : [c]));
}

function cell(user, column) {
  if (column === "email") {
    const emails = user.email_addresses || [];
    const primary = emails.find((e) => e.id === user.primary_email_address_id) || emails[0];
    return primary ? primary.email_address : "";
  }
  const names = { public: "public_metadata", private: "private_metadata", unsafe: "unsafe_metadata" };
  const [first, ...rest] = column.split(".");
  let value = user[names[first] || first];
  for (const key of rest) value = value?.[key];
  if (value === undefined || value === null) return "";
  if (/_at$/.test(column) && typeof value === "number") return new Date(value);
  return typeof value === "string" ? value : JSON.stringify(value);
}

async function loadUsers() {
  // Only the newest request's answer is shown (an older one may arrive last).
  const sequence = (state.usersSequence = (state.usersSequence || 0) + 1);
  const cols = columns();
  const { tokens, index, sort } = state.page;
  const head = element(
    "tr",
    {},
    ...cols.map((c) => {
      const mark = sort?.path === c ? (sort.descending ? " ↓" : " ↑") : "";
      const button = element("button", { type: "button", text: c + mark, "aria-label": `Sort by ${c}` });
      button.addEventListener("click", () => {
        state.page = { tokens: [""], index: 0, sort: { path: c, descending: sort?.path === c ? !sort.descending : false } };
        loadUsers();
      });
      return element("th", { scope: "col", "aria-sort": sort?.path === c ? (sort.descending ? "descending" : "ascending") : "none" }, button);
    }),
  );
  $("users").tHead.replaceChildren(head);
  try {
    const answer = await state.api.call("UserIndex", "SearchUsers", {
      filter: filterSpec(text.value),
      sort: sort || undefined,
      pageSize: 20,
      pageToken: tokens[index],
      fields: fieldsFor(cols),
    });
    if (sequence !== state.usersSequence) return;
    const rows = (answer.users || []).map((u) => {
      const user = JSON.parse(u.json);
      const row = element("tr", { tabindex: "0", "data-user-id": u.id });
      for (const c of cols) {
        const value = cell(user, c);
        row.append(value instanceof Date ? element("td", { text: value.toLocaleString(), title: value.toISOString() }) : element("td", { text: value, title: value }));
      }
      const open = () => showUser(u.id);
      row.addEventListener("click", open);
      row.addEventListener("keydown", (event) => event.key === "Enter" && open());
      return row;
    });
    $("users").tBodies[0].replaceChildren(...rows);
    tokens[index + 1] = answer.nextPageToken || undefined;
    $("page-next").disabled = !answer.nextPageToken;
    $("page-previous").disabled = index === 0;
    $("page-number").textContent = `page ${index + 1}`;
  } catch (error) {
    if (sequence !== state.usersSequence) return;
    $("users").tBodies[0].replaceChildren(element("tr", {}, element("td", { class: "error", text: error.message })));
  }
}
$("page-next").addEventListener("click", () => {
  state.page.index += 1;
  loadUsers();
});
$("page-previous").addEventListener("click", () => {
  state.page.index = Math.max(0, state.page.index - 1);
  loadUsers();
});
$("columns-form").addEventListener("submit", (event) => {
  event.preventDefault();
  loadUsers();
});

async function showUser(id) {
  const answer = await state.api.call("UserIndex", "GetUser", { userId: id });
  $("user-heading").hidden = false;
  $("user-record").hidden = false;
  $("user-record").textContent = JSON.stringify(JSON.parse(answer.user.json), null, 2);
}

// ---- saving segments ------------------------------------------------------------------------

$("save-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const status = $("save-status");
  try {
    const segment = await state.api.call("Segments", "CreateSegment", {
      name: $("segment-name").value.trim(),
      description: $("segment-description").value,
      filter: filterSpec(text.value) || { expression: "" },
    });
    status.className = "";
    status.textContent = `Saved segment ${segment.name}.`;
  } catch (error) {
    status.className = "error";
    status.textContent = error.message;
  }
});

// ---- exports --------------------------------------------------------------------------------

async function download(request, label) {
  const status = $("export-status");
  const progress = $("export-progress");
  const headers = { "Content-Type": "application/json" };
  if (state.api.key) headers.Authorization = `Bearer ${state.api.key}`;
  status.className = "";
  status.textContent = "Preparing the export…";
  try {
    const issued = await fetch("/console/v1/export-tickets", { method: "POST", headers, body: JSON.stringify(request) });
    const ticket = await issued.json();
    if (!issued.ok) throw new ApiError(ticket.code, ticket.message, ticket.details);
    const response = await fetch(ticket.url);
    if (!response.ok) {
      const error = await response.json();
      throw new ApiError(error.code, error.message, error.details);
    }
    const total = Number(response.headers.get("x-export-total") || 0);
    progress.hidden = false;
    progress.max = Math.max(1, total);
    const reader = response.body.getReader();
    const chunks = [];
    let lines = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      for (const byte of value) if (byte === 10) lines += 1;
      progress.value = Math.min(lines, progress.max);
      status.textContent = `Downloading ${label}: ${numbers.format(lines)} lines of ${numbers.format(total)} users…`;
    }
    const extension = request.format === "csv" ? "csv" : "jsonl";
    const blob = new Blob(chunks, { type: request.format === "csv" ? "text/csv" : "application/x-ndjson" });
    const link = element("a", { href: URL.createObjectURL(blob), download: `${label}.${extension}` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
    status.textContent = `Exported ${numbers.format(total)} users to ${label}.${extension}.`;
    status.dataset.exported = String(total);
  } catch (error) {
    status.className = "error";
    status.textContent = `The export failed: ${error.message}`;
  } finally {
    progress.hidden = true;
  }
}

$("export-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const format = $("export-format").value;
  const cols = $("export-columns").value.split(",").map((c) => c.trim()).filter(Boolean);
  download({ filter: text.value.trim() || undefined, format, columns: cols }, "users");
});

// ---- segments -------------------------------------------------------------------------------

async function loadSegments() {
  const status = $("segments-status");
  try {
    const { segments = [] } = await state.api.call("Segments", "ListSegments", {});
    const rows = await Promise.all(
      segments.map(async (segment) => {
        const [count, history] = await Promise.all([
          state.api.call("Segments", "CountSegment", { name: segment.name }).catch(() => ({ count: "?" })),
          state.api.call("Segments", "GetSegmentHistory", { name: segment.name }).catch(() => ({ periods: [] })),
        ]);
        const sizes = (history.periods || []).slice(-30).map((p) => Number(p.size || 0));
        const open = element("button", { type: "button", text: "Open", "aria-label": `Open ${segment.name}` });
        open.addEventListener("click", () => openSegment(segment));
        return element(
          "tr",
          { "data-segment": segment.name },
          element("td", { text: segment.name }),
          element("td", { text: count.count === "?" ? "?" : numbers.format(Number(count.count)), class: "size" }),
          element("td", {}, sparkline(sizes, { title: `${segment.name} size over 30 days` })),
          element("td", { text: segment.description || "" }),
          element("td", {}, open),
        );
      }),
    );
    $("segments").tBodies[0].replaceChildren(...rows);
    status.textContent = segments.length ? "" : "No segments yet: build a filter and save it.";
  } catch (error) {
    status.textContent = error.message;
  }
}

function stopWatch() {
  state.watch?.abort();
  state.watch = null;
}

// The destinations fed by a segment, with their state and lag (keys without the segments scope
// cannot list destinations, and see nothing here).
async function loadSegmentDestinations(name) {
  const block = $("segment-destinations-block");
  block.hidden = true;
  let destinations;
  try {
    destinations = (await state.api.call("Segments", "ListDestinations", {})).destinations || [];
  } catch {
    return;
  }
  if (state.segment?.name !== name) return;
  const feeding = destinations.filter((d) => (d.segments || []).includes(name));
  $("segment-destinations").replaceChildren(
    ...feeding.map((d) => {
      const stateName = (d.state || "").replace("DESTINATION_STATE_", "").toLowerCase();
      const lag = Number(d.lagEvents || 0);
      const parts = [stateName, lag ? `${numbers.format(lag)} events behind` : "up to date"];
      if (d.lastError) parts.push(`last error: ${d.lastError}`);
      return element("li", { "data-destination": d.name }, element("strong", { text: d.name }), ` → ${d.url} · ${parts.join(" · ")}`);
    }),
  );
  if (!feeding.length) $("segment-destinations").replaceChildren(element("li", { class: "muted", text: "No destination receives this segment's events." }));
  block.hidden = false;
}

function openSegment(segment) {
  stopWatch();
  state.segment = segment;
  $("segment-detail").hidden = false;
  $("segment-title").textContent = segment.name;
  $("segment-filter").value = segment.filter?.expression || "";
  $("segment-edit-description").value = segment.description || "";
  $("segment-status").textContent = "";
  $("segment-delete").textContent = "Delete";
  $("feed").replaceChildren();
  loadSegmentDestinations(segment.name);
  const watch = new AbortController();
  state.watch = watch;
  const feed = $("feed");
  state.api
    .stream("Segments", "WatchSegment", { name: segment.name }, (event) => {
      const kind = (event.kind || "").replace("KIND_", "").toLowerCase();
      const when = new Date(Number(event.recordedAtMs || Date.now()));
      const item = element("li", { class: kind, "data-kind": kind, "data-user-id": event.userId || "", title: when.toISOString() }, `${when.toLocaleTimeString()} ${kind} ${event.userId || ""} (${event.cause || ""})`);
      feed.prepend(item);
      while (feed.children.length > 200) feed.lastElementChild.remove();
    }, watch.signal)
    .catch((error) => {
      if (error.name !== "AbortError") $("segment-status").textContent = `Live feed stopped: ${error.message}`;
    });
}

$("segment-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const segment = state.segment;
  const status = $("segment-status");
  try {
    const updated = await state.api.call("Segments", "UpdateSegment", {
      name: segment.name,
      description: $("segment-edit-description").value,
      filter: { expression: $("segment-filter").value },
      expectedVersion: segment.version,
    });
    state.segment = updated;
    status.className = "";
    status.textContent = `Saved (version ${updated.version}).`;
    loadSegments();
  } catch (error) {
    status.className = "error";
    status.textContent = error.code === "aborted" ? "Someone changed this segment since you opened it: reopen it to see their version." : error.message;
  }
});

$("segment-use").addEventListener("click", () => {
  text.value = $("segment-filter").value;
  show("build");
  refresh();
});

$("segment-export").addEventListener("click", () => download({ segment: state.segment.name, format: "csv" }, state.segment.name));

$("segment-delete").addEventListener("click", async () => {
  const button = $("segment-delete");
  if (button.textContent !== "Confirm delete") {
    button.textContent = "Confirm delete";
    return;
  }
  try {
    await state.api.call("Segments", "DeleteSegment", { name: state.segment.name });
    stopWatch();
    $("segment-detail").hidden = true;
    loadSegments();
  } catch (error) {
    $("segment-status").textContent = error.message;
  }
});

// A key kept from earlier in this tab signs in again.
const kept = sessionStorage.getItem(KEY);
if (kept !== null) signIn(kept).catch(() => sessionStorage.removeItem(KEY));
