/*
 * The "?" overlay: every keyboard shortcut (the window presets as the active viewport
 * offers them), opened with "?" or its toolbar button, closed with Escape, a click
 * outside it or its close button.
 */
import { el } from "./context.js";
import { helpRows } from "./shortcuts.js";
import { currentPresets } from "./toolbar.js";

/** Whether the overlay is open. */
export const helpOpen = () => !el.help.hidden;

/** Open the overlay (filled afresh) or close it. */
export function toggleHelp(open = el.help.hidden) {
  if (open) {
    el.helpBody.replaceChildren(...helpRows(currentPresets()).map(row));
    el.help.hidden = false;
    el.help.querySelector("button")?.focus();
  } else {
    el.help.hidden = true;
  }
  document.getElementById("help-toggle")?.setAttribute("aria-expanded", String(open));
}

function row({ keys, what }) {
  const tr = document.createElement("tr");
  const key = document.createElement("td");
  const kbd = document.createElement("kbd");
  kbd.textContent = keys;
  key.append(kbd);
  const text = document.createElement("td");
  text.textContent = what;
  tr.append(key, text);
  return tr;
}

/** Close on the close button and on a click on the backdrop. */
export function wireHelp() {
  el.help.addEventListener("click", (event) => {
    if (event.target === el.help || event.target.closest("[data-close]")) toggleHelp(false);
  });
}
