// Shared by the search page and the console: DOM building without innerHTML, TMAPI envelopes.
"use strict";

const $ = (id) => document.getElementById(id);

/** el("a", {href, class}, "text", child, ...): attributes set as properties or attributes, text as text. */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** A link or image address only when it is http(s) or on this server (never javascript: or data:). */
function safeUrl(address) {
  if (!address) return null;
  try {
    const url = new URL(address, location.origin);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

class ApiError extends Error {
  constructor(code, msg) {
    super(msg);
    this.code = code;
  }
}

/** fetch() one of our routes and unwrap TMAPI's {code, msg, data}; a failure throws ApiError. */
async function callApi(method, path, { params = {}, json, form, headers = {} } = {}) {
  const url = new URL(path, location.origin);
  for (const [name, value] of Object.entries(params)) {
    if (value !== "" && value !== null && value !== undefined) url.searchParams.set(name, value);
  }
  const init = { method, headers: { ...headers } };
  if (form) init.body = form;
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch (error) {
    throw new ApiError(0, `The server did not answer (${error.message}).`);
  }
  let body;
  try {
    body = await response.json();
  } catch {
    throw new ApiError(response.status, `The server answered HTTP ${response.status} without a TMAPI envelope.`);
  }
  if (response.status !== 200 || body.code !== 200) {
    throw new ApiError(body.code || response.status, body.msg || `HTTP ${response.status}`);
  }
  return body.data;
}

function showStatus(text, isError = false) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}
