/*
 * The annotation store (pure, no DOM): every length, angle, ROI and probe made while the
 * study is open, each on one slice (instance x frame, by slice key), in image coordinates;
 * which one is selected; finding the one under a point; removing one. Listeners hear of
 * every change (the list panel and the overlays redraw).
 */
import { box, insideRoi } from "./measure.js";

export class AnnotationStore {
  constructor() {
    this.notes = new Map(); // id -> note, in creation order
    this.selected = null;
    this.nextId = 1;
    this.listeners = [];
  }

  /** Call `listener` after every change. */
  onChange(listener) {
    this.listeners.push(listener);
  }

  changed() {
    for (const listener of this.listeners) listener();
  }

  /** Keep `note` ({ kind, points, ... }) on slice `sliceKey`; the note, with its new id. */
  add(sliceKey, note) {
    const kept = { ...note, id: this.nextId, sliceKey };
    this.nextId += 1;
    this.notes.set(kept.id, kept);
    this.selected = kept.id;
    this.changed();
    return kept;
  }

  /** Replace fields of note `id` (a note being drawn). */
  update(id, fields) {
    const note = this.notes.get(id);
    if (!note) return;
    Object.assign(note, fields);
    this.changed();
  }

  /** Forget note `id`; whether there was one. */
  remove(id) {
    const removed = this.notes.delete(id);
    if (this.selected === id) this.selected = null;
    if (removed) this.changed();
    return removed;
  }

  /** Select note `id` (null: none). */
  select(id) {
    this.selected = this.notes.has(id) ? id : null;
    this.changed();
  }

  get(id) {
    return this.notes.get(id) ?? null;
  }

  /** The notes on slice `sliceKey`, oldest first. */
  onSlice(sliceKey) {
    return [...this.notes.values()].filter((note) => note.sliceKey === sliceKey);
  }

  /** Every note, oldest first. */
  all() {
    return [...this.notes.values()];
  }

  /** The newest note on `sliceKey` within `tolerance` image pixels of `point`, or null. */
  hit(sliceKey, point, tolerance) {
    const notes = this.onSlice(sliceKey).reverse();
    return notes.find((note) => distanceTo(note, point) <= tolerance) ?? null;
  }
}

/** The distance from `p` to segment a-b. */
export function segmentDistance(p, a, b) {
  const dx = b.x - a.x;
  const dy = b.y - a.y;
  const squared = dx * dx + dy * dy;
  const t = squared === 0 ? 0 : Math.max(0, Math.min(1, ((p.x - a.x) * dx + (p.y - a.y) * dy) / squared));
  return Math.hypot(p.x - (a.x + t * dx), p.y - (a.y + t * dy));
}

/** How far `p` is from `note` (0 inside an ROI). */
export function distanceTo(note, p) {
  const [a, b, c] = note.points;
  switch (note.kind) {
    case "length":
      return segmentDistance(p, a, b);
    case "angle":
      return Math.min(segmentDistance(p, a, b), c ? segmentDistance(p, b, c) : Infinity);
    case "ellipse":
    case "rect":
      return insideRoi(note.kind, box(a, b), p.x, p.y) ? 0 : edgeDistance(p, a, b);
    default:
      return Math.hypot(p.x - a.x, p.y - a.y);
  }
}

/** The distance from `p` to the edges of the rectangle with corners `a` and `b`. */
function edgeDistance(p, a, b) {
  const c = { x: a.x, y: b.y };
  const d = { x: b.x, y: a.y };
  return Math.min(segmentDistance(p, a, c), segmentDistance(p, c, b), segmentDistance(p, b, d), segmentDistance(p, d, a));
}
