/*
 * The mouse tools of the viewports: window/level, zoom and pan by dragging (the middle
 * button pans and the right one zooms, whatever the tool); length, ellipse and rectangle
 * by dragging; angle by dragging its first arm, then placing the third point; the probe
 * (the value under the pointer, a click pins it). Notes go into the annotation store on
 * the slice they were drawn on, ROI statistics computed from that slice's frame. A
 * click on a note selects it. Window and zoom changes reach linked viewports.
 */
import { root, state } from "./context.js";
import { AnnotationStore } from "./annotations.js";
import { toImage, zoomView } from "./geometry.js";
import { probe, roiStats, segmentLength } from "./measure.js";
import { draggedWindow } from "./windowing.js";
import { displayed, measurableFrame, requestDraw } from "./draw.js";
import { linkWindow, linkZoom } from "./linking.js";
import { setActive, sliceOf, viewports } from "./viewports.js";

const BUTTON_MODES = { 1: "pan", 2: "zoom" }; // middle and right drag, whatever the tool
const DRAWN = new Set(["length", "angle", "ellipse", "rect"]);
const HIT_PX = 6; // how near (CSS pixels) a click selects a note

export const store = new AnnotationStore();
export let drawing = null; // { vp, stage: "drag" | "third", note } while a note is drawn
let drag = null;

/** Set `vp`'s window (grayscale images only); linked viewports follow. */
export function setWindow(vp, center, width) {
  if (!vp.frameShown?.window) return;
  vp.window = { center, width };
  vp.needsWindow = false;
  requestDraw(vp, true);
  linkWindow(vp);
}

/** Zoom `vp` by `factor`, keeping the image point under `point` (CSS pixels) in place. */
export function zoomAt(vp, point, factor) {
  if (!vp.frameShown) return;
  zoomView(vp.view, displayed(vp.frameShown), point, factor);
  requestDraw(vp);
  linkZoom(vp);
}

/** The event's position in `vp`, in CSS pixels. */
export function pointerPosition(vp, event) {
  const rect = vp.canvas.getBoundingClientRect();
  return { x: event.clientX - rect.left, y: event.clientY - rect.top };
}

const imagePoint = (vp, point) => toImage(vp.view, displayed(vp.frameShown), point);
const valueUnit = (vp) => (String(vp.record?.modality).toUpperCase() === "CT" ? "HU" : "");

const dragActions = {
  wl(vp, d, dx, dy) {
    const { center, width } = draggedWindow(d, dx, dy, vp.frameShown.format);
    setWindow(vp, center, width);
  },
  zoom(vp, d, dx, dy) {
    zoomAt(vp, d.start, (d.scale * Math.exp(-dy / 150)) / vp.view.scale);
  },
  pan(vp, d, dx, dy) {
    vp.view.ox = d.ox + dx;
    vp.view.oy = d.oy + dy;
    vp.view.fitted = false;
    requestDraw(vp);
  },
  draw(vp, d, dx, dy, point) {
    drawing.note.points[d.point] = imagePoint(vp, point);
    requestDraw(vp);
  },
};

export function onPointerDown(vp, event) {
  setActive(vp);
  if (!vp.frameShown || event.button > 2) return;
  event.preventDefault();
  vp.canvas.focus({ preventScroll: true });
  vp.canvas.setPointerCapture(event.pointerId);
  const start = pointerPosition(vp, event);
  const frame = measurableFrame(vp);
  const at = frame ? imagePoint(vp, start) : null;
  if (event.button === 0 && drawing?.stage === "third" && drawing.vp === vp) {
    drawing.note.points[2] = at;
    drag = { mode: "draw", point: 2, start };
    return;
  }
  cancelDrawing();
  const mode = BUTTON_MODES[event.button] ?? state.tool;
  drag = null;
  if (event.button === 0 && frame && selectAt(vp, at)) return;
  if (DRAWN.has(mode)) {
    if (!frame) return;
    drawing = { vp, stage: "drag", note: { kind: mode, points: [at, { ...at }] } };
    drag = { mode: "draw", point: 1, start };
  } else if (mode === "probe") {
    if (frame) pin(vp, frame, at);
  } else if (mode !== "wl" || vp.frameShown.window) {
    const { center, width } = vp.window ?? {};
    drag = { mode, start, center, width, scale: vp.view.scale, ox: vp.view.ox, oy: vp.view.oy };
  }
}

/** Select the note under `at` on `vp`'s slice (deselect when there is none); whether one was hit. */
function selectAt(vp, at) {
  const hit = store.hit(sliceOf(vp).key, at, HIT_PX / vp.view.scale);
  if (hit || store.selected !== null) store.select(hit?.id ?? null);
  return Boolean(hit);
}

export function onPointerMove(vp, event) {
  if (!vp.frameShown) return;
  const point = pointerPosition(vp, event);
  if (drag) {
    dragActions[drag.mode === "draw" ? "draw" : drag.mode](vp, drag, point.x - drag.start.x, point.y - drag.start.y, point);
    return;
  }
  if (drawing?.stage === "third" && drawing.vp === vp) {
    drawing.note.points[2] = imagePoint(vp, point);
    requestDraw(vp);
  }
  if (state.tool === "probe") hoverProbe(vp, point);
}

export function onPointerUp(vp) {
  const finished = drag?.mode === "draw" ? drawing : null;
  drag = null;
  if (!finished || finished.vp !== vp) return;
  const { note } = finished;
  if (note.kind === "angle" && finished.stage === "drag") {
    if (segmentLength(note.points[0], note.points[1], null) < 1) cancelDrawing();
    else {
      finished.stage = "third";
      note.points[2] = { ...note.points[1] };
    }
    return;
  }
  finish(vp, note);
}

/** Keep the note being drawn on `vp`'s slice, unless it is too small to mean anything. */
function finish(vp, note) {
  drawing = null;
  const frame = measurableFrame(vp);
  const [a, b] = note.points;
  const tiny = note.kind === "length" || note.kind === "angle"
    ? segmentLength(a, b, null) < 0.5
    : Math.abs(b.x - a.x) < 0.5 || Math.abs(b.y - a.y) < 0.5;
  if (!frame || tiny) {
    requestDraw(vp);
    return;
  }
  const stats = note.kind === "ellipse" || note.kind === "rect" ? roiStats(frame, note.kind, a, b) : null;
  keep(vp, frame, { ...note, stats });
}

function keep(vp, frame, note) {
  const slice = sliceOf(vp);
  store.add(slice.key, {
    ...note,
    spacing: frame.spacing,
    unit: valueUnit(vp),
    seriesUid: vp.record.uid,
    where: slice.name,
  });
}

function pin(vp, frame, at) {
  const value = probe(frame, at);
  if (value) keep(vp, frame, { kind: "probe", points: [at], value: value.value });
}

function hoverProbe(vp, point) {
  const frame = measurableFrame(vp);
  const at = frame ? imagePoint(vp, point) : null;
  const value = at ? probe(frame, at) : null;
  vp.hover = value ? { point: at, x: value.x, y: value.y, value: value.value, unit: valueUnit(vp) } : null;
  requestDraw(vp);
}

/** Forget the note being drawn (a new slice, series or tool, or Escape). */
export function cancelDrawing() {
  if (!drawing) return;
  const { vp } = drawing;
  drawing = null;
  drag = drag?.mode === "draw" ? null : drag;
  requestDraw(vp);
}

/** Delete the selected note; whether there was one. */
export function deleteSelected() {
  return store.selected !== null && store.remove(store.selected);
}

/** Make `name` the left button's tool. */
export function setTool(name) {
  state.tool = name;
  cancelDrawing();
  for (const vp of viewports) {
    vp.cell.dataset.tool = name;
    if (name !== "probe" && vp.hover) {
      vp.hover = null;
      requestDraw(vp);
    }
  }
  for (const button of root.querySelectorAll("[data-tool]")) {
    button.setAttribute("aria-pressed", String(button.dataset.tool === name));
  }
}

/** Leave the probe's readout of viewports the pointer left. */
export function leaveViewport(vp) {
  if (!vp.hover) return;
  vp.hover = null;
  requestDraw(vp);
}
