/*
 * The viewports and the layout: up to four viewports (each its own canvases, corner
 * texts, orientation markers and document panel, series, slice, view, window and
 * invert), the layout that shows 1, 2 or 4 of them (1x1, 1x2, 2x1, 2x2), which one is
 * active (the toolbar, slider, keys and cine act on it), and window.viewerState, which
 * mirrors the active viewport. The first viewport's elements keep the ids the tests and
 * the benchmark know (#viewport, #overlay, #ov-*).
 */
import { el, state } from "./context.js";

export const LAYOUTS = { "1x1": [1, 1], "1x2": [1, 2], "2x1": [2, 1], "2x2": [2, 2] };
const CORNERS = {
  tl: ["patient", "pid", "sexage", "birth"],
  tr: ["date", "study", "series"],
  bl: ["slice", "location", "thickness", "probe"],
  br: ["window", "zoom"],
};
const EDGES = ["top", "right", "bottom", "left"];

export const viewports = [];
export let active = null;
const listeners = { active: [], layout: [] };

function element(tag, className, id) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (id) node.id = id;
  return node;
}

function makeViewport(id) {
  const cell = element("div", "cell");
  cell.dataset.viewport = String(id);
  const canvas = element("canvas", "image", id === 0 ? "viewport" : null);
  canvas.tabIndex = 0;
  canvas.setAttribute("aria-label", `Image, viewport ${id + 1}`);
  const overlay = element("canvas", "overlay", id === 0 ? "overlay" : null);
  overlay.setAttribute("aria-hidden", "true");
  const lines = {};
  const corners = Object.entries(CORNERS).map(([corner, slots]) => {
    const box = element("div", `corner ${corner}`);
    for (const slot of slots) {
      lines[slot] = element("div", `line ${slot}`, id === 0 ? `ov-${slot}` : null);
      box.append(lines[slot]);
    }
    return box;
  });
  const markers = Object.fromEntries(EDGES.map((edge) => [edge, element("span", `marker ${edge}`)]));
  const doc = element("div", "doc-view");
  doc.hidden = true;
  cell.append(canvas, overlay, ...corners, ...Object.values(markers), doc);
  return {
    id, cell, canvas, overlay, lines, markers, doc,
    record: null, index: 0, total: 0, loadToken: 0,
    view: { scale: 1, ox: 0, oy: 0, fitted: true, width: 1, height: 1, dpr: 1 },
    window: null, needsWindow: true, inverted: false,
    offscreen: document.createElement("canvas"), frameShown: null, shownKey: null, repaint: true,
    hover: null,
  };
}

/** Create the four viewports in the stage; the first is active, in a 1x1 layout. */
export function createViewports() {
  for (let id = 0; id < 4; id += 1) {
    const vp = makeViewport(id);
    viewports.push(vp);
    el.stage.append(vp.cell);
  }
  active = viewports[0];
  active.cell.classList.add("active");
  applyLayout("1x1");
}

/** The viewports the layout shows, in reading order. */
export function shownViewports() {
  const [rows, cols] = LAYOUTS[state.layout];
  return viewports.slice(0, rows * cols);
}

/** Listen to "active" (the active viewport changed) or "layout" (the layout changed). */
export function on(event, listener) {
  listeners[event].push(listener);
}

function applyLayout(name) {
  const [rows, cols] = LAYOUTS[name];
  state.layout = name;
  el.stage.dataset.layout = name;
  el.stage.style.setProperty("--rows", String(rows));
  el.stage.style.setProperty("--cols", String(cols));
  viewports.forEach((vp, i) => {
    vp.cell.hidden = i >= rows * cols;
  });
}

/** Show layout `name`; the active viewport stays active if it is still shown. */
export function setLayout(name) {
  if (!(name in LAYOUTS) || name === state.layout) return;
  applyLayout(name);
  if (!shownViewports().includes(active)) setActive(viewports[0]);
  for (const listener of listeners.layout) listener(name);
  syncState();
}

/** Make `vp` the active viewport. */
export function setActive(vp) {
  if (vp === active) return;
  active = vp;
  for (const other of viewports) other.cell.classList.toggle("active", other === vp);
  for (const listener of listeners.active) listener(vp);
  syncState();
}

/** The slice `vp` shows, or null. */
export function sliceOf(vp) {
  return vp?.record?.slices?.[vp.index] ?? null;
}

/** Copy the active viewport into window.viewerState, and every viewport into its list. */
export function syncState() {
  state.active = active.id;
  state.seriesUid = active.record?.uid ?? null;
  state.studyUid = active.record?.study.uid ?? null;
  state.index = active.index;
  state.total = active.total;
  state.center = active.window?.center ?? null;
  state.width = active.window?.width ?? null;
  state.viewports = shownViewports().map((vp) => ({
    id: vp.id,
    seriesUid: vp.record?.uid ?? null,
    studyUid: vp.record?.study.uid ?? null,
    index: vp.index,
    total: vp.total,
    center: vp.window?.center ?? null,
    width: vp.window?.width ?? null,
    scale: vp.view.scale,
    sliceKey: sliceOf(vp)?.key ?? null,
    drawnKey: vp.shownKey,
    reference: vp.reference ?? null,
  }));
}
