/*
 * Drawing the viewport: the shown frame is windowed into an offscreen canvas (again only
 * when the frame, window or invert changes), then drawn at the view's zoom and pan, once
 * per animation frame at most, with the measurement and the corner annotations.
 */
import { el, scriptStart, state } from "./context.js";
import { fitView, imageBox } from "./geometry.js";
import { paint, roundForDisplay } from "./windowing.js";
import { updateCineRate } from "./cine.js";
import { currentFrame, loadThumbnails } from "./series.js";
import { drawMeasurement } from "./tools.js";

const offscreen = document.createElement("canvas");
export const view = { scale: 1, ox: 0, oy: 0, fitted: true, width: 1, height: 1, dpr: 1 };
export let frameShown = null; // the frame now in `offscreen`
let needsWindow = true;       // take the window from the next frame drawn (new series)
let repaint = false;          // window or invert changed: re-render `offscreen`
let drawPending = false;
let inverted = false;

const imageDatas = new WeakMap();

/** Draw the frame, windowed, into `canvas` at its native size. */
export function renderTo(canvas, frame, levels, invertView) {
  if (canvas.width !== frame.cols || canvas.height !== frame.rows) {
    canvas.width = frame.cols;
    canvas.height = frame.rows;
  }
  const ctx = canvas.getContext("2d");
  let image = imageDatas.get(canvas);
  if (!image || image.width !== frame.cols || image.height !== frame.rows) {
    image = ctx.createImageData(frame.cols, frame.rows);
    imageDatas.set(canvas, image);
  }
  const invert = invertView !== (frame.photometric === "MONOCHROME1");
  paint(frame, new Uint32Array(image.data.buffer), levels?.center, levels?.width, invert);
  ctx.putImageData(image, 0, 0);
}

/** Draw at the next animation frame; `windowChanged` re-renders the frame itself. */
export function requestDraw(windowChanged = false) {
  repaint = repaint || windowChanged;
  if (drawPending) return;
  drawPending = true;
  requestAnimationFrame(draw);
}

/** A new series: nothing shown, the next frame's own window, fitted. */
export function resetDisplay() {
  frameShown = null;
  needsWindow = true;
  state.center = null;
  state.width = null;
  view.fitted = true;
}

/** Flip invert; the new setting. */
export function toggleInvert() {
  inverted = !inverted;
  requestDraw(true);
  return inverted;
}

function draw() {
  drawPending = false;
  const frame = currentFrame() ?? frameShown;
  if (frame && (frame !== frameShown || repaint)) {
    if (needsWindow) adoptWindow(frame);
    renderTo(offscreen, frame, frame.window && { center: state.center, width: state.width }, inverted);
    frameShown = frame;
    repaint = false;
    updateCineRate();
  }
  if (frameShown && view.fitted) fitView(view, frameShown);
  composite();
  drawMeasurement();
  updateAnnotations();
  if (frameShown) {
    state.framesDrawn += 1;
    if (!state.ready) markReady();
  }
}

function adoptWindow(frame) {
  needsWindow = false;
  state.center = frame.window?.center ?? null;
  state.width = frame.window?.width ?? null;
}

function markReady() {
  state.ready = true;
  state.firstImageMs = performance.now() - scriptStart;
  document.body.dataset.viewer = "ready";
  loadThumbnails();
}

function composite() {
  const ctx = el.viewport.getContext("2d");
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, el.viewport.width, el.viewport.height);
  if (!frameShown) return;
  ctx.setTransform(view.dpr, 0, 0, view.dpr, 0, 0);
  const box = imageBox(view, frameShown);
  ctx.drawImage(offscreen, box.x, box.y, box.w, box.h);
}

function updateAnnotations() {
  const grayscale = frameShown?.window && state.center !== null;
  el.ovWindow.textContent = grayscale
    ? `C ${roundForDisplay(state.center)} W ${roundForDisplay(state.width)}`
    : "";
  el.ovZoom.textContent = frameShown ? `Zoom ${Math.round(view.scale * 100)}%` : "";
}

/** Size both canvases to the stage (in device pixels) and redraw. */
export function resizeCanvases() {
  const rect = el.stage.getBoundingClientRect();
  view.width = Math.max(1, rect.width);
  view.height = Math.max(1, rect.height);
  view.dpr = window.devicePixelRatio || 1;
  for (const canvas of [el.viewport, el.overlay]) {
    canvas.width = Math.round(view.width * view.dpr);
    canvas.height = Math.round(view.height * view.dpr);
  }
  requestDraw();
}
