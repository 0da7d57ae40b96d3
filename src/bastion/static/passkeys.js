// Passkeys (WebAuthn) on Bastion's pages. Needs csrf-fetch.js first (bastion.fetch adds
// the X-CSRF-Token header from <meta name="csrf-token">).
//
// Driven by markup, so no page carries inline script (the CSP allows none):
//   <button data-passkey="get" data-options="/login/passkey/options" data-verify="/login/passkey"
//           data-next="/dashboard" data-conditional hidden>  a sign-in (or second factor,
//           or re-authentication) with a passkey; data-conditional also offers the passkeys
//           in the autofill of the field with autocomplete="username webauthn".
//   <form data-passkey="create" data-options="/account/passkeys/options"
//         data-verify="/account/passkeys" hidden>  adds a passkey, named by its "name" field.
// Each shows what went wrong in the element its data-status names (role="alert").
// Elements stay hidden in browsers without WebAuthn.
//
// The script has no text of its own: what it says comes from the page, in the page's
// language, as data-msg-* attributes of its <script> element (passkey_macros.html):
// data-msg-failed, data-msg-cancelled, data-msg-exists, data-msg-unsupported. The server's
// refusals arrive translated in the JSON "detail".
(() => {
  "use strict";
  const script = document.currentScript;
  const messages = script ? script.dataset : {};
  const say = (name) => messages["msg" + name] || messages.msgFailed || "";
  // A little under the server's five minutes, so a waiting autofill never holds a
  // challenge that expired.
  const CONDITIONAL_RENEW_MS = 270000;

  const fromBase64url = (text) => {
    const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    const binary = atob(base64 + "===".slice((base64.length + 3) % 4));
    return Uint8Array.from(binary, (c) => c.charCodeAt(0)).buffer;
  };
  const toBase64url = (buffer) => {
    const bytes = new Uint8Array(buffer);
    let binary = "";
    for (const byte of bytes) binary += String.fromCharCode(byte);
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  };
  const withIds = (list) => (list || []).map((c) => ({ ...c, id: fromBase64url(c.id) }));

  // WebAuthn Level 3 turns the JSON options into what the browser takes; older browsers
  // get the same done here.
  function creationOptions(json) {
    if (PublicKeyCredential.parseCreationOptionsFromJSON) {
      return PublicKeyCredential.parseCreationOptionsFromJSON(json);
    }
    return {
      ...json,
      challenge: fromBase64url(json.challenge),
      user: { ...json.user, id: fromBase64url(json.user.id) },
      excludeCredentials: withIds(json.excludeCredentials),
    };
  }

  function requestOptions(json) {
    if (PublicKeyCredential.parseRequestOptionsFromJSON) {
      return PublicKeyCredential.parseRequestOptionsFromJSON(json);
    }
    return {
      ...json,
      challenge: fromBase64url(json.challenge),
      allowCredentials: withIds(json.allowCredentials),
    };
  }

  function credentialJSON(credential) {
    if (typeof credential.toJSON === "function") return credential.toJSON();
    const response = credential.response;
    const json = {
      id: credential.id,
      rawId: toBase64url(credential.rawId),
      type: credential.type,
      authenticatorAttachment: credential.authenticatorAttachment || undefined,
      clientExtensionResults: credential.getClientExtensionResults(),
      response: { clientDataJSON: toBase64url(response.clientDataJSON) },
    };
    if (response.attestationObject) {
      json.response.attestationObject = toBase64url(response.attestationObject);
      json.response.transports = response.getTransports ? response.getTransports() : [];
    } else {
      json.response.authenticatorData = toBase64url(response.authenticatorData);
      json.response.signature = toBase64url(response.signature);
      if (response.userHandle) json.response.userHandle = toBase64url(response.userHandle);
    }
    return json;
  }

  class Refusal extends Error {
    constructor(message, redirect) {
      super(message);
      this.redirect = redirect;
    }
  }

  async function post(url, body) {
    const response = await bastion.fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body || {}),
      credentials: "same-origin",
    });
    let answer = {};
    try {
      answer = await response.json();
    } catch (error) {
      answer = {};
    }
    if (response.status === 401 && /insufficient_user_authentication/.test(
      response.headers.get("WWW-Authenticate") || "")) {
      // The re-authentication window closed: confirm it is you, then come back here.
      const back = window.location.pathname + window.location.search;
      throw new Refusal("", "/reauth?next=" + encodeURIComponent(back).replace(/%2F/g, "/"));
    }
    if (!response.ok) {
      const detail = typeof answer.detail === "string" ? answer.detail : "";
      throw new Refusal(detail || say("Failed"), answer.redirect);
    }
    return answer;
  }

  function explain(error) {
    if (error instanceof Refusal) return error.message;
    if (error && error.name === "NotAllowedError") return say("Cancelled");
    if (error && error.name === "InvalidStateError") return say("Exists");
    return say("Unsupported");
  }

  function statusOf(element) {
    const id = element.dataset.status;
    return id ? document.getElementById(id) : null;
  }

  function show(element, message) {
    const status = statusOf(element);
    if (status) {
      status.textContent = message;
      status.hidden = !message;
    }
  }

  function follow(answer) {
    if (answer && typeof answer.redirect === "string" && answer.redirect.startsWith("/")
        && !answer.redirect.startsWith("//")) {
      window.location.assign(answer.redirect);
    }
  }

  function failed(element, error) {
    if (error && error.name === "AbortError") return;
    if (error instanceof Refusal && error.redirect) {
      follow(error);
      return;
    }
    show(element, explain(error));
  }

  // -- sign-in, second factor, re-authentication ----------------------------------------

  function setUpGet(button) {
    let conditional = null; // {controller, pending, timer} of a waiting autofill request
    let starting = null; // its options, while they are being fetched
    let clicked = false; // the button's own request runs: no autofill request meanwhile
    let autofill = false; // the browser offers passkeys in the login field's autofill

    async function ask(mediation) {
      const json = await post(button.dataset.options);
      const controller = new AbortController();
      const options = { publicKey: requestOptions(json.publicKey), signal: controller.signal };
      if (mediation) options.mediation = mediation;
      const pending = navigator.credentials.get(options);
      return { controller, pending };
    }

    async function verify(credential) {
      const answer = await post(button.dataset.verify, {
        credential: credentialJSON(credential),
        next: button.dataset.next || "",
      });
      follow(answer);
    }

    async function stopConditional() {
      // Options still on their way: let the request start, then abort it.
      if (starting !== null) await starting.catch(() => null);
      if (conditional === null) return;
      const waiting = conditional;
      conditional = null;
      clearTimeout(waiting.timer);
      waiting.controller.abort();
      await waiting.pending.catch(() => null);
    }

    async function startConditional() {
      if (clicked) return;
      let asked;
      starting = ask("conditional");
      try {
        asked = await starting;
      } catch (error) {
        return; // Nobody asked for this one: the button still works (and explains).
      } finally {
        starting = null;
      }
      try {
        const { controller, pending } = asked;
        const waiting = { controller, pending };
        waiting.timer = setTimeout(() => {
          stopConditional().then(startConditional);
        }, CONDITIONAL_RENEW_MS);
        conditional = waiting;
        const credential = await pending;
        if (conditional !== waiting) return;
        clearTimeout(waiting.timer);
        conditional = null;
        button.disabled = true;
        await verify(credential);
      } catch (error) {
        button.disabled = false;
        // Only our own refusal of a passkey the person chose is worth a message. The
        // autofill request's own errors (aborted when the button takes over or the
        // challenge is renewed, or ended by the browser, as headless Chromium sometimes
        // does) come from nobody's action: the button still works, and explains.
        if (error instanceof Refusal) failed(button, error);
      }
    }

    button.addEventListener("click", async () => {
      show(button, "");
      button.disabled = true;
      clicked = true;
      let failure = null;
      try {
        await stopConditional();
        const { pending } = await ask(null);
        await verify(await pending);
      } catch (error) {
        failure = error;
        failed(button, error);
      } finally {
        clicked = false;
        button.disabled = false;
      }
      // Still on this page: the autofill offers the passkeys again.
      if (failure !== null && autofill) startConditional();
    });
    button.hidden = false;

    if (button.hasAttribute("data-conditional")
        && PublicKeyCredential.isConditionalMediationAvailable) {
      PublicKeyCredential.isConditionalMediationAvailable().then((available) => {
        autofill = available;
        if (available) startConditional();
      }, () => null);
    }
  }

  // -- adding a passkey ----------------------------------------------------------------

  function setUpCreate(form) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const button = form.querySelector("button[type=submit]");
      show(form, "");
      if (button) button.disabled = true;
      try {
        const json = await post(form.dataset.options);
        const credential = await navigator.credentials.create({
          publicKey: creationOptions(json.publicKey),
        });
        const name = form.elements.namedItem("name");
        follow(await post(form.dataset.verify, {
          credential: credentialJSON(credential),
          name: name ? name.value : "",
        }));
      } catch (error) {
        failed(form, error);
      } finally {
        if (button) button.disabled = false;
      }
    });
    form.hidden = false;
  }

  function start() {
    if (!window.PublicKeyCredential || !navigator.credentials) return;
    document.querySelectorAll('[data-passkey="get"]').forEach(setUpGet);
    document.querySelectorAll('[data-passkey="create"]').forEach(setUpCreate);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
