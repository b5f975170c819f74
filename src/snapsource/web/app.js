// The search page: a photo in (drop, paste, pick, URL), the API's own parameters as controls, offers out.
// The page's address holds the search (never the token), so it can be shared and the Back button works.
// Every search asks with explain=true: each card shows how alike it is, whether it is the same product,
// and the offer's photo that matched; the predicted category is a chip, named where the server has
// names (GET /categories/{id}), that filters to it.
"use strict";

const FLAGS = ["is_factory", "verified_supplier", "support_dropshipping", "free_shipping", "new_arrival"];
const FLAG_NAMES = {
  is_factory: "factories only",
  verified_supplier: "verified suppliers only",
  support_dropshipping: "dropshipping only",
  free_shipping: "free shipping only",
  new_arrival: "new offers only",
};
const SORTS = ["default", "sales", "price_up", "price_down"];
const PAGE_SIZE = 20;
const TOKEN_KEY = "snapsource.token";

const token = () => localStorage.getItem(TOKEN_KEY) || "";
let current = null; // the state on screen
let found = { regions: [], region: null }; // boxes of the last answer, [x1, y1, x2, y2] in photo pixels
const categoryNames = new Map(); // cat_id -> {name, path}, or null when the server has no name for it

// state <-> address -------------------------------------------------------------------------------

function stateFromUrl() {
  const q = new URLSearchParams(location.search);
  const sort = q.get("sort");
  return {
    img_url: q.get("img_url") || "",
    page: Math.max(1, parseInt(q.get("page") || "1", 10) || 1),
    sort: SORTS.includes(sort) ? sort : "default",
    price_start: q.get("price_start") || "",
    price_end: q.get("price_end") || "",
    region: q.get("region") || "",
    keyword: q.get("keyword") || "",
    cat_id: q.get("cat_id") || "",
    match: q.get("match") === "same" ? "same" : "all",
    flags: Object.fromEntries(FLAGS.map((f) => [f, q.get(f) === "true"])),
  };
}

/** The API's parameters for a state: also the page's own query string. */
function params(state) {
  const p = { img_url: state.img_url };
  if (state.page > 1) p.page = String(state.page);
  if (state.sort !== "default") p.sort = state.sort;
  if (state.price_start) p.price_start = state.price_start;
  if (state.price_end) p.price_end = state.price_end;
  if (state.keyword) p.keyword = state.keyword;
  if (state.cat_id) p.cat_id = state.cat_id;
  if (state.match === "same") p.match = "same";
  for (const f of FLAGS) if (state.flags[f]) p[f] = "true";
  if (state.region) p.region = state.region;
  return p;
}

function go(state, push = true) {
  const query = state.img_url ? "?" + new URLSearchParams(params(state)) : location.pathname;
  if (push) history.pushState(null, "", query);
  else history.replaceState(null, "", query);
  render(state);
}

function filtersFromForm(state) {
  const form = $("filters");
  return {
    ...state,
    price_start: form.price_start.value.trim(),
    price_end: form.price_end.value.trim(),
    sort: form.sort.value || "default",
    keyword: form.keyword.value.trim(),
    match: form.same.checked ? "same" : "all",
    flags: Object.fromEntries(FLAGS.map((f) => [f, form[f].checked])),
  };
}

function formFromState(state) {
  const form = $("filters");
  form.price_start.value = state.price_start;
  form.price_end.value = state.price_end;
  form.sort.value = state.sort;
  form.keyword.value = state.keyword;
  form.same.checked = state.match === "same";
  for (const f of FLAGS) form[f].checked = state.flags[f];
}

// searching ---------------------------------------------------------------------------------------

async function render(state) {
  current = state;
  formFromState(state);
  const hasPhoto = Boolean(state.img_url);
  $("drop").hidden = hasPhoto;
  $("photo").hidden = !hasPhoto;
  if (!hasPhoto) {
    $("results").replaceChildren();
    $("pager").hidden = true;
    $("category").hidden = true;
    $("empty").hidden = true;
    showStatus(token() ? "" : "Enter your API token above (`snapsource token create`), then drop a photo.");
    return;
  }
  const img = $("photo-img");
  const src = safeUrl(state.img_url);
  if (src && img.getAttribute("src") !== src) {
    img.src = src;
    drawBoxes();
  }
  showStatus("Searching…");
  document.body.setAttribute("aria-busy", "true");
  try {
    const data = await callApi("GET", "/1688/search/image", {
      params: { apiToken: token(), page_size: String(PAGE_SIZE), explain: "true", ...params(state) },
    });
    if (state !== current) return; // a newer search started meanwhile
    await categoryName(catId(data)); // the chip and the empty-state message name it
    if (state !== current) return;
    found = { regions: data.regions || [], region: data.region || null };
    drawBoxes();
    showResults(data);
  } catch (error) {
    if (state !== current) return;
    $("results").replaceChildren();
    $("pager").hidden = true;
    $("category").hidden = true;
    $("empty").hidden = true;
    showStatus(error.code === 401 ? `${error.message}. Set your API token above.` : error.message, true);
  } finally {
    document.body.removeAttribute("aria-busy");
  }
}

function showResults(data) {
  const pages = Math.max(1, Math.ceil(data.total_count / data.page_size));
  if (data.total_count === 0) showEmpty();
  else {
    showStatus(`${data.total_count} ${data.total_count === 1 ? "offer" : "offers"} · page ${data.page} of ${pages}`);
    $("empty").hidden = true;
  }
  showCategory(data);
  $("results").replaceChildren(...withDivider(data.items.map(card), data.items));
  $("pager").hidden = data.total_count === 0;
  $("prev").disabled = data.page <= 1;
  $("next").disabled = !data.has_next_page;
  $("page-info").textContent = `Page ${data.page} of ${pages}`;
}

/** Nothing found: name the filters that are on, the likely reason, with buttons that clear them. */
function showEmpty() {
  const filters = activeFilters(current);
  showStatus(
    filters.length === 0
      ? "No offers look like this photo: click or draw a box around the product, or try another photo."
      : filters.length === 1
        ? `No offers match with this filter on: ${filters[0]}. It is the likely reason: clear it to see every offer like this photo.`
        : `No offers match with these filters on: ${filters.join(", ")}. They are the likely reason: clear them to see every offer like this photo.`,
  );
  $("empty").hidden = filters.length === 0;
  $("clear-category").hidden = !current.cat_id;
  $("clear-filters").hidden = filters.length <= (current.cat_id ? 1 : 0); // the category alone: one button
}

/** The filters a state has on, in words ("category “Tees”", "price up to ¥20"); sort and box are not filters. */
function activeFilters(state) {
  const on = [];
  if (state.cat_id) on.push(`category “${categoryNames.get(state.cat_id)?.name || state.cat_id}”`);
  if (state.keyword) on.push(`title words “${state.keyword}”`);
  if (state.price_start && state.price_end) on.push(`price ${money(state.price_start)}–${money(state.price_end)}`);
  else if (state.price_start) on.push(`price from ${money(state.price_start)}`);
  else if (state.price_end) on.push(`price up to ${money(state.price_end)}`);
  for (const f of FLAGS) if (state.flags[f]) on.push(FLAG_NAMES[f]);
  if (state.match === "same") on.push("same product only");
  return on;
}

/** A state with every filter off (the photo, its box and the sort kept). */
const unfiltered = (state) => ({
  ...state, cat_id: "", keyword: "", price_start: "", price_end: "", match: "all",
  flags: Object.fromEntries(FLAGS.map((f) => [f, false])), page: 1,
});

const catId = (data) => (data.cat_id === null || data.cat_id === undefined ? "" : String(data.cat_id));

/** A category's {name, path} from the server (the `categories` setting), once per id; null: none known. */
async function categoryName(id) {
  if (!id) return null;
  if (!categoryNames.has(id)) {
    try {
      const response = await fetch(`/categories/${encodeURIComponent(id)}`);
      if (!response.ok) return null; // asked again next time
      const body = await response.json();
      categoryNames.set(id, body.name ? { name: body.name, path: body.path || body.name } : null);
    } catch {
      return null; // the chip shows the id
    }
  }
  return categoryNames.get(id);
}

/** The chip: the category asked for (a filter on: click to drop it), else the one predicted (click to filter).
 * It shows the category's name where the server knows it, with its path and id in the tooltip. */
function showCategory(data) {
  const chip = $("category");
  const id = catId(data);
  const on = Boolean(current.cat_id);
  chip.hidden = !id;
  if (!id) return;
  const vote = (data.categories || []).find((v) => String(v.cat_id) === id);
  const named = categoryNames.get(id);
  chip.dataset.catId = id;
  chip.classList.toggle("on", on);
  chip.setAttribute("aria-pressed", String(on));
  const action = on
    ? "Showing only this category: click to show every category"
    : `Predicted from the best matches${vote ? ` (${Math.round(vote.share * 100)}% of the vote)` : ""}: click to show only this category`;
  chip.title = named ? `${named.path} (cat_id ${id})\n${action}` : action;
  $("category-label").textContent = on ? "Category" : "Looks like category";
  $("category-name").textContent = named ? named.name : id;
  $("category-x").hidden = !on;
}

/** The API's similarity (0-1) as the card shows it. */
const percent = (similarity) => `${Math.round(similarity * 100)}%`;

/** A small bar as long as the similarity (its width set through the CSSOM: the CSP refuses style="…"). */
function meter(similarity) {
  const fill = el("span", { class: "fill" });
  fill.style.width = percent(Math.min(1, Math.max(0, similarity)));
  return el("span", { class: "meter", "aria-hidden": "true" }, fill);
}

/** Best match first, the same product comes first: a line says where it ends and look-alikes begin. */
function withDivider(cards, items) {
  const end = items.findIndex((item, i) => i > 0 && item.match !== "same" && items[i - 1].match === "same");
  if (current.sort !== "default" || end < 0) return cards;
  const line = el("li", { class: "divider", role: "separator" }, "Look-alikes: not the same product, most alike first");
  return [...cards.slice(0, end), line, ...cards.slice(end)];
}

/** The sign of the catalog's currency (the `currency` setting, on the page's <html>): ¥, €, $. */
const CURRENCY_SIGN = (() => {
  const code = document.documentElement.dataset.currency || "CNY";
  try {
    const parts = new Intl.NumberFormat("en", { style: "currency", currency: code, currencyDisplay: "narrowSymbol" }).formatToParts(0);
    return parts.find((part) => part.type === "currency").value;
  } catch {
    return code + " ";
  }
})();

function money(value) {
  return value ? `${CURRENCY_SIGN}${value}` : "";
}

function card(item) {
  const shop = item.shop_info || {};
  const sale = item.sale_info || {};
  const prices = item.price_info || {};
  const link = safeUrl(item.product_url);
  const origin = prices.origin_price && prices.origin_price !== item.price ? prices.origin_price : null;
  const where = (shop.location && shop.location.length ? shop.location : (item.delivery_info || {}).area_from) || [];
  const sold = sale.sale_quantity_int ?? sale.sale_quantity;
  const matched = item.matched_img && item.matched_img !== item.img ? safeUrl(item.matched_img) : null;
  const same = item.match === "same";
  const hasSimilarity = typeof item.similarity === "number";
  return el(
    "li",
    { class: same ? "card same" : "card", "data-item-id": item.item_id, "data-match": item.match,
      "data-similarity": hasSimilarity ? item.similarity : null },
    el("a", { class: "thumb", href: link, target: "_blank", rel: "noopener" },
      el("img", { src: matched || safeUrl(item.img), alt: item.title, loading: "lazy" }),
      matched ? el("span", { class: "matched-note", title: "Your photo matched this one of the offer's photos, not its main photo" },
        "matched this photo") : null),
    el("div", { class: "evidence" },
      same ? el("span", { class: "badge same", title: "The same product: the same printed object seen again, or a near-copy of its photo" },
        "✓ same product") : null,
      hasSimilarity ? el("span", { class: "similarity", title: `similarity ${item.similarity.toFixed(2)} (0-1)` },
        meter(item.similarity), `${percent(item.similarity)} alike`) : null),
    el(
      "div",
      { class: "body" },
      el("a", { class: "title", href: link, target: "_blank", rel: "noopener", title: item.title }, item.title),
      el("div", { class: "price" }, money(item.price), origin ? el("s", {}, money(origin)) : null),
      el("div", { class: "facts" },
        [`MOQ ${item.moq ?? "–"}`, Number(sold) > 0 ? `${Number(sold).toLocaleString()} sold` : null, // 0: what a file without sales gives
          item.item_repurchase_rate ? `${item.item_repurchase_rate} repurchase` : null].filter(Boolean).join(" · ")),
      el("div", { class: "badges" },
        shop.is_factory ? el("span", { class: "badge factory" }, "factory") : null,
        shop.is_super_factory ? el("span", { class: "badge super" }, "super factory") : null,
        shop.factory_inspection ? el("span", { class: "badge verified", title: "factory inspected" }, "verified") : null,
        shop.score_info && shop.score_info.composite_score
          ? el("span", { class: "badge score", title: "shop score" }, `★ ${shop.score_info.composite_score}`) : null),
      el("div", { class: "shop" },
        safeUrl(shop.shop_url)
          ? el("a", { href: safeUrl(shop.shop_url), target: "_blank", rel: "noopener" }, shop.company_name || shop.login_id)
          : shop.company_name || shop.login_id || ""),
      where.length ? el("div", { class: "where" }, where.join(" ")) : null,
    ),
  );
}

// the photo and its boxes -------------------------------------------------------------------------

const SVG = "http://www.w3.org/2000/svg";

function svgRect(box, cls) {
  const rect = document.createElementNS(SVG, "rect");
  rect.setAttribute("x", box[0]);
  rect.setAttribute("y", box[1]);
  rect.setAttribute("width", Math.max(1, box[2] - box[0]));
  rect.setAttribute("height", Math.max(1, box[3] - box[1]));
  rect.setAttribute("class", cls);
  return rect;
}

/** The API's box [x1, y1, x2, y2] as its `region` parameter, 1688's order: x1,x2,y1,y2. */
const regionParam = (box) => `${box[0]},${box[2]},${box[1]},${box[3]}`;
const sameBox = (a, b) => a && b && a.every((v, i) => v === b[i]);

const area = (box) => (box[2] - box[0]) * (box[3] - box[1]);

/** The box searched ("used", never clicked: style.css) under the products found, the larger of
 * those under the smaller: whatever overlaps, a click on a product's box reaches that box. */
function drawBoxes() {
  const svg = $("boxes");
  const img = $("photo-img");
  if (!img.naturalWidth) return; // drawn again once the photo has loaded
  svg.setAttribute("viewBox", `0 0 ${img.naturalWidth} ${img.naturalHeight}`);
  svg.setAttribute("preserveAspectRatio", "none");
  const boxes = found.regions
    .filter((b) => b[2] - b[0] < img.naturalWidth || b[3] - b[1] < img.naturalHeight)
    .sort((a, b) => area(b) - area(a));
  if (found.region && !boxes.some((b) => sameBox(b, found.region))) boxes.unshift(found.region);
  svg.replaceChildren(
    ...boxes.map((box) => {
      const rect = svgRect(box, sameBox(box, found.region) ? "used" : "found");
      rect.dataset.region = regionParam(box);
      const title = document.createElementNS(SVG, "title");
      title.textContent = sameBox(box, found.region) ? "searched" : "search this product";
      rect.append(title);
      return rect;
    }),
  );
}

/** Click a box to search it; drag anywhere to draw a new one. */
function setUpDrawing() {
  const svg = $("boxes");
  let start = null;
  let drawing = null;
  const point = (event) => {
    const bounds = svg.getBoundingClientRect();
    const img = $("photo-img");
    const x = ((event.clientX - bounds.left) / bounds.width) * img.naturalWidth;
    const y = ((event.clientY - bounds.top) / bounds.height) * img.naturalHeight;
    return [Math.round(Math.min(Math.max(x, 0), img.naturalWidth)), Math.round(Math.min(Math.max(y, 0), img.naturalHeight))];
  };
  svg.addEventListener("pointerdown", (event) => {
    if (!$("photo-img").naturalWidth) return;
    start = { at: point(event), x: event.clientX, y: event.clientY, target: event.target };
    svg.setPointerCapture(event.pointerId);
  });
  svg.addEventListener("pointermove", (event) => {
    if (!start) return;
    if (!drawing && Math.hypot(event.clientX - start.x, event.clientY - start.y) < 6) return;
    const [x, y] = point(event);
    const box = [Math.min(start.at[0], x), Math.min(start.at[1], y), Math.max(start.at[0], x), Math.max(start.at[1], y)];
    drawing?.remove();
    drawing = svgRect(box, "drawing");
    drawing.dataset.box = box.join(",");
    svg.append(drawing);
  });
  svg.addEventListener("pointerup", () => {
    if (!start) return;
    const clicked = start.target;
    start = null;
    if (drawing) {
      const box = drawing.dataset.box.split(",").map(Number);
      drawing = null;
      if (box[2] - box[0] >= 16 && box[3] - box[1] >= 16) go({ ...current, region: regionParam(box), page: 1 });
      else drawBoxes();
    } else if (clicked instanceof SVGRectElement && clicked.dataset.region) {
      go({ ...current, region: clicked.dataset.region, page: 1 });
    }
  });
}

// getting a photo in ------------------------------------------------------------------------------

async function useFile(file) {
  if (!file) return;
  if (file.type && !file.type.startsWith("image/")) {
    showStatus(`${file.name} is not an image.`, true);
    return;
  }
  showStatus(`Uploading ${file.name || "the image"}…`);
  const form = new FormData();
  form.append("file", file, file.name || "pasted.png");
  try {
    const data = await callApi("POST", "/1688/tools/image/upload", { params: { apiToken: token() }, form });
    go({ ...filtersFromForm(current), img_url: data.image_url, region: "", page: 1 });
  } catch (error) {
    showStatus(error.message, true);
  }
}

async function useUrl(address) {
  if (!/^https?:\/\//i.test(address)) {
    showStatus("Give an http(s) address of an image.", true);
    return;
  }
  const url = new URL(address);
  if (url.origin === location.origin && url.pathname.startsWith("/img/")) {
    // a result's photo dragged back onto the page: this server holds it already
    go({ ...filtersFromForm(current), img_url: url.pathname, region: "", page: 1 });
    return;
  }
  showStatus("Fetching the image…");
  try {
    const data = await callApi("POST", "/1688/tools/image/convert_url", {
      params: { apiToken: token() },
      json: { url: address, search_api_endpoint: "/search/image" },
    });
    go({ ...filtersFromForm(current), img_url: data.image_url, region: "", page: 1 });
  } catch (error) {
    showStatus(error.message, true);
  }
}

/** "Try a sample photo": one of the catalog's own photos (GET /sample, public like /img/), searched. */
async function setUpSample() {
  const button = $("sample");
  let sample = null;
  button.addEventListener("click", () => {
    if (sample) go({ ...filtersFromForm(current), img_url: sample, region: "", page: 1 });
  });
  try {
    const response = await fetch("/sample");
    sample = response.ok ? (await response.json()).img_url : null;
  } catch {
    sample = null; // no sample to offer: the button stays hidden
  }
  button.hidden = !sample;
}

function setUpInputs() {
  const drop = $("drop");
  $("file").addEventListener("change", (event) => useFile(event.target.files[0]));
  for (const name of ["dragenter", "dragover"]) {
    document.addEventListener(name, (event) => {
      event.preventDefault();
      drop.classList.add("over");
    });
  }
  document.addEventListener("dragleave", (event) => {
    if (!event.relatedTarget) drop.classList.remove("over");
  });
  document.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const file = [...event.dataTransfer.files].find((f) => f.type.startsWith("image/"));
    const address = event.dataTransfer.getData("text/uri-list") || event.dataTransfer.getData("text/plain");
    if (file) useFile(file);
    else if (address) useUrl(address.trim());
  });
  document.addEventListener("paste", (event) => {
    const file = [...(event.clipboardData?.files || [])].find((f) => f.type.startsWith("image/"));
    if (file) {
      event.preventDefault();
      useFile(file);
      return;
    }
    const text = event.clipboardData?.getData("text")?.trim() || "";
    if (/^https?:\/\//i.test(text) && !(event.target instanceof HTMLInputElement)) {
      event.preventDefault();
      $("url").value = text;
      useUrl(text);
    }
  });
  $("url-form").addEventListener("submit", (event) => {
    event.preventDefault();
    useUrl($("url").value.trim());
  });
}

// wiring ------------------------------------------------------------------------------------------

function setUp() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.get("token")) {
    // `snapsource info` prints the page's address with the token after '#': it never reaches a server log
    localStorage.setItem(TOKEN_KEY, fragment.get("token"));
    history.replaceState(null, "", location.pathname + location.search);
  }
  $("token").value = token();
  $("currency-sign").textContent = CURRENCY_SIGN.trim();
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    localStorage.setItem(TOKEN_KEY, $("token").value.trim());
    render(current);
  });
  $("filters").addEventListener("change", () => go({ ...filtersFromForm(current), page: 1 }));
  $("category").addEventListener("click", () =>
    go({ ...filtersFromForm(current), cat_id: current.cat_id ? "" : $("category").dataset.catId, page: 1 }));
  $("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    go({ ...filtersFromForm(current), page: 1 });
  });
  $("prev").addEventListener("click", () => go({ ...current, page: Math.max(1, current.page - 1) }));
  $("next").addEventListener("click", () => go({ ...current, page: current.page + 1 }));
  $("whole").addEventListener("click", () => go({ ...current, region: "", page: 1 }));
  $("clear-category").addEventListener("click", () => go({ ...current, cat_id: "", page: 1 }));
  $("clear-filters").addEventListener("click", () => go(unfiltered(current)));
  $("again").addEventListener("click", () => go({ ...current, img_url: "", region: "", page: 1 }));
  $("photo-img").addEventListener("load", drawBoxes);
  window.addEventListener("popstate", () => render(stateFromUrl()));
  setUpInputs();
  setUpDrawing();
  setUpSample();
  render(stateFromUrl());
}

setUp();
