/*
 * Cine: play the series one image per frame interval (the frame's own Frame Time, else
 * DEFAULT_FPS), looping, waiting for the next image rather than skipping it.
 */
import { el, state } from "./context.js";
import { frameShown } from "./draw.js";
import { cache, plan } from "./prefetch.js";
import { current, showSlice } from "./series.js";

const DEFAULT_FPS = 25;

export const cine = { playing: false, last: 0 };

function frameInterval() {
  return frameShown?.frameTimeMs > 0 ? frameShown.frameTimeMs : 1000 / DEFAULT_FPS;
}

/** Show the shown frame's rate beside the Play button. */
export function updateCineRate() {
  const fps = 1000 / frameInterval();
  el.cineFps.textContent = state.total > 1 ? `${Number(fps.toFixed(1))} fps` : "";
}

export function startCine() {
  if (state.total < 2) return;
  cine.playing = true;
  cine.last = performance.now();
  el.cine.setAttribute("aria-pressed", "true");
  el.cine.textContent = "Pause";
  plan();
  requestAnimationFrame(cineTick);
}

export function stopCine() {
  cine.playing = false;
  el.cine.setAttribute("aria-pressed", "false");
  el.cine.textContent = "Play";
}

/** Advance one image per frame interval; wait (not skip) when the next is not loaded. */
function cineTick(now) {
  if (!cine.playing) return;
  const interval = frameInterval();
  if (now - cine.last >= interval) {
    const next = (state.index + 1) % state.total;
    if (cache.has(current.slices[next].key)) {
      cine.last = now - cine.last >= 2 * interval ? now : cine.last + interval;
      showSlice(next);
    }
  }
  requestAnimationFrame(cineTick);
}
