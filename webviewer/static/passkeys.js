// Passkeys (WebAuthn) in the browser: registering one on the account page, using one at login.
//
// A form with data-options names where to fetch the ceremony's options (JSON, binary fields in
// base64url); its action is where the answer goes, as form fields (csrf_token, name, credential),
// and the server's JSON answer names the page to go to. Nothing here keeps a secret.

/** Bytes of a base64url text (no padding). */
export function fromBase64url(text) {
  const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
  const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
  return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
}

/** The base64url text (no padding) of an ArrayBuffer or a typed array. */
export function toBase64url(buffer) {
  const bytes = buffer instanceof ArrayBuffer ? new Uint8Array(buffer) : new Uint8Array(buffer.buffer);
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function descriptors(list) {
  return (list || []).map((item) => ({ ...item, id: fromBase64url(item.id) }));
}

/** navigator.credentials.create options from the server's JSON. */
export function creationOptions(json) {
  return {
    ...json,
    challenge: fromBase64url(json.challenge),
    user: { ...json.user, id: fromBase64url(json.user.id) },
    excludeCredentials: descriptors(json.excludeCredentials),
  };
}

/** navigator.credentials.get options from the server's JSON. */
export function requestOptions(json) {
  return { ...json, challenge: fromBase64url(json.challenge), allowCredentials: descriptors(json.allowCredentials) };
}

/** The JSON form of a new credential, as the server reads it. */
export function registrationJSON(credential) {
  const response = credential.response;
  return {
    id: credential.id,
    rawId: toBase64url(credential.rawId),
    type: credential.type,
    response: {
      clientDataJSON: toBase64url(response.clientDataJSON),
      attestationObject: toBase64url(response.attestationObject),
      transports: response.getTransports ? response.getTransports() : [],
    },
    clientExtensionResults: credential.getClientExtensionResults(),
    authenticatorAttachment: credential.authenticatorAttachment,
  };
}

/** The JSON form of an assertion, as the server reads it. */
export function assertionJSON(credential) {
  const response = credential.response;
  return {
    id: credential.id,
    rawId: toBase64url(credential.rawId),
    type: credential.type,
    response: {
      clientDataJSON: toBase64url(response.clientDataJSON),
      authenticatorData: toBase64url(response.authenticatorData),
      signature: toBase64url(response.signature),
      userHandle: response.userHandle ? toBase64url(response.userHandle) : null,
    },
    clientExtensionResults: credential.getClientExtensionResults(),
    authenticatorAttachment: credential.authenticatorAttachment,
  };
}

async function post(url, fields) {
  const body = new FormData();
  for (const [key, value] of Object.entries(fields)) body.append(key, value);
  const response = await fetch(url, { method: "POST", body, credentials: "same-origin" });
  if (!response.ok) throw new Error(`the server answered ${response.status}`);
  return response.json();
}

async function ceremony(form, run) {
  const status = form.querySelector(".passkey-status");
  const csrf = form.elements.csrf_token.value;
  const name = form.elements.name ? form.elements.name.value : "";
  status.textContent = "Waiting for the passkey…";
  try {
    const options = await post(form.dataset.options, { csrf_token: csrf });
    if (options.redirect) {
      window.location.assign(options.redirect);
      return;
    }
    const credential = await run(options);
    const answer = await post(form.action, { csrf_token: csrf, name, credential: JSON.stringify(credential) });
    window.location.assign(answer.redirect);
  } catch (error) {
    status.textContent = `No passkey was used (${error.message}). Try again, or use a code.`;
  }
}

function register(form) {
  return ceremony(form, async (options) => {
    const credential = await navigator.credentials.create({ publicKey: creationOptions(options) });
    return registrationJSON(credential);
  });
}

function authenticate(form) {
  return ceremony(form, async (options) => {
    const credential = await navigator.credentials.get({ publicKey: requestOptions(options) });
    return assertionJSON(credential);
  });
}

function bind(id, action) {
  const form = document.getElementById(id);
  if (!form) return;
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!window.PublicKeyCredential) {
      form.querySelector(".passkey-status").textContent = "This browser cannot use passkeys.";
      return;
    }
    action(form);
  });
}

if (typeof document !== "undefined") {
  bind("add-passkey", register);
  bind("use-passkey", authenticate);
}
