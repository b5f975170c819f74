// The console: tokens and their usage (the admin API), the catalog (the catalog API: import
// jobs, one offer looked up and deleted) and the upstream (TMAPI behind this server: calls made and
// saved, the admin API's /admin/upstream). The admin key lives in this tab's sessionStorage only and
// travels as `Authorization: Bearer`, never in an address.
"use strict";

const KEY = "snapsource.admin";
const adminKey = () => sessionStorage.getItem(KEY) || "";
const admin = (method, path, options = {}) =>
  callApi(method, path, { ...options, headers: { Authorization: `Bearer ${adminKey()}` } });

async function signIn() {
  try {
    await loadTokens();
  } catch (error) {
    sessionStorage.removeItem(KEY);
    showSignedIn(false);
    showStatus(error.code === 401 ? "That admin key is not this server's." : error.message, true);
    return;
  }
  showSignedIn(true);
  showStatus("");
  showView();
  await loadUsage();
}

function showSignedIn(yes) {
  $("sign-in").hidden = yes;
  $("signed-in").hidden = !yes;
  $("sign-out").hidden = !yes;
  if (!yes) stopFollowing();
}

/** The address's #/tokens, #/catalog or #/upstream picks the part shown; tokens when it names none. */
function showView() {
  const wanted = location.hash.replace(/^#\/?/, "");
  const view = ["tokens", "catalog", "upstream"].includes(wanted) ? wanted : "tokens";
  for (const part of document.querySelectorAll("#signed-in > [data-view]")) part.hidden = part.dataset.view !== view;
  for (const link of document.querySelectorAll(".tabs a")) {
    if (link.dataset.view === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (view === "catalog" && !$("signed-in").hidden) loadJobs().catch((error) => say("import-message", error.message, true));
  if (view === "upstream" && !$("signed-in").hidden) loadUpstream();
}

const orDash = (value) => (value === null || value === undefined || value === "" ? "–" : value);

async function loadTokens() {
  const { tokens } = await admin("GET", "/admin/tokens");
  const rows = tokens.map((t) =>
    el(
      "tr",
      { class: t.revoked_at ? "revoked" : "", "data-token-id": t.id },
      el("td", {}, t.id),
      el("td", {}, t.name),
      el("td", {}, (t.created_at || "").slice(0, 10)),
      el("td", {}, t.calls_used),
      el("td", {}, orDash(t.quota)),
      el("td", {}, orDash(t.qps)),
      el("td", {}, orDash(t.concurrency)),
      el("td", {}, orDash(t.expires_at)),
      el("td", { class: "scopes" }, (t.scopes || ["search"]).join(", ")),
      el("td", {}, t.revoked_at
        ? `revoked ${t.revoked_at.slice(0, 10)}`
        : el("button", { type: "button", class: "revoke", onclick: () => revoke(t) }, "Revoke")),
    ),
  );
  $("tokens").tBodies[0].replaceChildren(...rows);
  const select = $("usage-form").elements.name;
  const chosen = select.value;
  const names = [...new Set(tokens.map((t) => t.name))].sort();
  select.replaceChildren(el("option", { value: "" }, "all tokens"), ...names.map((n) => el("option", { value: n }, n)));
  select.value = names.includes(chosen) ? chosen : "";
}

async function revoke(t) {
  if (!confirm(`Revoke the token "${t.name}" (id ${t.id})? Calls with it will be refused at once.`)) return;
  try {
    await admin("DELETE", `/admin/tokens/${t.id}`);
    showStatus(`Token ${t.name} (id ${t.id}) revoked.`);
    await loadTokens();
  } catch (error) {
    showStatus(error.message, true);
  }
}

async function create(event) {
  event.preventDefault();
  const form = event.target;
  const number = (input) => (input.value === "" ? null : Number(input.value));
  const body = {
    name: form.name.value.trim(),
    quota: number(form.quota),
    qps: number(form.qps),
    concurrency: number(form.concurrency),
    expires: form.expires.value || null,
    scopes: form.scopes.value.split(" "),
  };
  try {
    const made = await admin("POST", "/admin/tokens", { json: body });
    $("secret-name").textContent = made.name;
    $("secret-value").textContent = made.token;
    $("secret").hidden = false;
    form.reset();
    showStatus(`Token ${made.name} created.`);
    await loadTokens();
  } catch (error) {
    showStatus(error.message, true);
  }
}

// usage -------------------------------------------------------------------------------------------

let usageAsked = 0; // the latest usage read: an earlier answer that arrives after it is dropped

async function loadUsage() {
  const form = $("usage-form");
  const days = Number(form.days.value);
  const asked = ++usageAsked;
  const { usage } = await admin("GET", "/admin/usage", { params: { days, name: form.elements.name.value } });
  if (asked !== usageAsked) return;
  const byDay = new Map();
  for (let i = days - 1; i >= 0; i--) {
    const day = new Date(Date.now() - i * 86400000).toISOString().slice(0, 10);
    byDay.set(day, { calls: 0, errors: 0 });
  }
  for (const row of usage) {
    const slot = byDay.get(row.day) || byDay.set(row.day, { calls: 0, errors: 0 }).get(row.day);
    slot.calls += row.calls;
    slot.errors += row.errors;
  }
  const total = [...byDay.values()].reduce((sum, d) => ({ calls: sum.calls + d.calls, errors: sum.errors + d.errors }), { calls: 0, errors: 0 });
  const count = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
  $("usage-total").textContent = `${count(total.calls, "call")}, ${count(total.errors, "error")} in the last ${days} days`;
  drawChart([...byDay.entries()]);
}

/** Bars of calls per day, their errors in red at the foot of each bar. */
function drawChart(days) {
  const svg = $("chart");
  const ns = "http://www.w3.org/2000/svg";
  const width = 800, height = 220, left = 40, bottom = 20;
  const top = Math.max(1, ...days.map(([, d]) => d.calls));
  const step = (width - left) / days.length;
  const y = (value) => (height - bottom) * (1 - value / top);
  const node = (tag, attrs, text) => {
    const n = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    return n;
  };
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const parts = [node("text", { x: 0, y: 12 }, String(top)), node("text", { x: 0, y: height - bottom }, "0")];
  days.forEach(([day, d], i) => {
    const x = left + i * step + step * 0.15;
    const w = Math.max(1, step * 0.7);
    const bar = node("rect", { class: "calls", x, y: y(d.calls), width: w, height: height - bottom - y(d.calls), "data-day": day, "data-calls": d.calls });
    bar.append(node("title", {}, `${day}: ${d.calls} calls, ${d.errors} errors`));
    parts.push(bar);
    if (d.errors) parts.push(node("rect", { class: "errors", x, y: y(d.errors), width: w, height: height - bottom - y(d.errors) }));
    if (i === 0 || i === days.length - 1 || (days.length > 10 && i % Math.ceil(days.length / 6) === 0)) {
      parts.push(node("text", { x: left + i * step, y: height - 4 }, day.slice(5)));
    }
  });
  svg.replaceChildren(...parts);
}

// upstream ----------------------------------------------------------------------------------------

const MODES = {
  off: "off: the local catalog only",
  fallback: "fallback: the upstream answers what the local catalog cannot",
  always: "always: the upstream answers every search (its pages stored)",
};

/** An estimate in the price's unit (any currency: no symbol), two decimals. */
const amount = (n) => Number(n).toLocaleString("en", { minimumFractionDigits: 2, maximumFractionDigits: 2 });

async function loadUpstream() {
  const days = Number($("upstream-form").elements.days.value);
  say("upstream-message", "");
  try {
    renderUpstream(await admin("GET", "/admin/upstream", { params: { days } }));
  } catch (error) {
    say("upstream-message", error.message, true);
  }
}

function renderUpstream(data) {
  $("upstream-off").hidden = data.configured;
  $("upstream-on").hidden = !data.configured;
  // usage kept from an upstream configured before is still worth seeing
  $("upstream-usage-panel").hidden = !data.configured && data.usage.length === 0;
  if (data.configured) renderUpstreamState(data);
  renderUpstreamUsage(data);
}

function renderUpstreamState(data) {
  $("upstream-url").textContent = data.url;
  $("upstream-mode").textContent = MODES[data.mode] || data.mode;
  $("upstream-mode").dataset.mode = data.mode;
  $("upstream-token").textContent = data.token ? "set" : "not set"; // the answer holds a mask, never the token
  $("upstream-pages").textContent = data.pages_stored.toLocaleString("en");
  $("upstream-photos").textContent = data.photos_converted.toLocaleString("en");
  $("upstream-cache-days").textContent = plural(data.cache_days, "day");
  $("upstream-price").textContent = data.price_per_call ? String(data.price_per_call) : "not set";

  const breaker = data.breaker;
  const seconds = `${Math.ceil(breaker.retry_in_s)} s`;
  const lastError = breaker.last_error ? ` Last error: ${breaker.last_error}` : "";
  const meaning = {
    closed: "the upstream is called",
    open: `no upstream calls for another ${seconds}`,
    "half-open": "the next search tries the upstream once",
  }[breaker.state];
  const shown = $("upstream-breaker");
  shown.replaceChildren(el("span", { class: `job-status breaker ${breaker.state}` }, breaker.state), " ", meaning || "");
  shown.dataset.state = breaker.state;
  if (breaker.state === "closed" && breaker.last_error) shown.append(el("span", { class: "muted" }, ` (last error: ${breaker.last_error})`));
  const alert = $("upstream-breaker-open");
  alert.hidden = breaker.state === "closed";
  alert.textContent =
    breaker.state === "open"
      ? `The upstream failed ${plural(breaker.failures_in_a_row, "time")} in a row: its circuit breaker is open and searches are answered locally; it is tried again in ${seconds}.${lastError}`
      : `The upstream failed ${plural(breaker.failures_in_a_row, "time")} in a row: the next search tries it once, and closes the breaker if it answers.${lastError}`;
}

const UPSTREAM_COUNTS = [
  ["calls", "upstream calls"],
  ["conversions", "conversions"],
  ["cached", "from stored pages"],
  ["local", "answered locally"],
];

function renderUpstreamUsage(data) {
  const totals = data.totals;
  const price = data.price_per_call || 0;
  $("upstream-usage-heading").textContent = `Calls made and saved in the last ${plural(data.days, "day")}`;
  const cell = (key, label, value, zero) =>
    el("div", { class: `count ${key}${zero ? " zero" : ""}`, "data-count": key }, el("dt", {}, label), el("dd", {}, value));
  $("upstream-counts").replaceChildren(
    ...UPSTREAM_COUNTS.map(([key, label]) => cell(key, label, totals[key].toLocaleString("en"), !totals[key])),
    cell("local_share", "local share", totals.local_share === null ? "–" : `${(100 * totals.local_share).toLocaleString("en", { maximumFractionDigits: 1 })}%`, !totals.local_share),
    cell("estimated_cost", "estimated cost", price ? amount(totals.estimated_cost) : "–", !price || !totals.estimated_cost),
    cell("estimated_saving", "estimated saving", price ? amount(totals.estimated_saving) : "–", !price || !totals.estimated_saving),
  );
  $("upstream-money").textContent = price
    ? `At ${price} a call: ${plural(totals.calls + totals.conversions, "paid call")} (searches and conversions) cost about ${amount(totals.estimated_cost)}; ` +
      `${plural(totals.saved_calls, "call")} not made (answered from stored pages or locally) saved about ${amount(totals.estimated_saving)}. ` +
      "The local share is of the searches the upstream could have answered."
    : "Set SNAPSOURCE_UPSTREAM_PRICE_PER_CALL to estimate the cost and the saving. The local share is of the searches the upstream could have answered.";

  const rows = data.usage.map((row) =>
    el(
      "tr",
      { "data-day": row.day, "data-token-id": row.token_id },
      el("td", {}, row.day),
      el("td", { title: row.token_id === null || row.token_id === undefined ? null : `token id ${row.token_id}` }, orDash(row.token)),
      ...UPSTREAM_COUNTS.map(([key]) => el("td", { "data-count": key }, row[key].toLocaleString("en"))),
    ),
  );
  $("upstream-usage").tBodies[0].replaceChildren(...rows);
  $("upstream-empty").hidden = rows.length > 0;
}

// catalog -----------------------------------------------------------------------------------------

/** A panel's own message line: `kind` is true (an error), "ok" or nothing. */
function say(id, text, kind) {
  const line = $(id);
  line.textContent = text;
  line.classList.toggle("error", kind === true);
  line.classList.toggle("ok", kind === "ok");
}

const plural = (n, word) => `${n.toLocaleString("en")} ${word}${n === 1 ? "" : "s"}`;

/** "2026-12-03 10:04" in the browser's time zone, from an ISO time. */
function when(iso) {
  const date = new Date(iso || "");
  if (Number.isNaN(date.getTime())) return iso || "–";
  const two = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${two(date.getMonth() + 1)}-${two(date.getDate())} ${two(date.getHours())}:${two(date.getMinutes())}`;
}

const FINISHED = new Set(["done", "failed"]);
let following = null; // {id, timer} of the job being polled

function stopFollowing() {
  if (following) clearTimeout(following.timer);
  following = null;
}

async function startImport(event) {
  event.preventDefault();
  const form = event.target;
  const file = form.elements.file.files[0];
  if (!file) return;
  const body = new FormData();
  body.append("file", file, file.name);
  body.append("format", form.elements.format.value);
  const mapping = form.elements.mapping.value.trim();
  if (mapping) body.append("mapping", mapping);
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  say("import-message", `Sending ${file.name} (${plural(file.size, "byte")})…`);
  try {
    const job = await admin("POST", "/catalog/imports", { form: body });
    say("import-message", `${file.name} was accepted as job ${job.id}.`, "ok");
    form.elements.file.value = "";
    follow(job);
    loadJobs().catch(() => {});
  } catch (error) {
    // the job shown before is not this upload's: hide it, so that its "done" is not read as this one's
    stopFollowing();
    $("job").hidden = true;
    say("import-message", `The import was refused: ${error.message}`, true);
  } finally {
    button.disabled = false;
  }
}

/** Show a job and, until it is done or failed, ask for it again about every second. */
function follow(job) {
  stopFollowing();
  const mine = { id: job.id, timer: 0 };
  following = mine;
  renderJob(job);
  const poll = async (misses) => {
    if (following !== mine) return;
    let next = 1000;
    try {
      const fresh = await admin("GET", `/catalog/imports/${encodeURIComponent(mine.id)}`);
      if (following !== mine) return;
      renderJob(fresh);
      if (FINISHED.has(fresh.status)) {
        following = null;
        loadJobs().catch(() => {});
        return;
      }
      misses = 0;
    } catch (error) {
      if (following !== mine) return;
      say("import-message", `Could not follow job ${mine.id}: ${error.message}`, true);
      if (error.code === 401 || error.code === 404 || misses >= 30) {
        following = null;
        return;
      }
      misses += 1;
      next = 2000;
    }
    mine.timer = setTimeout(() => poll(misses), next);
  };
  if (!FINISHED.has(job.status)) mine.timer = setTimeout(() => poll(0), 1000);
}

const COUNT_NAMES = [
  ["added", "added"],
  ["updated", "updated"],
  ["unchanged", "unchanged"],
  ["rejected", "rejected"],
  ["skipped", "skipped"],
  ["left_out", "left out"],
  ["deleted", "deleted"],
  ["images_embedded", "images embedded"],
  ["images_reused", "images reused"],
  ["images_failed", "images failed"],
];

/** A job's badge: [text, class]. A job that ran to its end and kept no offer is no success. */
function badgeOf(job) {
  const empty = job.status === "done" && job.imported === 0 && job.counts.deleted === 0;
  if (empty) return ["nothing imported", "job-status empty"];
  const partial = job.status === "done" && notImported(job) > 0; // some rows are listed below
  return [job.status, `job-status ${job.status}${partial ? " partial" : ""}`];
}

function notImported(job) {
  return (job.counts.rejected ?? 0) + (job.counts.skipped ?? 0);
}

function renderJob(job) {
  $("job").hidden = false;
  $("job").dataset.status = job.status;
  $("job-id").textContent = job.id;
  const badge = $("job-status");
  const [status, badgeClass] = badgeOf(job);
  badge.textContent = status;
  badge.className = badgeClass;
  $("job-source").textContent = `${job.source}${job.format ? ` · ${job.format}` : ""} · started ${when(job.created_at)}`;

  const bar = $("job-progress");
  const total = job.rows_total;
  if (total) {
    bar.value = Math.min(1, job.rows_done / total);
  } else if (job.status === "done") {
    bar.value = 1;
  } else {
    bar.removeAttribute("value"); // not counted yet: indeterminate
  }
  const percent = total ? Math.round((100 * Math.min(job.rows_done, total)) / total) : null;
  const rows = total ? `${job.rows_done.toLocaleString("en")} of ${plural(total, "row")} (${percent}%)` : `${plural(job.rows_done, "row")} so far`;
  const text = {
    queued: "Queued: waiting for the server to start it.",
    running: total || job.rows_done ? `Running: ${rows}.` : "Running: reading the file…",
    done: status === "done"
      ? `Done: ${rows}${notImported(job) ? `; ${plural(notImported(job), "row")} not imported (listed below)` : ""}.`
      : job.rows_done ? `Done, but nothing was imported: fix the rows listed below and import the file again.` : "Done, but the file holds no offers.",
    failed: `Failed after ${rows}.`,
  }[job.status] || `${job.status}: ${rows}.`;
  $("job-progress-text").textContent = text;

  const error = $("job-error");
  error.hidden = !job.error;
  error.textContent = job.error ? `The job failed: ${job.error}` : "";

  $("job-counts").replaceChildren(
    ...COUNT_NAMES.map(([key, label]) => {
      const n = job.counts[key] ?? 0;
      return el("div", { class: `count ${key}${n ? "" : " zero"}`, "data-count": key }, el("dt", {}, label), el("dd", {}, n.toLocaleString("en")));
    }),
  );

  const problems = job.problems || [];
  $("job-problems").hidden = problems.length === 0;
  $("problems").tBodies[0].replaceChildren(
    ...problems.map((p) =>
      el("tr", {}, el("td", {}, p.row), el("td", {}, orDash(p.item_id)), el("td", { class: "why" }, p.skipped ? "skipped" : "rejected"), el("td", { class: "reason" }, p.reason)),
    ),
  );
  // problems lists rejected and skipped rows alike (a skipped row is one whose photos all failed)
  const more = $("job-problems-more");
  more.hidden = notImported(job) <= problems.length;
  more.textContent = `The first ${problems.length.toLocaleString("en")} of ${plural(notImported(job), "rejected or skipped row")} are shown.`;
}

async function loadJobs() {
  const { jobs } = await admin("GET", "/catalog/imports");
  const rows = jobs.map((job) => {
    const c = job.counts;
    return el(
      "tr",
      { "data-job-id": job.id, class: job.status },
      el("td", { "data-label": "Job", class: "job-id" }, el("button", { type: "button", class: "link", onclick: () => showJob(job.id), "aria-label": `Show job ${job.id}` }, job.id)),
      el("td", { "data-label": "Source", class: "source", title: job.source }, job.source),
      el("td", { "data-label": "Status" }, el("span", { class: badgeOf(job)[1] }, badgeOf(job)[0])),
      el("td", { "data-label": "Rows" }, job.rows_total ? `${job.rows_done} / ${job.rows_total}` : job.rows_done),
      el("td", { "data-label": "Added", "data-count": "added" }, c.added ?? 0),
      el("td", { "data-label": "Updated", "data-count": "updated" }, c.updated ?? 0),
      el("td", { "data-label": "Unchanged", "data-count": "unchanged" }, c.unchanged ?? 0),
      el("td", { "data-label": "Rejected", "data-count": "rejected" }, c.rejected ?? 0),
      el("td", { "data-label": "Skipped", "data-count": "skipped" }, c.skipped ?? 0),
      el("td", { "data-label": "Started" }, when(job.created_at)),
    );
  });
  $("jobs").tBodies[0].replaceChildren(...rows);
  $("jobs-empty").hidden = jobs.length > 0;
  const followed = following && jobs.find((job) => job.id === following.id);
  if (followed) renderJob(followed); // the job shown and its row say the same
}

async function showJob(id) {
  try {
    follow(await admin("GET", `/catalog/imports/${encodeURIComponent(id)}`));
    say("import-message", "");
    $("job").scrollIntoView({ behavior: "smooth", block: "start" });
  } catch (error) {
    say("import-message", error.message, true);
  }
}

// one offer ---------------------------------------------------------------------------------------

let shown = null; // the offer on screen: {item_id, offer, images}

async function lookUp(itemId, { afterDelete = false } = {}) {
  hideConfirm();
  itemId = itemId.trim();
  if (!itemId) {
    say("lookup-message", "Give the offer's item_id, or the SKU or handle its file gave it.", true);
    return;
  }
  if (!afterDelete) say("lookup-message", `Looking up ${itemId}…`);
  try {
    // a number is an item_id; text is a file's key, stored under the id an import makes from it
    const path = /^[0-9]{1,19}$/.test(itemId) ? itemId : `by-key/${encodeURIComponent(itemId)}`;
    const found = await admin("GET", `/catalog/offers/${path}`);
    renderOffer(found);
    say("lookup-message", "");
  } catch (error) {
    shown = null;
    $("offer").hidden = true;
    if (afterDelete && error.code === 404) say("lookup-message", `Offer ${itemId} deleted. Looked up again: ${error.message}.`, "ok");
    else say("lookup-message", error.message, true);
  }
}

/** A price as the offer gives it: with its currency where the offer names one (the catalog schema has
 * no currency field, so usually none: the bare number, never a guessed symbol such as ¥). */
function money(amount, currency) {
  const code = typeof currency === "string" ? currency.trim().toUpperCase() : "";
  if (!code) return String(amount);
  const number = Number(amount);
  if (/^[A-Z]{3}$/.test(code) && Number.isFinite(number)) {
    try {
      const digits = (String(amount).split(".")[1] || "").length;
      return new Intl.NumberFormat("en", { style: "currency", currency: code, minimumFractionDigits: digits, maximumFractionDigits: Math.max(digits, 2) }).format(number);
    } catch {
      // an unknown code: shown as text below
    }
  }
  return `${amount} ${currency}`;
}

function renderOffer(found) {
  shown = found;
  const offer = found.offer || {};
  const title = offer.title || `Offer ${found.item_id}`;
  $("offer").hidden = false;
  $("offer").dataset.itemId = found.item_id;
  const link = safeUrl(offer.product_url);
  $("offer-title").replaceChildren(link ? el("a", { href: link, target: "_blank", rel: "noopener noreferrer" }, title) : title);
  $("offer-id").textContent = found.item_id;
  const original = offer.price_info?.origin_price;
  const currency = offer.currency || offer.price_info?.currency;
  $("offer-price").replaceChildren(offer.price ? money(offer.price, currency) : "–");
  if (original && original !== offer.price) $("offer-price").append(el("s", {}, money(original, currency)));
  const path = offer.category_path || [];
  $("offer-category").textContent = path.length ? path.join(" › ") : "–";
  const shop = offer.shop_info || {};
  $("offer-shop").textContent = shop.company_name || shop.shop_name || shop.login_id || "–";
  $("offer-updated").textContent = when(found.updated_at);

  const images = found.images || [];
  const embedded = images.filter((i) => i.embedded).length;
  $("offer-photos-heading").textContent = `Photos: ${images.length}, ${embedded} embedded (searchable)`;
  $("offer-photos").replaceChildren(
    ...images.map((image, i) => {
      const main = image.source === offer.img || image.img === offer.img;
      const src = safeUrl(image.img);
      return el(
        "li",
        { class: `photo-item${image.embedded ? "" : " unembedded"}` },
        src // a photo that could not be fetched or read has no stored copy to show
          ? el(
              "a",
              { href: src, target: "_blank", rel: "noopener", class: "thumb" },
              el("img", { src, alt: `Photo ${i + 1} of ${title}${main ? " (main)" : ""}`, loading: "lazy" }),
            )
          : el("div", { class: "thumb missing" }, "not stored"),
        el(
          "div",
          { class: "photo-facts" },
          el("span", { class: `badge ${image.embedded ? "embedded" : "not-embedded"}` }, image.embedded ? "embedded" : "not embedded"),
          main ? el("span", { class: "badge main" }, "main") : null,
        ),
        el("div", { class: "photo-source", title: image.source }, shortSource(image.source)),
      );
    }),
  );
}

/** A photo's reference, short enough for its card: the file name of a URL. */
function shortSource(source) {
  if (!/^https?:/.test(source || "")) return source;
  try {
    const url = new URL(source);
    return decodeURIComponent(url.pathname.split("/").filter(Boolean).pop() || url.host);
  } catch {
    return source;
  }
}

function askDelete() {
  if (!shown) return;
  const title = shown.offer?.title;
  $("delete-question").textContent = `Delete offer ${shown.item_id}${title ? ` (${title})` : ""}? It leaves search at once; its photos' files stay.`;
  $("delete-confirm").hidden = false;
  $("delete").hidden = true;
  $("delete-no").focus();
}

function hideConfirm() {
  $("delete-confirm").hidden = true;
  $("delete").hidden = false;
}

async function deleteShown() {
  if (!shown) return;
  const itemId = String(shown.item_id);
  $("delete-yes").disabled = true;
  try {
    await admin("DELETE", `/catalog/offers/${itemId}`);
    await lookUp(itemId, { afterDelete: true });
    $("lookup-id").focus();
  } catch (error) {
    say("lookup-message", `Not deleted: ${error.message}`, true);
  } finally {
    $("delete-yes").disabled = false;
  }
}

// wiring ------------------------------------------------------------------------------------------

$("sign-in-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY, $("admin-key").value);
  $("admin-key").value = "";
  signIn();
});
$("sign-out").addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  showSignedIn(false);
  showStatus("Signed out.");
});
$("create-form").addEventListener("submit", create);
$("usage-form").addEventListener("change", () =>
  Promise.all([loadUsage(), loadTokens()]).catch((error) => showStatus(error.message, true)),
);
$("import-form").addEventListener("submit", startImport);
$("upstream-form").addEventListener("change", loadUpstream);
$("upstream-form").addEventListener("submit", (event) => event.preventDefault());
$("upstream-refresh").addEventListener("click", loadUpstream);
$("jobs-refresh").addEventListener("click", () => loadJobs().catch((error) => say("import-message", error.message, true)));
$("lookup-form").addEventListener("submit", (event) => {
  event.preventDefault();
  lookUp($("lookup-id").value.trim());
});
$("delete").addEventListener("click", askDelete);
$("delete-no").addEventListener("click", () => {
  hideConfirm();
  $("delete").focus();
});
$("delete-yes").addEventListener("click", deleteShown);
window.addEventListener("hashchange", showView);
$("copy").addEventListener("click", () => navigator.clipboard?.writeText($("secret-value").textContent));
if (adminKey()) signIn();
