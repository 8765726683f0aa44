/*
 * The mouse tools: window/level, zoom, pan and measure by dragging (the middle button
 * pans and the right one zooms, whatever the tool), the window presets, zooming about a
 * point, and the length measurement: one line in image pixel coordinates, its label in
 * the toolbar and its drawing on the overlay canvas (cleared with each new slice).
 */
import { el, root, state } from "./context.js";
import { lengthOf, measureText, toImage, toScreen, zoomView } from "./geometry.js";
import { draggedWindow } from "./windowing.js";
import { frameShown, requestDraw, view } from "./draw.js";
import { currentFrame } from "./series.js";

const BUTTON_MODES = { 1: "pan", 2: "zoom" }; // middle and right drag, whatever the tool

let drag = null;
let tool = "wl";

function setWindow(center, width) {
  if (!frameShown?.window) return;
  state.center = center;
  state.width = width;
  requestDraw(true);
}

/** A preset button: its data-center and data-width, or (data-preset="default") the image's own. */
export function applyPreset(button) {
  if (button.dataset.preset === "default") {
    const own = (currentFrame() ?? frameShown)?.window;
    if (own) setWindow(own.center, own.width);
  } else {
    setWindow(Number(button.dataset.center), Number(button.dataset.width));
  }
}

/** Zoom by `factor`, keeping the image point under `point` (viewport CSS pixels) in place. */
export function zoomAt(point, factor) {
  if (!frameShown) return;
  zoomView(view, frameShown, point, factor);
  requestDraw();
}

const dragActions = {
  wl(drag, dx, dy) {
    const { center, width } = draggedWindow(drag, dx, dy, frameShown.format);
    setWindow(center, width);
  },
  zoom(drag, dx, dy) {
    zoomAt(drag.start, (drag.scale * Math.exp(-dy / 150)) / view.scale);
  },
  pan(drag, dx, dy) {
    view.ox = drag.ox + dx;
    view.oy = drag.oy + dy;
    view.fitted = false;
    requestDraw();
  },
  measure(drag, dx, dy, point) {
    setMeasurement({ from: drag.anchor, to: toImage(view, frameShown, point) });
    requestDraw();
  },
};

/** The event's position in the viewport, in CSS pixels. */
export function pointerPosition(event) {
  const rect = el.viewport.getBoundingClientRect();
  return { x: event.clientX - rect.left, y: event.clientY - rect.top };
}

export function onPointerDown(event) {
  if (!frameShown || event.button > 2) return;
  event.preventDefault();
  el.viewport.focus({ preventScroll: true });
  el.viewport.setPointerCapture(event.pointerId);
  const start = pointerPosition(event);
  drag = {
    mode: BUTTON_MODES[event.button] ?? tool,
    start,
    anchor: toImage(view, frameShown, start),
    center: state.center,
    width: state.width,
    scale: view.scale,
    ox: view.ox,
    oy: view.oy,
  };
  if (drag.mode === "wl" && !frameShown.window) drag = null;
}

export function onPointerMove(event) {
  if (!drag || !frameShown) return;
  const point = pointerPosition(event);
  dragActions[drag.mode](drag, point.x - drag.start.x, point.y - drag.start.y, point);
}

export function onPointerUp() {
  if (drag?.mode === "measure" && measurement && lengthOf(measurement, null) < 0.5) clearMeasurement();
  drag = null;
}

/** Make `name` the left button's tool. */
export function setTool(name) {
  tool = name;
  el.stage.dataset.tool = name;
  for (const button of root.querySelectorAll("[data-tool]")) {
    button.setAttribute("aria-pressed", String(button.dataset.tool === name));
  }
}

// ---------------------------------------------------------------- measurement

export let measurement = null; // { from, to } in image pixel coordinates

/** Measure `line` on the shown frame. */
export function setMeasurement(line) {
  measurement = line;
  el.measureLabel.textContent = measureText(line, frameShown);
}

export function clearMeasurement() {
  measurement = null;
  el.measureLabel.textContent = "";
}

/** Redraw the overlay: the line, its ends and its label, or nothing. */
export function drawMeasurement() {
  const ctx = el.overlay.getContext("2d");
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, el.overlay.width, el.overlay.height);
  if (!measurement || !frameShown) return;
  ctx.setTransform(view.dpr, 0, 0, view.dpr, 0, 0);
  const a = toScreen(view, frameShown, measurement.from);
  const b = toScreen(view, frameShown, measurement.to);
  ctx.strokeStyle = "#ffd84d";
  ctx.fillStyle = "#ffd84d";
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  ctx.moveTo(a.x, a.y);
  ctx.lineTo(b.x, b.y);
  ctx.stroke();
  for (const end of [a, b]) {
    ctx.beginPath();
    ctx.arc(end.x, end.y, 3, 0, 2 * Math.PI);
    ctx.fill();
  }
  ctx.font = "13px system-ui, sans-serif";
  ctx.lineWidth = 3;
  ctx.strokeStyle = "#000";
  const label = measureText(measurement, frameShown);
  ctx.strokeText(label, b.x + 8, b.y - 8);
  ctx.fillText(label, b.x + 8, b.y - 8);
}
