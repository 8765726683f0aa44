/*
 * Linked viewports (the Link toggle): scrolling, zoom and window of the active viewport
 * follow into the other shown viewports of the same frame of reference. Scrolling goes
 * by slice position along the normal (the nearest slice of a parallel series), never by
 * index; zoom keeps the same mm per screen pixel; the window is copied. When a frame
 * arrives that tells where another slice lies, the link is made again.
 */
import { el, state } from "./context.js";
import { nearestSlice, parallel, sameFrame } from "./planes.js";
import { requestDraw } from "./draw.js";
import { showSlice } from "./series.js";
import { active, shownViewports, sliceOf, syncState } from "./viewports.js";

/** The other shown viewports whose slice shares `vp`'s frame of reference (with both planes). */
function partners(vp) {
  const source = sliceOf(vp)?.plane;
  if (!state.linked || !source) return [];
  return shownViewports()
    .filter((other) => other !== vp && sameFrame(source, sliceOf(other)?.plane))
    .map((other) => ({ other, source, target: sliceOf(other).plane }));
}

/** Bring the linked viewports to the slice nearest `vp`'s (parallel planes only). */
export function linkSlices(vp) {
  for (const { other, source, target } of partners(vp)) {
    if (!parallel(source, target)) continue;
    const index = nearestSlice(source, other.record.slices.map((slice) => slice.plane ?? null));
    if (index !== null && index !== other.index) showSlice(other, index, { link: false });
  }
}

/** Give the linked viewports `vp`'s window. */
export function linkWindow(vp) {
  if (!vp.window) return;
  for (const { other } of partners(vp)) {
    if (!other.frameShown?.window) continue;
    other.window = { ...vp.window };
    other.needsWindow = false;
    requestDraw(other, true);
  }
}

/** Give the linked viewports `vp`'s scale in mm per screen pixel. */
export function linkZoom(vp) {
  for (const { other, source, target } of partners(vp)) {
    other.view.scale = (vp.view.scale * target.spacing.col) / source.spacing.col;
    other.view.fitted = false;
    requestDraw(other);
  }
}

/** A frame arrived for `slice`: where it lies may change what a linked viewport shows. */
export function frameArrivedFor(slice) {
  if (!state.linked) return;
  const owner = shownViewports().find((vp) => vp !== active && vp.record?.slices?.includes(slice));
  if (owner || sliceOf(active) === slice) linkSlices(active);
}

/** Turn linking on or off (on: link the others to the active viewport now). */
export function toggleLink() {
  state.linked = !state.linked;
  el.link.setAttribute("aria-pressed", String(state.linked));
  if (state.linked) {
    linkSlices(active);
    linkWindow(active);
  }
  requestDraw();
  syncState();
}
