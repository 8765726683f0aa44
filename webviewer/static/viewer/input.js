/*
 * UI wiring: the toolbar's buttons, the slider, pointer, wheel and keyboard input, and
 * the page going away (logout or navigation), which stops fetching and reporting.
 */
import { byId, el, report, root, state, stopReporting } from "./context.js";
import { cine, startCine, stopCine } from "./cine.js";
import { requestDraw, resizeCanvases, toggleInvert, view } from "./draw.js";
import { stopFetching } from "./prefetch.js";
import { showSlice } from "./series.js";
import { abortTags, filterTags, toggleTags } from "./tags.js";
import {
  applyPreset, onPointerDown, onPointerMove, onPointerUp, pointerPosition, setTool, zoomAt,
} from "./tools.js";

const WHEEL_STEP = 50; // wheel pixels per image
const KEY_STEPS = { ArrowUp: -1, ArrowDown: 1, PageUp: -10, PageDown: 10 };

let wheelTotal = 0;

function onWheel(event) {
  if (!root.contains(event.target)) return;
  if (event.ctrlKey) {
    event.preventDefault();
    const over = el.stage.contains(event.target);
    const point = over ? pointerPosition(event) : { x: view.width / 2, y: view.height / 2 };
    zoomAt(point, Math.exp(-event.deltaY / 400));
    return;
  }
  if (!el.stage.contains(event.target)) return;
  event.preventDefault();
  wheelTotal += event.deltaMode === WheelEvent.DOM_DELTA_PIXEL ? event.deltaY : event.deltaY * WHEEL_STEP;
  if (Math.abs(wheelTotal) < WHEEL_STEP) return;
  showSlice(state.index + Math.sign(wheelTotal));
  wheelTotal = 0;
}

function onKey(event) {
  if (event.altKey || event.ctrlKey || event.metaKey) return;
  if (event.target.closest?.("textarea, select, input:not([type=range])")) return;
  const last = state.total - 1;
  const targets = { Home: 0, End: last };
  let next = null;
  if (event.key in KEY_STEPS) next = state.index + KEY_STEPS[event.key];
  else if (event.key in targets) next = targets[event.key];
  if (next === null) return;
  event.preventDefault();
  showSlice(next);
}

/** The page is going away (logout, navigation): stop fetching, report nothing more. */
function leave() {
  stopReporting();
  stopCine();
  stopFetching();
  abortTags();
}

/** Connect every control and input to the viewer. */
export function wire() {
  for (const button of root.querySelectorAll("[data-tool]")) {
    button.addEventListener("click", () => setTool(button.dataset.tool));
  }
  for (const button of root.querySelectorAll("[data-preset], [data-center]")) {
    button.addEventListener("click", () => applyPreset(button));
  }
  el.invert.addEventListener("click", () => el.invert.setAttribute("aria-pressed", String(toggleInvert())));
  byId("reset-view").addEventListener("click", () => {
    view.fitted = true;
    requestDraw();
  });
  el.cine.addEventListener("click", () => (cine.playing ? stopCine() : startCine()));
  el.tagsToggle.addEventListener("click", toggleTags);
  el.tagsFilter.addEventListener("input", filterTags);
  el.error.addEventListener("click", () => { el.error.hidden = true; });
  el.slider.addEventListener("input", () => showSlice(Number(el.slider.value) - 1));
  el.viewport.addEventListener("pointerdown", onPointerDown);
  el.viewport.addEventListener("pointermove", onPointerMove);
  el.viewport.addEventListener("pointerup", onPointerUp);
  el.viewport.addEventListener("pointercancel", onPointerUp);
  el.viewport.addEventListener("contextmenu", (event) => event.preventDefault());
  window.addEventListener("wheel", onWheel, { passive: false });
  document.addEventListener("keydown", onKey);
  window.addEventListener("unhandledrejection", (event) => report(event.reason));
  window.addEventListener("pagehide", leave);
  document.getElementById("logout")?.form?.addEventListener("submit", leave);
  new ResizeObserver(resizeCanvases).observe(el.stage);
}
