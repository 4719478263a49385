// Custodia console: the little script its pages use. Every page works
// without it, except passkeys, which only a script can reach.
(function () {
  "use strict";

  function ready() {
    var summary = document.querySelector("[data-focus]");
    if (summary) summary.focus();
    tokenFromFragment();
    document.querySelectorAll("form[data-passkey]").forEach(passkeyForm);
    document.querySelectorAll("form[data-import]").forEach(importForm);
    document.querySelectorAll("[data-live][id]").forEach(live);
    document.querySelectorAll("form[data-upload]").forEach(uploadForm);
    document.querySelectorAll("form").forEach(oneSubmit);
  }

  // A mailed link keeps its secret in the URL fragment (#token=…), which
  // no server sees: move it into the form, and out of the address bar.
  function tokenFromFragment() {
    var m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
    var input = document.getElementById("token");
    if (!m || !input) return;
    input.value = decodeURIComponent(m[1]);
    history.replaceState(null, "", location.pathname + location.search);
    var field = input.closest("[data-token-field]");
    if (field && input.getAttribute("aria-invalid") !== "true") field.hidden = true;
  }

  // A form sent once: its button is disabled while the answer comes.
  function oneSubmit(form) {
    form.addEventListener("submit", function (e) {
      if (e.defaultPrevented) return;
      var b = form.querySelector("button");
      if (b) setTimeout(function () { b.disabled = true; }, 0);
    });
  }
  window.addEventListener("pageshow", function () {
    document.querySelectorAll("button:disabled").forEach(function (b) { b.disabled = false; });
  });

  function fromB64url(s) {
    s = s.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) s += "=";
    var bin = atob(s), out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out.buffer;
  }
  function toB64url(buf) {
    var bytes = new Uint8Array(buf), s = "";
    for (var i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function decodeList(list) {
    return (list || []).map(function (c) { return Object.assign({}, c, { id: fromB64url(c.id) }); });
  }

  // The options the server sent (JSON, binary fields in base64url) made
  // into what navigator.credentials takes, and its answer made into JSON.
  function creationOptions(o) {
    var pk = Object.assign({}, o.publicKey);
    pk.challenge = fromB64url(pk.challenge);
    pk.user = Object.assign({}, pk.user, { id: fromB64url(pk.user.id) });
    pk.excludeCredentials = decodeList(pk.excludeCredentials);
    return { publicKey: pk };
  }
  function requestOptions(o) {
    var pk = Object.assign({}, o.publicKey);
    pk.challenge = fromB64url(pk.challenge);
    pk.allowCredentials = decodeList(pk.allowCredentials);
    return { publicKey: pk };
  }
  function credentialJSON(c) {
    var r = c.response, out = { id: c.id, rawId: toB64url(c.rawId), type: c.type, response: {},
      clientExtensionResults: c.getClientExtensionResults ? c.getClientExtensionResults() : {} };
    ["clientDataJSON", "attestationObject", "authenticatorData", "signature", "userHandle"].forEach(function (k) {
      if (r[k]) out.response[k] = toB64url(r[k]);
    });
    if (r.getTransports) out.response.transports = r.getTransports();
    return JSON.stringify(out);
  }

  // A passkey form: on submit, ask the browser for the passkey, put its
  // answer into the form, and send it.
  function passkeyForm(form) {
    var problem = form.querySelector("[data-passkey-error]");
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var button = form.querySelector("button");
      if (button) button.disabled = true;
      var options;
      if (form.dataset.passkey === "create") {
        options = Promise.resolve(creationOptions(JSON.parse(form.dataset.options)));
      } else {
        options = fetch(form.dataset.challenge, { method: "POST", credentials: "same-origin" }).then(function (res) {
          if (!res.ok) throw new Error("the server did not start the passkey check (" + res.status + ")");
          return res.json();
        }).then(requestOptions);
      }
      options.then(function (o) {
        return form.dataset.passkey === "create" ? navigator.credentials.create(o) : navigator.credentials.get(o);
      }).then(function (cred) {
        form.querySelector("[name=credential]").value = credentialJSON(cred);
        form.submit();
      }).catch(function (err) {
        if (button) button.disabled = false;
        if (problem) {
          problem.textContent = "The passkey was not used: " + (err && err.message ? err.message : err) + ". Try again, or choose another way.";
          problem.hidden = false;
        }
      });
    });
  }

  // An import with a progress bar: the checked file goes to the same
  // address as its own body, and the answer streams a line of progress
  // after each chunk written ({"done", "total"}), then {"result"} or
  // {"error"}. Without the script, the form posts and the page reloads.
  function importForm(form) {
    var box = document.querySelector("[data-import-progress]");
    if (!box || !window.fetch || !window.TextDecoder) return;
    var bar = box.querySelector("progress"), status = box.querySelector("[data-import-status]");
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var button = form.querySelector("button");
      if (button) button.disabled = true;
      box.hidden = false;
      status.textContent = "Starting…";
      var type = form.elements.format.value === "json" ? "application/json" : "text/csv";
      fetch(form.action + "?existing=" + encodeURIComponent(form.elements.existing.value), {
        method: "POST", credentials: "same-origin", body: form.elements.data.value,
        headers: { "Content-Type": type, "Accept": "application/x-ndjson" }
      }).then(function (res) {
        if (!res.ok) {
          return res.json().then(function (p) { throw new Error(p.detail || res.statusText); });
        }
        var reader = res.body.getReader(), decoder = new TextDecoder(), rest = "";
        function line(l) {
          if (!l) return;
          var m = JSON.parse(l);
          if (m.total !== undefined) {
            bar.max = m.total; bar.value = m.done;
            status.textContent = m.done + " of " + m.total + " imported (" + Math.floor(100 * m.done / m.total) + "%)";
          } else if (m.result) {
            bar.value = bar.max;
            status.textContent = "Done: " + m.result.created + " contacts imported" + (m.result.skipped ? ", " + m.result.skipped + " already here left as they were." : ".");
            box.querySelector("[data-import-done]").hidden = false;
          } else if (m.error) {
            throw new Error(m.error.detail + " (" + m.error.created + " created)");
          }
        }
        function pump() {
          return reader.read().then(function (r) {
            rest += decoder.decode(r.value || new Uint8Array(), { stream: !r.done });
            var lines = rest.split("\n");
            rest = lines.pop();
            lines.forEach(line);
            if (r.done) { line(rest); return; }
            return pump();
          });
        }
        return pump();
      }).catch(function (err) {
        status.textContent = "The import stopped: " + (err && err.message ? err.message : err);
        if (button) button.disabled = false;
      });
    });
  }

  // A part of the page that follows the server (a campaign's counts):
  // the page is fetched again every few seconds while it is shown, and
  // the part replaced when it changed.
  function live(el) {
    if (!window.fetch || !window.DOMParser) return;
    var rounds = 0;
    var timer = setInterval(function () {
      if (document.hidden) return;
      if (++rounds > 360) { clearInterval(timer); return; }
      fetch(location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } }).then(function (res) {
        return res.ok ? res.text() : Promise.reject(res.status);
      }).then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById(el.id);
        if (fresh && fresh.innerHTML !== el.innerHTML) el.innerHTML = fresh.innerHTML;
      }).catch(function () { clearInterval(timer); });
    }, 3000);
  }

  // An upload in parts through the API's resumable sessions: a part that
  // fails (a dropped connection) is sent again from the offset the server
  // holds. A file dropped on the form is uploaded as if chosen.
  var PART = 8 * 1024 * 1024;
  function uploadForm(form) {
    var box = form.querySelector("[data-upload-progress]");
    var input = form.querySelector("input[type=file]");
    if (!box || !input || !window.fetch || !window.Blob) return;
    var bar = box.querySelector("progress"), status = box.querySelector("[data-upload-status]");
    form.addEventListener("dragover", function (e) { e.preventDefault(); form.classList.add("dropping"); });
    form.addEventListener("dragleave", function () { form.classList.remove("dropping"); });
    form.addEventListener("drop", function (e) {
      e.preventDefault();
      form.classList.remove("dropping");
      if (e.dataTransfer && e.dataTransfer.files.length) {
        input.files = e.dataTransfer.files;
        if (form.requestSubmit) form.requestSubmit(); else form.submit();
      }
    });
    form.addEventListener("submit", function (e) {
      var file = input.files && input.files[0];
      if (!file) return; // the server says what is missing
      e.preventDefault();
      var button = form.querySelector("button");
      if (button) button.disabled = true;
      box.hidden = false;
      bar.max = file.size || 1;
      bar.value = 0;
      var folder = form.dataset.folder;
      var id, retries = 0;
      function say(text) { status.textContent = text; }
      function fail(err) {
        say("The upload stopped: " + (err && err.message ? err.message : err) + ". Choose the file again to start over.");
        if (button) button.disabled = false;
      }
      function offsetOf(res) { return parseInt(res.headers.get("Upload-Offset"), 10); }
      function resume() { // after a failure: ask the server where it stands
        if (++retries > 20) return fail(new Error("the connection keeps failing"));
        say("The connection dropped; going on from where it stopped…");
        return new Promise(function (ok) { setTimeout(ok, Math.min(8000, 250 * retries)); }).then(function () {
          return fetch("/api/v1/uploads/" + id, { credentials: "same-origin" });
        }).then(function (res) {
          if (!res.ok) throw new Error("the server lost the upload (" + res.status + ")");
          return send(offsetOf(res));
        }, resume);
      }
      function send(offset) {
        bar.value = offset;
        say(Math.floor(100 * offset / (file.size || 1)) + "% uploaded");
        return fetch("/api/v1/uploads/" + id, {
          method: "PATCH", credentials: "same-origin", body: file.slice(offset, offset + PART),
          headers: { "Upload-Offset": String(offset), "Content-Type": "application/offset+octet-stream" }
        }).then(function (res) {
          if (res.status === 204 || res.status === 409) { retries = 0; return send(offsetOf(res)); }
          if (res.status === 200 || res.status === 201) {
            bar.value = bar.max;
            say("Uploaded: " + file.name);
            setTimeout(function () { location.reload(); }, 300);
            return;
          }
          if (res.status >= 500) return resume();
          return res.json().then(function (p) { throw new Error(p.detail || res.statusText); });
        }, resume);
      }
      fetch(form.dataset.upload, {
        method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ path: folder ? folder + "/" + file.name : file.name, size: file.size, content_type: file.type || "application/octet-stream" })
      }).then(function (res) {
        return res.json().then(function (body) {
          if (!res.ok) throw new Error(body.detail || res.statusText);
          id = body.id;
          return send(0);
        });
      }).catch(fail);
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", ready);
  else ready();
})();
