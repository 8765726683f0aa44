/*
 * Drawing the viewports: each viewport's shown frame is windowed into its offscreen
 * canvas (again only when the frame, window or invert changes), then drawn at its zoom
 * and pan, at most once per animation frame for all viewports, followed by its overlay
 * (annotations, reference line, scale bar) and corner texts. A low-resolution preview
 * stands in, scaled to the full size, until the full frame arrives.
 */
import { scriptStart, state } from "./context.js";
import { fitView, imageBox } from "./geometry.js";
import { paint } from "./windowing.js";
import { updateCineRate } from "./cine.js";
import { updateCorners } from "./corners.js";
import { drawOverlay } from "./overlay.js";
import { cache, previews } from "./prefetch.js";
import { loadThumbnails } from "./series.js";
import { active, shownViewports, sliceOf, syncState } from "./viewports.js";
import { refreshPresets } from "./toolbar.js";

const pending = new Set();
let scheduled = false;
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

/** Draw `vp` (every shown viewport without one) at the next animation frame. */
export function requestDraw(vp = null, windowChanged = false) {
  for (const target of vp ? [vp] : shownViewports()) {
    target.repaint = target.repaint || windowChanged;
    pending.add(target);
  }
  if (scheduled) return;
  scheduled = true;
  requestAnimationFrame(drawPending);
}

/** The full frame of the slice `vp` shows when it is in the cache, or null. */
export function frameOf(vp) {
  const slice = sliceOf(vp);
  return slice ? cache.get(slice.key) ?? null : null;
}

/** The frame drawn in `vp` when it is the full frame of its current slice, else null (no tools on it). */
export function measurableFrame(vp) {
  const slice = sliceOf(vp);
  return slice && vp.shownKey === slice.key && !vp.frameShown?.preview ? vp.frameShown : null;
}

/** The size the image of `frame` is shown at: a preview is shown as large as its full frame. */
export function displayed(frame) {
  return frame.preview ? { ...frame, rows: frame.fullRows, cols: frame.fullCols } : frame;
}

/** A new series in `vp`: nothing shown, the next frame's own window, fitted. */
export function resetDisplay(vp) {
  vp.frameShown = null;
  vp.shownKey = null;
  vp.needsWindow = true;
  vp.window = null;
  vp.view.fitted = true;
}

function drawPending() {
  scheduled = false;
  const targets = [...pending];
  pending.clear();
  for (const vp of targets) if (!vp.cell.hidden) drawViewport(vp);
  syncState();
}

function nextFrame(vp) {
  const slice = sliceOf(vp);
  if (!slice || slice.document) return { frame: null, key: null };
  const full = cache.get(slice.key);
  if (full) return { frame: full, key: slice.key };
  const preview = previews.get(slice.key);
  if (preview) return { frame: preview, key: slice.key };
  return { frame: vp.record && vp.frameShown ? vp.frameShown : null, key: vp.shownKey };
}

function drawViewport(vp) {
  const { frame, key } = nextFrame(vp);
  if (frame && (frame !== vp.frameShown || vp.repaint)) {
    if (vp.needsWindow && !frame.preview) adoptWindow(vp, frame);
    const levels = frame.window && vp.window ? vp.window : frame.window;
    renderTo(vp.offscreen, frame, levels, vp.inverted);
    vp.frameShown = frame;
    vp.repaint = false;
    if (vp === active) {
      updateCineRate();
      refreshPresets();
    }
  }
  if (!frame) vp.frameShown = null;
  vp.shownKey = frame ? key : null;
  if (vp.frameShown && vp.view.fitted) fitView(vp.view, displayed(vp.frameShown));
  composite(vp);
  drawOverlay(vp);
  updateCorners(vp);
  if (vp.frameShown) {
    state.framesDrawn += 1;
    if (!state.ready) markReady();
  }
}

function adoptWindow(vp, frame) {
  vp.needsWindow = false;
  vp.window = frame.window ? { ...frame.window } : null;
}

function markReady() {
  state.ready = true;
  state.firstImageMs = performance.now() - scriptStart;
  document.body.dataset.viewer = "ready";
  loadThumbnails();
}

function composite(vp) {
  const ctx = vp.canvas.getContext("2d");
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, vp.canvas.width, vp.canvas.height);
  if (!vp.frameShown) return;
  ctx.setTransform(vp.view.dpr, 0, 0, vp.view.dpr, 0, 0);
  const box = imageBox(vp.view, displayed(vp.frameShown));
  ctx.drawImage(vp.offscreen, box.x, box.y, box.w, box.h);
}

/** Size every shown viewport's canvases to its cell (in device pixels) and redraw. */
export function resizeCanvases() {
  for (const vp of shownViewports()) {
    const rect = vp.cell.getBoundingClientRect();
    vp.view.width = Math.max(1, rect.width);
    vp.view.height = Math.max(1, rect.height);
    vp.view.dpr = window.devicePixelRatio || 1;
    for (const canvas of [vp.canvas, vp.overlay]) {
      canvas.width = Math.round(vp.view.width * vp.view.dpr);
      canvas.height = Math.round(vp.view.height * vp.view.dpr);
    }
  }
  requestDraw();
}
