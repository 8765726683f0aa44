/*
 * Filling a new layout: each shown viewport that shows nothing yet gets the study's next
 * series that no viewport shows (then any other listed series, then the active
 * viewport's), so that 1x2 or 2x2 compares series at once.
 */
import { report } from "./context.js";
import { records, showSeries } from "./series.js";
import { active, shownViewports } from "./viewports.js";

/** Give every empty shown viewport a series. */
export function fillLayout() {
  const shown = shownViewports();
  const used = new Set(shown.map((vp) => vp.record).filter(Boolean));
  for (const vp of shown) {
    if (vp.record) continue;
    const next =
      records.find((r) => r.study.current && !used.has(r)) ?? records.find((r) => !used.has(r)) ?? active.record;
    if (!next) continue;
    used.add(next);
    showSeries(vp, next).catch(report);
  }
}
