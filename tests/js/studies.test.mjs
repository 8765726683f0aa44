// The study list's dates and times: ISO values from the server, shown in the browser's locale.
import assert from "node:assert/strict";
import { test } from "node:test";

import { formatIso, parseIso } from "../../webviewer/static/studies.js";

test("an ISO date and a date-time are read as UTC moments", () => {
  assert.equal(parseIso("1970-01-01").getTime(), 0);
  assert.equal(parseIso("2024-02-20T14:30:15").toISOString(), "2024-02-20T14:30:15.000Z");
});

test("what is not a valid ISO date or date-time is refused", () => {
  for (const value of ["2024-02-30", "2024-13-01", "20240220", "2024-02-20T14:30", "", "1970-01-01Z"]) {
    assert.equal(parseIso(value), null, value);
    assert.equal(formatIso(value, "date", "en-GB"), null, value);
  }
});

test("dates follow the locale's conventions", () => {
  assert.equal(formatIso("1970-01-01", "date", "en-GB"), "1 Jan 1970");
  assert.equal(formatIso("1970-01-01", "date", "en-US"), "Jan 1, 1970");
  assert.equal(formatIso("1970-01-01", "date", "de-DE"), "01.01.1970");
});

test("date-times add the time of day as the scanner wrote it, whatever the zone of the browser", () => {
  assert.equal(formatIso("2024-02-20T14:30:15", "datetime", "en-GB"), "20 Feb 2024, 14:30");
  assert.equal(formatIso("2024-02-20T14:30:15", "datetime", "de-DE"), "20.02.2024, 14:30");
  assert.match(formatIso("2024-02-20T00:05:00", "datetime", "en-US"), /^Feb 20, 2024,? 12:05\sAM$/);
});
