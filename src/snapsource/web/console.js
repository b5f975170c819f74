// The console: tokens and their usage, on the admin API. The admin key lives in this tab's
// sessionStorage only and travels as `Authorization: Bearer`, never in an address.
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
  await loadUsage();
}

function showSignedIn(yes) {
  $("sign-in").hidden = yes;
  $("signed-in").hidden = !yes;
  $("sign-out").hidden = !yes;
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

async function loadUsage() {
  const form = $("usage-form");
  const days = Number(form.days.value);
  const { usage } = await admin("GET", "/admin/usage", { params: { days, name: form.elements.name.value } });
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
$("copy").addEventListener("click", () => navigator.clipboard?.writeText($("secret-value").textContent));
if (adminKey()) signIn();
