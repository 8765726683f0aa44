/*
 * Cine: play the active viewport's series one image per frame interval (the frame's own
 * Frame Time, else DEFAULT_FPS), looping, waiting for the next image rather than
 * skipping it. Choosing another viewport stops it.
 */
import { el } from "./context.js";
import { cache, plan } from "./prefetch.js";
import { showSlice } from "./series.js";
import { active } from "./viewports.js";

const DEFAULT_FPS = 25;

export const cine = { playing: false, last: 0, vp: null };

function frameInterval() {
  const frame = active.frameShown;
  return frame?.frameTimeMs > 0 ? frame.frameTimeMs : 1000 / DEFAULT_FPS;
}

/** Show the active viewport's rate beside the Play button. */
export function updateCineRate() {
  const fps = 1000 / frameInterval();
  el.cineFps.textContent = active.total > 1 ? `${Number(fps.toFixed(1))} fps` : "";
}

export function startCine() {
  if (active.total < 2) return;
  cine.playing = true;
  cine.vp = active;
  cine.last = performance.now();
  el.cine.setAttribute("aria-pressed", "true");
  el.cine.textContent = "Pause";
  plan();
  requestAnimationFrame(cineTick);
}

export function stopCine() {
  cine.playing = false;
  cine.vp = null;
  el.cine.setAttribute("aria-pressed", "false");
  el.cine.textContent = "Play";
}

export function toggleCine() {
  if (cine.playing) stopCine();
  else startCine();
}

/** Advance one image per frame interval; wait (not skip) when the next is not loaded. */
function cineTick(now) {
  if (!cine.playing || cine.vp !== active) return;
  const interval = frameInterval();
  if (now - cine.last >= interval) {
    const next = (active.index + 1) % active.total;
    if (cache.has(active.record.slices[next].key)) {
      cine.last = now - cine.last >= 2 * interval ? now : cine.last + interval;
      showSlice(active, next);
    }
  }
  requestAnimationFrame(cineTick);
}
