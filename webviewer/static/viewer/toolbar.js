/*
 * The toolbar's menus: the window menu (the presets the active viewport's image offers,
 * rebuilt when its series or the dataset's windows change; "Default" and "Auto" are
 * taken from the image shown when chosen), drop-down groups (always for the window and
 * layout menus, and for the tool groups on narrow screens), and which layout and tool
 * the buttons show as pressed.
 */
import { el, root, state } from "./context.js";
import { autoWindowOf, presetTitle, presetsFor } from "./presets.js";
import { setWindow } from "./tools.js";
import { active } from "./viewports.js";

let presets = [];
let presetsKey = null;

/** The presets now offered (for the help overlay and the digit keys). */
export function currentPresets() {
  return presets;
}

function shownFrame() {
  const frame = active.frameShown;
  return frame && !frame.preview ? frame : null;
}

/** Rebuild the window menu when what it offers may have changed. */
export function refreshPresets() {
  const frame = shownFrame();
  const own = (frame?.windows ?? []).map((w) => [w.center, w.width, w.explanation]);
  const key = JSON.stringify([active.record?.uid, active.record?.modality, frame?.format, Boolean(frame?.window), own]);
  if (key === presetsKey) return;
  presetsKey = key;
  presets = presetsFor(active.record?.modality, frame);
  el.presetItems.replaceChildren(...presets.map(presetButton));
  el.presetMenu.disabled = presets.length === 0;
}

function presetButton(preset, index) {
  const button = document.createElement("button");
  button.type = "button";
  button.id = `preset-${preset.id}`;
  button.setAttribute("role", "menuitem");
  button.textContent = preset.label;
  const key = index < 9 ? ` (key ${index + 1})` : "";
  button.title = preset.id === "default" ? `The image's own window${key}` : `${presetTitle(preset)}${key}`;
  button.addEventListener("click", () => applyPreset(index));
  return button;
}

/** Apply preset `index` of the menu to the active viewport. */
export function applyPreset(index) {
  const preset = presets[index];
  const frame = shownFrame();
  if (!preset || !frame) return;
  const levels = { default: frame.window, auto: autoWindowOf(frame) }[preset.id] ?? preset;
  if (levels) setWindow(active, levels.center, levels.width);
  closeMenus();
}

/** Close every open drop-down, except the one holding `keep`. */
export function closeMenus(keep = null) {
  for (const menu of root.querySelectorAll("[data-menu]")) {
    if (keep && menu.contains(keep)) continue;
    menu.querySelector(".menu-toggle").setAttribute("aria-expanded", "false");
  }
}

/** Show the layout and tool in the buttons and the menus' labels. */
export function showChoices() {
  for (const button of root.querySelectorAll("[data-layout]")) {
    button.setAttribute("aria-pressed", String(button.dataset.layout === state.layout));
  }
  const pressed = root.querySelector(`[data-tool="${state.tool}"]`);
  document.getElementById("tool-menu-label").textContent = pressed?.textContent ?? "";
}

/** Open and close the drop-downs: on their toggles, after a choice, on a click elsewhere. */
export function wireMenus() {
  for (const menu of root.querySelectorAll("[data-menu]")) {
    const toggle = menu.querySelector(".menu-toggle");
    toggle.addEventListener("click", () => {
      const open = toggle.getAttribute("aria-expanded") !== "true";
      closeMenus();
      toggle.setAttribute("aria-expanded", String(open));
    });
    menu.querySelector(".menu-items").addEventListener("click", (event) => {
      if (event.target.closest("button")) closeMenus();
    });
  }
  document.addEventListener("pointerdown", (event) => closeMenus(event.target));
}
