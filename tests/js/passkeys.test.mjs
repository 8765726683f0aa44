// The passkey script's conversions: base64url text from the server to bytes for WebAuthn, and back.
import assert from "node:assert/strict";
import { test } from "node:test";

import { creationOptions, fromBase64url, requestOptions, toBase64url } from "../../webviewer/static/passkeys.js";

test("base64url text without padding becomes the bytes it encodes, and back", () => {
  const bytes = Uint8Array.from([0, 1, 250, 251, 252, 253, 254, 255, 62, 63]);
  const text = toBase64url(bytes);
  assert.equal(text, "AAH6-_z9_v8-Pw");
  assert.ok(!/[+/=]/.test(text));
  assert.deepEqual(fromBase64url(text), bytes);
  assert.deepEqual(toBase64url(bytes.buffer), text);
  for (const length of [0, 1, 2, 3, 4, 5]) {
    const some = Uint8Array.from({ length }, (_, i) => 255 - i);
    assert.deepEqual(fromBase64url(toBase64url(some)), some, `length ${length}`);
  }
});

test("creation options carry the challenge, the user handle and excluded ids as bytes", () => {
  const options = creationOptions({
    rp: { id: "localhost", name: "mini-PACS" },
    user: { id: "AQID", name: "doc", displayName: "doc" },
    challenge: "BAUG",
    excludeCredentials: [{ id: "Bwg", type: "public-key", transports: ["internal"] }],
  });
  assert.deepEqual(options.challenge, Uint8Array.from([4, 5, 6]));
  assert.deepEqual(options.user.id, Uint8Array.from([1, 2, 3]));
  assert.equal(options.user.name, "doc");
  assert.deepEqual(options.excludeCredentials[0].id, Uint8Array.from([7, 8]));
  assert.deepEqual(options.excludeCredentials[0].transports, ["internal"]);
});

test("request options allow the listed credentials, as bytes, and none when the list is missing", () => {
  const options = requestOptions({ rpId: "localhost", challenge: "AA", allowCredentials: [{ id: "_w", type: "public-key" }] });
  assert.deepEqual(options.allowCredentials[0].id, Uint8Array.from([255]));
  assert.equal(options.rpId, "localhost");
  assert.deepEqual(requestOptions({ challenge: "AA" }).allowCredentials, []);
});
