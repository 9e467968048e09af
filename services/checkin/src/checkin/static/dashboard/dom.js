// Small DOM helpers: every page element is built with DOM APIs, never from HTML strings.

const SVG_NS = "http://www.w3.org/2000/svg";

function fill(node, attributes, children) {
  for (const [name, value] of Object.entries(attributes ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") node.textContent = String(value);
    else if (name === "on") for (const [kind, listener] of Object.entries(value)) node.addEventListener(kind, listener);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** An HTML element: `h("td", {class: "n"}, "12")`. */
export function h(tag, attributes = {}, ...children) {
  return fill(document.createElement(tag), attributes, children);
}

/** An SVG element, with presentation attributes rather than inline styles. */
export function s(tag, attributes = {}, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), attributes, children);
}

export function byId(id) {
  const found = document.getElementById(id);
  if (!found) throw new Error(`the page has no #${id}`);
  return found;
}

/** Replaces a node's children only when the text differs, so screen readers are not told twice. */
export function setText(node, text) {
  const value = String(text);
  if (node.textContent !== value) node.textContent = value;
}

/** A bar from 0 to `share` (0..1) as an SVG: its length is an attribute, so no inline style is needed. */
export function bar(share, variant = "") {
  const width = Math.max(0, Math.min(1, Number.isFinite(share) ? share : 0)) * 100;
  return s(
    "svg",
    { class: `share-bar ${variant}`.trim(), viewBox: "0 0 100 10", preserveAspectRatio: "none", "aria-hidden": "true", focusable: "false" },
    s("rect", { class: "bar-track", x: 0, y: 0, width: 100, height: 10 }),
    s("rect", { class: "bar-fill", x: 0, y: 0, width: width.toFixed(2), height: 10 }),
  );
}
