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
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (value === true) {
      el.setAttribute(key, "");
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el: Node, children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
  }
}

/**
 * Replaces `el`'s children, keeping keyboard focus on the element with the
 * same id. Children equal to what is there already (the same elements,
 * attributes and text) leave the DOM alone, so an update that changes
 * nothing on screen costs no layout or paint.
 */
export function replaceChildren(el: HTMLElement, ...children: Child[]): void {
  const next = document.createDocumentFragment();
  append(next, children);
  const now = el.childNodes;
  if (now.length === next.childNodes.length && [...next.childNodes].every((n, i) => n.isEqualNode(now[i] ?? null))) return;
  const focusedId = document.activeElement instanceof HTMLElement ? document.activeElement.id : "";
  const hadFocus = focusedId !== "" && el.contains(document.activeElement);
  el.replaceChildren(next);
  if (hadFocus) document.getElementById(focusedId)?.focus();
}
