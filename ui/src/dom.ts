// A tiny element builder. The window builds its DOM with createElement and
// textContent only — never innerHTML — so text from the agent (evidence,
// reasons, names) can never become markup, and no inline script or style is
// needed under the strict CSP.

type Child = Node | string | number | null | undefined | false | Child[];
type Attrs = Record<string, string | number | boolean | null | undefined | EventListener>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      listen(el, key.slice(2).toLowerCase(), value);
    } else if (value === true) {
      el.setAttribute(key, "");
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

/**
 * The current handler of each element's events. An element kept by
 * `replaceChildren` takes the handlers of the element that would have
 * replaced it, so a click always runs the closure of the latest render
 * (which may concern another application than the first render's).
 */
const handlers = new WeakMap<Element, Map<string, EventListener>>();

function listen(el: Element, type: string, handler: EventListener): void {
  let map = handlers.get(el);
  if (!map) {
    map = new Map();
    handlers.set(el, map);
  }
  if (!map.has(type)) el.addEventListener(type, (event) => handlers.get(el)?.get(type)?.call(el, event));
  map.set(type, handler);
}

function append(el: Node, children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
  }
}

/**
 * Makes `el`'s children what `children` describe, changing only what
 * differs: a text that changed is set in place, attributes are patched,
 * and only an element of another kind is replaced. An update that changes
 * one figure on screen (a tunnel's byte count) therefore relayouts and
 * repaints that figure, not the page; one that changes nothing costs no
 * layout or paint at all. Keyboard focus stays where it was (the focused
 * element is kept, or the new one with its id is focused).
 */
export function replaceChildren(el: HTMLElement, ...children: Child[]): void {
  const next = document.createDocumentFragment();
  append(next, children);
  const focusedId = document.activeElement instanceof HTMLElement ? document.activeElement.id : "";
  const hadFocus = focusedId !== "" && el.contains(document.activeElement);
  patchChildren(el, next);
  if (hadFocus && !el.contains(document.activeElement)) document.getElementById(focusedId)?.focus();
}

function patchChildren(parent: Node, next: Node): void {
  const want = [...next.childNodes];
  want.forEach((node, i) => {
    const have = parent.childNodes[i];
    if (!have) parent.appendChild(node);
    else if (!patch(have, node)) parent.replaceChild(node, have);
  });
  while (parent.childNodes.length > want.length) parent.lastChild?.remove();
}

/** Makes `have` look like `want` in place; false when it cannot (another kind of node). */
function patch(have: Node, want: Node): boolean {
  if (have.nodeType !== want.nodeType || have.nodeName !== want.nodeName) return false;
  if (!(have instanceof Element) || !(want instanceof Element)) {
    if (have.nodeValue !== want.nodeValue) have.nodeValue = want.nodeValue;
    return true;
  }
  for (const name of have.getAttributeNames()) {
    // An open <details> is the reader's choice; a render does not close it.
    if (name === "open" && have.nodeName === "DETAILS") continue;
    if (!want.hasAttribute(name)) have.removeAttribute(name);
  }
  for (const name of want.getAttributeNames()) {
    const value = want.getAttribute(name) ?? "";
    if (have.getAttribute(name) !== value) have.setAttribute(name, value);
  }
  const theirs = handlers.get(want);
  const ours = handlers.get(have);
  for (const type of ours?.keys() ?? []) if (!theirs?.has(type)) ours?.delete(type);
  for (const [type, handler] of theirs ?? []) listen(have, type, handler);
  patchChildren(have, want);
  return true;
}
