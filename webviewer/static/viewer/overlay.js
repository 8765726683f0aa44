/*
 * Each viewport's overlay canvas: the annotations of the slice it shows (the selected
 * one highlighted, each with its label), the one being drawn, the probe's marker, the
 * reference line of the active viewport's slice where the planes differ, and the scale
 * bar (when the pixel spacing is known).
 */
import { toScreen } from "./geometry.js";
import { labelLines } from "./measure.js";
import { referenceLine } from "./planes.js";
import { displayed, measurableFrame } from "./draw.js";
import { drawing, store } from "./tools.js";
import { active, sliceOf } from "./viewports.js";

const COLOUR = "#ffd84d";
const SELECTED = "#5fd3ff";
const REFERENCE = "#7cfc9a";
const BAR_STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500];

/** Redraw `vp`'s overlay. */
export function drawOverlay(vp) {
  const ctx = vp.overlay.getContext("2d");
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, vp.overlay.width, vp.overlay.height);
  vp.reference = null;
  if (!vp.frameShown) return;
  ctx.setTransform(vp.view.dpr, 0, 0, vp.view.dpr, 0, 0);
  ctx.font = "13px system-ui, sans-serif";
  const frame = displayed(vp.frameShown);
  const screen = (p) => toScreen(vp.view, frame, p);
  drawReference(ctx, vp, screen);
  drawScaleBar(ctx, vp, frame);
  if (!measurableFrame(vp)) return;
  const slice = sliceOf(vp);
  for (const note of store.onSlice(slice.key)) {
    drawNote(ctx, note, screen, note.id === store.selected ? SELECTED : COLOUR);
  }
  if (drawing?.vp === vp) drawNote(ctx, drawing.note, screen, COLOUR);
  if (vp.hover) drawCross(ctx, screen(vp.hover.point), COLOUR);
}

function drawNote(ctx, note, screen, colour) {
  const points = note.points.map(screen);
  ctx.strokeStyle = colour;
  ctx.fillStyle = colour;
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  if (note.kind === "length" || note.kind === "angle") {
    points.forEach((p, i) => (i === 0 ? ctx.moveTo(p.x, p.y) : ctx.lineTo(p.x, p.y)));
  } else if (note.kind === "rect") {
    const [a, b] = points;
    ctx.rect(Math.min(a.x, b.x), Math.min(a.y, b.y), Math.abs(b.x - a.x), Math.abs(b.y - a.y));
  } else if (note.kind === "ellipse") {
    const [a, b] = points;
    ctx.ellipse((a.x + b.x) / 2, (a.y + b.y) / 2, Math.abs(b.x - a.x) / 2, Math.abs(b.y - a.y) / 2, 0, 0, 2 * Math.PI);
  }
  ctx.stroke();
  if (note.kind === "probe") drawCross(ctx, points[0], colour);
  if (note.kind === "length" || note.kind === "angle") {
    for (const p of points) dot(ctx, p);
  }
  const lines = labelLines(note, note.spacing, note.unit);
  const anchor = labelAnchor(note.kind, points);
  lines.forEach((line, i) => outlinedText(ctx, line, anchor.x, anchor.y + i * 15, colour));
}

function labelAnchor(kind, points) {
  if (kind === "angle") return { x: points[1].x + 10, y: points[1].y - 8 };
  if (kind === "ellipse" || kind === "rect") {
    const [a, b] = points;
    return { x: Math.max(a.x, b.x) + 6, y: Math.min(a.y, b.y) + 10 };
  }
  const last = points[points.length - 1];
  return { x: last.x + 8, y: last.y - 8 };
}

function dot(ctx, p) {
  ctx.beginPath();
  ctx.arc(p.x, p.y, 3, 0, 2 * Math.PI);
  ctx.fill();
}

function drawCross(ctx, p, colour) {
  ctx.strokeStyle = colour;
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  ctx.moveTo(p.x - 6, p.y);
  ctx.lineTo(p.x + 6, p.y);
  ctx.moveTo(p.x, p.y - 6);
  ctx.lineTo(p.x, p.y + 6);
  ctx.stroke();
}

function outlinedText(ctx, text, x, y, colour) {
  ctx.lineWidth = 3;
  ctx.strokeStyle = "#000";
  ctx.fillStyle = colour;
  ctx.strokeText(text, x, y);
  ctx.fillText(text, x, y);
}

/** The line where the active viewport's slice cuts this one's (same frame of reference, planes not parallel). */
export function referenceFor(vp) {
  if (vp === active) return null;
  const source = sliceOf(active)?.plane;
  const target = sliceOf(vp)?.plane;
  return source && target ? referenceLine(source, target) : null;
}

function drawReference(ctx, vp, screen) {
  const line = referenceFor(vp);
  vp.reference = line;
  if (!line) return;
  const a = screen(line.from);
  const b = screen(line.to);
  ctx.strokeStyle = REFERENCE;
  ctx.lineWidth = 1.5;
  ctx.setLineDash([6, 4]);
  ctx.beginPath();
  ctx.moveTo(a.x, a.y);
  ctx.lineTo(b.x, b.y);
  ctx.stroke();
  ctx.setLineDash([]);
}

/** A vertical bar of a round length (up to a third of the viewport's height) by the right edge. */
function drawScaleBar(ctx, vp, frame) {
  if (!frame.spacing || vp.frameShown.preview) return;
  const perMm = vp.view.scale / frame.spacing.col; // CSS pixels per mm (rows are drawn to scale)
  const mm = BAR_STEPS.filter((step) => step * perMm <= vp.view.height / 3).pop();
  if (!mm) return;
  const length = mm * perMm;
  const x = vp.view.width - 30;
  const top = (vp.view.height - length) / 2;
  ctx.strokeStyle = "#f3f5f7";
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  ctx.moveTo(x, top);
  ctx.lineTo(x, top + length);
  const ticks = mm / (mm <= 10 ? mm : mm <= 100 ? 10 : 50); // a tick per cm up to 10 cm
  for (let i = 0; i <= ticks; i += 1) {
    const y = top + (i * length) / ticks;
    const half = i === 0 || i === ticks ? 6 : 3;
    ctx.moveTo(x - half, y);
    ctx.lineTo(x, y);
  }
  ctx.stroke();
  ctx.textAlign = "right";
  outlinedText(ctx, mm >= 10 ? `${mm / 10} cm` : `${mm} mm`, x - 8, top + length + 4, "#f3f5f7");
  ctx.textAlign = "left";
}
