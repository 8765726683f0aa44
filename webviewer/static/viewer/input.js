/*
 * UI wiring: the toolbar's buttons and menus, the slider, each viewport's pointer, wheel
 * and drop input (a series dragged from the strip), the keyboard shortcuts (shortcuts.js
 * says what each key means), and the page going away (logout or navigation), which
 * stops fetching and reporting.
 */
import { byId, el, report, root, state, stopReporting } from "./context.js";
import { actionFor } from "./shortcuts.js";
import { stopCine, toggleCine } from "./cine.js";
import { requestDraw, resizeCanvases } from "./draw.js";
import { toggleHelp, helpOpen, wireHelp } from "./help.js";
import { toggleLink } from "./linking.js";
import { toggleNotes, wirePanel } from "./panel.js";
import { stopFetching } from "./prefetch.js";
import { SERIES_TYPE, markThumbnails, recordOf, showSeries, showSlice, updateControls } from "./series.js";
import { abortTags, filterTags, scheduleTags, toggleTags } from "./tags.js";
import { applyPreset, closeMenus, refreshPresets, showChoices, wireMenus } from "./toolbar.js";
import {
  cancelDrawing, deleteSelected, leaveViewport, onPointerDown, onPointerMove, onPointerUp,
  pointerPosition, setTool, store, zoomAt,
} from "./tools.js";
import { active, on, setActive, setLayout, shownViewports, viewports } from "./viewports.js";
import { fillLayout } from "./layout.js";

const WHEEL_STEP = 50; // wheel pixels per image
let wheelTotal = 0;

function onWheel(vp, event) {
  event.preventDefault();
  setActive(vp);
  if (event.ctrlKey) {
    zoomAt(vp, pointerPosition(vp, event), Math.exp(-event.deltaY / 400));
    return;
  }
  wheelTotal += event.deltaMode === WheelEvent.DOM_DELTA_PIXEL ? event.deltaY : event.deltaY * WHEEL_STEP;
  if (Math.abs(wheelTotal) < WHEEL_STEP) return;
  showSlice(vp, vp.index + Math.sign(wheelTotal));
  wheelTotal = 0;
}

function invert() {
  active.inverted = !active.inverted;
  el.invert.setAttribute("aria-pressed", String(active.inverted));
  requestDraw(active, true);
}

function resetView() {
  active.view.fitted = true;
  requestDraw(active);
}

function cycleViewport(step) {
  const shown = shownViewports();
  setActive(shown[(shown.indexOf(active) + step + shown.length) % shown.length]);
}

function chooseLayout(name) {
  setLayout(name);
  fillLayout();
  showChoices();
}

function slice(step) {
  const targets = { first: 0, last: active.total - 1 };
  showSlice(active, step in targets ? targets[step] : active.index + Number(step));
}

function escape() {
  if (helpOpen()) toggleHelp(false);
  else if (store.selected !== null) store.select(null);
  cancelDrawing();
  closeMenus();
}

const ACTIONS = {
  tool: (name) => { setTool(name); showChoices(); },
  preset: (n) => applyPreset(Number(n)),
  layout: chooseLayout,
  slice,
  cine: toggleCine,
  invert,
  reset: resetView,
  link: toggleLink,
  tags: toggleTags,
  annotations: toggleNotes,
  help: () => toggleHelp(),
  escape,
  delete: deleteSelected,
  "next-viewport": () => cycleViewport(1),
  "previous-viewport": () => cycleViewport(-1),
};

/** Run `action` ("name" or "name:argument"); whether it is one. */
export function run(action) {
  const [name, argument] = action.split(/:(.*)/s);
  if (!(name in ACTIONS)) return false;
  ACTIONS[name](argument);
  return true;
}

function onKey(event) {
  if (event.target.closest?.("textarea, select, input:not([type=range])")) return;
  const action = actionFor(event);
  if (action === null) return;
  if (helpOpen() && action !== "help" && action !== "escape") return;
  if (event.target.closest?.("button, a") && (event.key === " " || event.key === "Enter")) return;
  event.preventDefault();
  run(action);
}

/** The page is going away (logout, navigation): stop fetching, report nothing more. */
function leave() {
  stopReporting();
  stopCine();
  stopFetching();
  abortTags();
}

function wireViewport(vp) {
  const { canvas, cell } = vp;
  canvas.addEventListener("pointerdown", (event) => onPointerDown(vp, event));
  canvas.addEventListener("pointermove", (event) => onPointerMove(vp, event));
  canvas.addEventListener("pointerup", () => onPointerUp(vp));
  canvas.addEventListener("pointercancel", () => onPointerUp(vp));
  canvas.addEventListener("pointerleave", () => leaveViewport(vp));
  canvas.addEventListener("contextmenu", (event) => event.preventDefault());
  cell.addEventListener("wheel", (event) => onWheel(vp, event), { passive: false });
  cell.addEventListener("pointerdown", () => setActive(vp));
  cell.addEventListener("dragover", (event) => {
    if (!event.dataTransfer.types.includes(SERIES_TYPE)) return;
    event.preventDefault();
    cell.classList.add("drop-target");
  });
  cell.addEventListener("dragleave", () => cell.classList.remove("drop-target"));
  cell.addEventListener("drop", (event) => {
    cell.classList.remove("drop-target");
    const record = recordOf(event.dataTransfer.getData(SERIES_TYPE));
    if (!record) return;
    event.preventDefault();
    setActive(vp);
    showSeries(vp, record).catch(report);
  });
}

function wireToolbar() {
  for (const button of root.querySelectorAll("[data-tool]")) {
    button.addEventListener("click", () => run(`tool:${button.dataset.tool}`));
  }
  for (const button of root.querySelectorAll("[data-layout]")) {
    button.addEventListener("click", () => chooseLayout(button.dataset.layout));
  }
  el.invert.addEventListener("click", invert);
  byId("reset-view").addEventListener("click", resetView);
  el.link.addEventListener("click", toggleLink);
  el.cine.addEventListener("click", toggleCine);
  el.tagsToggle.addEventListener("click", toggleTags);
  el.notesToggle.addEventListener("click", toggleNotes);
  byId("help-toggle").addEventListener("click", () => toggleHelp());
  el.tagsFilter.addEventListener("input", filterTags);
  el.error.addEventListener("click", () => { el.error.hidden = true; });
  el.slider.addEventListener("input", () => showSlice(active, Number(el.slider.value) - 1));
  wireMenus();
}

/** The active viewport changed: the controls follow it, cine stops. */
function activeChanged(vp) {
  stopCine();
  cancelDrawing();
  el.invert.setAttribute("aria-pressed", String(vp.inverted));
  updateControls();
  markThumbnails();
  refreshPresets();
  scheduleTags();
  requestDraw();
}

/** Connect every control and input to the viewer. */
export function wire() {
  wireToolbar();
  viewports.forEach(wireViewport);
  wirePanel();
  wireHelp();
  on("active", activeChanged);
  on("layout", () => {
    requestAnimationFrame(resizeCanvases);
    markThumbnails();
  });
  setTool(state.tool);
  showChoices();
  document.addEventListener("keydown", onKey);
  window.addEventListener("unhandledrejection", (event) => report(event.reason));
  window.addEventListener("pagehide", leave);
  document.getElementById("logout")?.form?.addEventListener("submit", leave);
  new ResizeObserver(resizeCanvases).observe(el.stage);
}
