/*
 * scanlogin.js: the browser side of "scan the WeChat QR code to log in".
 * No dependencies, no build step; copy it to your site.
 *
 * Protocol (see the project's README): open ws(s)://<host>/ws; the server
 * sends {"type":"qrcode", session, resume, qrcode_url, scan_url,
 * expires_in, expires_at}, then "scanned", "login" {token, user} (and
 * closes with 1000), or "expired" (send {"type":"refresh"} for a new code),
 * "error" {code, message}, "message" {event, data}, "pong".
 * After a drop, /ws?session=..&resume=.. reattaches to the same session and
 * replays what was missed. A session has one connection: a tab whose
 * session another tab resumed gets "error" session_taken and close 4002,
 * and stops (state "error", code "session_taken"); it does not resume again.
 *
 * Two ways to use it:
 *
 *   // 1. Just the protocol; draw it yourself.
 *   var login = ScanLogin.connect({
 *     url: "wss://login.example.com/ws",          // default: this host's /ws
 *     onState: function (s) { ... },              // s.state: connecting, waiting,
 *                                                 // scanned, loggedin, expired, error
 *     onMessage: function (event, data) { ... },  // Push messages
 *   });
 *   login.refresh(); login.close();
 *
 *   // 2. A ready-made widget in an element:
 *   ScanLogin.mount(document.getElementById("login"), { simulator: true });
 *
 *   // or without any script of your own:
 *   <div data-scanlogin data-ws-url="wss://login.example.com/ws"></div>
 *
 *   // 3. After the login, Push messages for the user (/ws?token=..):
 *   var inbox = ScanLogin.listen({
 *     token: loginToken,
 *     getToken: function () { return fetch("/my-token").then(r => r.text()); },
 *     onMessage: function (event, data) { ... },
 *   });
 *   // The server closes the connection with 4001 when the token expires
 *   // (exp + 5 s); listen then calls getToken (a token, or a Promise of
 *   // one) and reconnects with what it returns. It also calls getToken
 *   // before a reconnect when the token's exp has passed. Without getToken
 *   // it stops (onConnection {status: "closed", code: 4001}).
 */
(function (global) {
  "use strict";

  var defaults = {
    url: null,              // WebSocket URL; default ws(s)://<this host>/ws
    storageKey: "scanlogin",
    storage: undefined,     // default window.sessionStorage; null: do not keep the session
    backoffBase: 500,       // ms, first reconnect delay (before jitter)
    backoffMax: 30000,      // ms, longest reconnect delay
    maxAutoRefresh: 5,      // expired codes replaced without a click
    refreshDelay: 1500,     // ms the "expired" state shows before the auto refresh
    pingInterval: 25000,    // ms between application pings
    pongTimeout: 10000,     // ms without any answer after a ping: the socket is dead
    onState: null,          // function (state)
    onMessage: null,        // function (event, data)
    onConnection: null,     // function ({status: "open"|"reconnecting"|"closed", delay, attempt})
  };

  function defaultURL() {
    var l = global.location;
    return (l.protocol === "https:" ? "wss://" : "ws://") + l.host + "/ws";
  }

  function sessionStore() {
    try {
      var s = global.sessionStorage;
      s.setItem("scanlogin.test", "1");
      s.removeItem("scanlogin.test");
      return s;
    } catch (e) {
      return null;
    }
  }

  // decodeClaims returns the payload of a JWT, for display only: it does
  // not verify anything (the server that receives the token must).
  function decodeClaims(token) {
    try {
      var part = String(token).split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      while (part.length % 4) part += "=";
      var bin = global.atob(part);
      var bytes = new Uint8Array(bin.length);
      for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
      return JSON.parse(new TextDecoder().decode(bytes));
    } catch (e) {
      return null;
    }
  }

  function connect(options) {
    var o = {};
    var k;
    for (k in defaults) o[k] = defaults[k];
    for (k in options || {}) if (options[k] !== undefined) o[k] = options[k];
    var url = o.url || defaultURL();
    var storage = o.storage === undefined ? sessionStore() : o.storage;

    var ws = null;          // the current socket
    var attempt = 0;        // failed connects in a row
    var retryTimer = null, refreshTimer = null, pingTimer = null, pongTimer = null;
    var stopped = false;    // close() was called
    var displaced = false;  // another tab resumed our session (close 4002)
    var done = false;       // logged in
    var autoRefreshes = 0;
    var current = { state: "connecting" };
    var history = [];

    function emit(state, fields) {
      current = { state: state };
      for (var f in fields || {}) current[f] = fields[f];
      history.push(state);
      if (history.length > 100) history.shift();
      if (o.onState) o.onState(current);
    }

    function connection(status, extra) {
      var c = { status: status };
      for (var f in extra || {}) c[f] = extra[f];
      if (o.onConnection) o.onConnection(c);
    }

    function load() {
      if (!storage) return null;
      try {
        var v = JSON.parse(storage.getItem(o.storageKey) || "null");
        return v && v.session && v.resume ? v : null;
      } catch (e) {
        return null;
      }
    }
    function save(v) {
      if (!storage) return;
      try {
        if (v) storage.setItem(o.storageKey, JSON.stringify(v));
        else storage.removeItem(o.storageKey);
      } catch (e) { /* storage full or blocked: resume just will not work */ }
    }

    function send(msg) {
      if (ws && ws.readyState === 1) {
        ws.send(JSON.stringify(msg));
        return true;
      }
      return false;
    }

    function clearTimers() {
      clearTimeout(retryTimer);
      clearTimeout(refreshTimer);
      clearInterval(pingTimer);
      clearTimeout(pongTimer);
      retryTimer = refreshTimer = pingTimer = pongTimer = null;
    }

    function open() {
      clearTimers();
      if (stopped || done || displaced) return;
      var saved = load();
      var u = url;
      if (saved) {
        u += (u.indexOf("?") < 0 ? "?" : "&") + "session=" + encodeURIComponent(saved.session) +
          "&resume=" + encodeURIComponent(saved.resume);
      }
      var sock;
      try {
        sock = new WebSocket(u);
      } catch (e) {
        emit("error", { code: "bad_url", message: String(e && e.message || e) });
        return;
      }
      ws = sock;
      sock.onopen = function () {
        if (sock !== ws) return;
        connection("open", { resumed: !!saved });
        pingTimer = setInterval(function () {
          if (send({ type: "ping" }) && !pongTimer) {
            pongTimer = setTimeout(function () { drop(); }, o.pongTimeout);
          }
        }, o.pingInterval);
      };
      sock.onmessage = function (ev) {
        if (sock !== ws) return;
        clearTimeout(pongTimer);
        pongTimer = null;
        var m;
        try {
          m = JSON.parse(ev.data);
        } catch (e) {
          return;
        }
        handle(m);
      };
      sock.onclose = function (ev) {
        if (sock !== ws) return;
        ws = null;
        clearTimers();
        if (ev.code === 4002) {
          // Another tab resumed this session: it is that tab's now.
          // Resuming it again would take it back, and so on for ever.
          displaced = true;
          save(null);
        }
        if (done || stopped || displaced) {
          connection("closed", { code: ev.code });
          return;
        }
        retry(ev.code);
      };
    }

    // retry reconnects after an exponential delay with jitter, so that a
    // restarted server is not hit by every browser at once.
    function retry(code) {
      var delay = Math.min(o.backoffMax, o.backoffBase * Math.pow(2, attempt));
      delay = Math.round(delay / 2 + Math.random() * delay / 2);
      attempt++;
      connection("reconnecting", { delay: delay, attempt: attempt, code: code });
      if (attempt >= 3 && (current.state === "connecting" || current.state === "error")) {
        emit("error", { code: "unreachable", message: "Cannot reach the login server; still trying." });
      }
      retryTimer = setTimeout(open, delay);
    }

    function handle(m) {
      switch (m.type) {
        case "qrcode":
          attempt = 0;
          clearTimeout(refreshTimer);
          save({ session: m.session, resume: m.resume });
          var left = typeof m.expires_in === "number" ? m.expires_in * 1000 : m.expires_at - Date.now();
          emit("waiting", {
            session: m.session,
            scene: m.scene,
            qrcodeURL: m.qrcode_url,
            scanURL: m.scan_url,
            // A local deadline: immune to a wrong clock on this computer.
            expiresAt: Date.now() + left,
          });
          break;
        case "scanned":
          emit("scanned", { qrcodeURL: current.qrcodeURL, scanURL: current.scanURL, expiresAt: current.expiresAt });
          break;
        case "login":
          done = true;
          save(null);
          emit("loggedin", { token: m.token, user: m.user || {}, claims: decodeClaims(m.token) });
          break;
        case "expired":
          var again = autoRefreshes < o.maxAutoRefresh;
          emit("expired", { qrcodeURL: current.qrcodeURL, autoRefresh: again });
          if (again) {
            autoRefreshes++;
            clearTimeout(refreshTimer); // a second "expired" asks for one code, not two
            refreshTimer = setTimeout(refresh, o.refreshDelay);
          }
          break;
        case "cancelled":
          emit("error", { code: "cancelled", message: "Login was declined on the phone." });
          break;
        case "error":
          if (m.code === "resume_failed") {
            // The server forgot the session (restarted, or it expired while
            // we were away) and sends a new code on this connection.
            save(null);
            connection("open", { resumed: false, resumeFailed: true });
            break;
          }
          emit("error", { code: m.code, message: m.message });
          break;
        case "message":
          if (o.onMessage) o.onMessage(m.event, m.data);
          break;
        case "pong":
          break;
      }
    }

    // refresh asks for a new QR code, on this connection if it is open, else
    // through a new session.
    function refresh() {
      clearTimeout(refreshTimer);
      if (done || stopped || displaced) return;
      if (!send({ type: "refresh" })) {
        save(null);
        attempt = 0;
        if (!ws) open();
      }
    }

    // drop abandons the socket as a network failure would, and the client
    // resumes its session after the usual delay. It does not wait for the
    // closing handshake, which a dead network never completes. The ping
    // timeout uses it; tests call it through dropSocket.
    function drop() {
      var old = ws;
      if (!old) return;
      ws = null; // its events are ignored from now on
      clearTimers();
      try {
        old.close(4000, "client drop");
      } catch (e) { /* already closed */ }
      if (!done && !stopped) retry(4000);
    }

    // reconnect connects now, resuming the session if there is one.
    function reconnect() {
      if (done || stopped || displaced || ws) return;
      attempt = 0;
      open();
    }

    function onOnline() {
      reconnect();
    }
    if (global.addEventListener) global.addEventListener("online", onOnline);

    emit("connecting", {});
    open();

    return {
      /** The latest state object. */
      get state() { return current; },
      /** Names of the states so far, oldest first (the last 100). */
      get history() { return history.slice(); },
      refresh: refresh,
      reconnect: reconnect,
      dropSocket: drop,
      /** restart forgets the session and starts over with a new code. */
      restart: function () {
        save(null);
        done = false;
        stopped = false;
        displaced = false;
        autoRefreshes = 0;
        attempt = 0;
        var old = ws;
        ws = null;
        if (old) old.close(1000, "restart");
        emit("connecting", {});
        open();
      },
      /** close ends the connection for good. */
      close: function () {
        stopped = true;
        clearTimers();
        if (global.removeEventListener) global.removeEventListener("online", onOnline);
        if (ws) ws.close(1000, "closed");
      },
    };
  }

  // listen keeps an authenticated connection (/ws?token=) open for the Push
  // messages of the logged-in user, across drops and token expiry. Options:
  // url, token, getToken (returns a token or a Promise of one), onMessage,
  // onConnection, backoffBase, backoffMax, pingInterval, pongTimeout.
  function listen(options) {
    var o = {};
    var k;
    for (k in defaults) o[k] = defaults[k];
    for (k in options || {}) if (options[k] !== undefined) o[k] = options[k];
    var url = o.url || defaultURL();
    var token = o.token || null;
    var ws = null;
    var attempt = 0;
    var stopped = false;
    var retryTimer = null, pingTimer = null, pongTimer = null;

    function connection(status, extra) {
      var c = { status: status };
      for (var f in extra || {}) c[f] = extra[f];
      if (o.onConnection) o.onConnection(c);
    }

    function clearTimers() {
      clearTimeout(retryTimer);
      clearInterval(pingTimer);
      clearTimeout(pongTimer);
      retryTimer = pingTimer = pongTimer = null;
    }

    // stale: the token's exp has passed by this computer's clock.
    function stale(t) {
      var c = decodeClaims(t);
      return !c || typeof c.exp !== "number" || c.exp * 1000 <= Date.now();
    }

    // withToken calls fn with a token that has not expired, asking getToken
    // for one when needed.
    function withToken(fn) {
      if (token && !stale(token)) return fn(token);
      if (!o.getToken) {
        stopped = true;
        connection("closed", { code: 4001, reason: "token expired" });
        return;
      }
      Promise.resolve().then(o.getToken).then(function (t) {
        if (stopped) return;
        if (!t || stale(t)) throw new Error("getToken gave no valid token");
        token = t;
        fn(t);
      }).catch(function () {
        if (!stopped) retry(4001);
      });
    }

    function open() {
      clearTimers();
      if (stopped) return;
      withToken(function (t) {
        var sock = new WebSocket(url + (url.indexOf("?") < 0 ? "?" : "&") + "token=" + encodeURIComponent(t));
        ws = sock;
        sock.onopen = function () {
          if (sock !== ws) return;
          attempt = 0;
          connection("open", {});
          pingTimer = setInterval(function () {
            if (sock.readyState === 1) {
              sock.send(JSON.stringify({ type: "ping" }));
              if (!pongTimer) pongTimer = setTimeout(drop, o.pongTimeout);
            }
          }, o.pingInterval);
        };
        sock.onmessage = function (ev) {
          if (sock !== ws) return;
          clearTimeout(pongTimer);
          pongTimer = null;
          var m;
          try {
            m = JSON.parse(ev.data);
          } catch (e) {
            return;
          }
          if (m.type === "message" && o.onMessage) o.onMessage(m.event, m.data);
        };
        sock.onclose = function (ev) {
          if (sock !== ws) return;
          ws = null;
          clearTimers();
          if (stopped) {
            connection("closed", { code: ev.code });
            return;
          }
          if (ev.code === 4001) {
            // The token expired: at once, with a fresh one.
            token = null;
            connection("reconnecting", { delay: 0, attempt: 0, code: ev.code });
            open();
            return;
          }
          retry(ev.code);
        };
      });
    }

    function retry(code) {
      var delay = Math.min(o.backoffMax, o.backoffBase * Math.pow(2, attempt));
      delay = Math.round(delay / 2 + Math.random() * delay / 2);
      attempt++;
      connection("reconnecting", { delay: delay, attempt: attempt, code: code });
      retryTimer = setTimeout(open, delay);
    }

    function drop() {
      var old = ws;
      if (!old) return;
      ws = null;
      clearTimers();
      try {
        old.close(4000, "client drop");
      } catch (e) { /* already closed */ }
      if (!stopped) retry(4000);
    }

    open();
    return {
      /** setToken replaces the token used for the next connection. */
      setToken: function (t) { token = t; },
      dropSocket: drop,
      /** close ends the connection for good. */
      close: function () {
        stopped = true;
        clearTimers();
        if (ws) ws.close(1000, "closed");
      },
    };
  }

  // ---- The widget ---------------------------------------------------------

  var labels = {
    connecting: "Connecting…",
    waiting: "Scan with WeChat to log in",
    scanned: "Scanned: confirm on your phone",
    loggedin: "Logged in",
    expired: "QR code expired",
    error: "Something went wrong",
  };

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    for (var a in attrs || {}) e.setAttribute(a, attrs[a]);
    if (text != null) e.textContent = text;
    return e;
  }

  function fmtLeft(ms) {
    var s = Math.max(0, Math.ceil(ms / 1000));
    return Math.floor(s / 60) + ":" + ("0" + (s % 60)).slice(-2);
  }

  function fmtClaim(k, v) {
    if ((k === "iat" || k === "exp" || k === "nbf") && typeof v === "number") {
      return v + " (" + new Date(v * 1000).toLocaleString() + ")";
    }
    return typeof v === "string" ? v : JSON.stringify(v);
  }

  function table(obj, id) {
    var t = el("table", { id: id, class: "sl-table" });
    Object.keys(obj || {}).forEach(function (k) {
      var tr = el("tr");
      tr.appendChild(el("th", null, k));
      var td = el("td", { "data-key": k }, fmtClaim(k, obj[k]));
      tr.appendChild(td);
      t.appendChild(tr);
    });
    return t;
  }

  // mount draws a login widget inside root and connects it. Options are
  // those of connect, plus simulator: true to link each code's scan_url
  // (the WeChat simulator's phone page, in development), and onLogin:
  // function (token, user, claims). It returns the connection.
  function mount(root, options) {
    options = options || {};
    root.classList.add("scanlogin");
    root.textContent = "";
    var state = el("div", { id: "state", class: "sl-state", "data-state": "connecting", role: "status", "aria-live": "polite" }, labels.connecting);
    var qr = el("div", { id: "qr", class: "sl-qr" });
    var img = el("img", { alt: "WeChat login QR code", width: "220", height: "220", referrerpolicy: "no-referrer" });
    var overlay = el("div", { class: "sl-overlay" });
    qr.appendChild(img);
    qr.appendChild(overlay);
    var countdown = el("div", { id: "countdown", class: "sl-countdown" });
    var detail = el("p", { id: "detail", class: "sl-detail" });
    var button = el("button", { id: "refresh", type: "button", class: "sl-button", hidden: "" }, "Get a new code");
    var sim = el("a", { id: "sim-link", class: "sl-sim", target: "_blank", rel: "noopener", hidden: "" }, "Open the simulator's phone page");
    var result = el("div", { id: "result", class: "sl-result", hidden: "" });
    var conn = el("div", { id: "conn", class: "sl-conn", "data-conn": "connecting", "data-opens": "0" });
    [state, qr, countdown, detail, sim, result, button, conn].forEach(function (e) { root.appendChild(e); });

    var s = { state: "connecting" };
    var tick = null;
    var opens = 0; // connections opened, shown in data-opens for tests

    function show(e, on) {
      if (on) e.removeAttribute("hidden");
      else e.setAttribute("hidden", "");
    }

    function updateCountdown() {
      if ((s.state === "waiting" || s.state === "scanned") && s.expiresAt) {
        var left = s.expiresAt - Date.now();
        countdown.textContent = "Expires in " + fmtLeft(left);
        countdown.setAttribute("data-left", String(Math.max(0, Math.ceil(left / 1000))));
      } else {
        countdown.textContent = "";
        countdown.removeAttribute("data-left");
      }
    }

    function render(st) {
      s = st;
      root.setAttribute("data-state", st.state);
      state.setAttribute("data-state", st.state);
      state.textContent = labels[st.state] || st.state;
      var hasQR = !!st.qrcodeURL && (st.state === "waiting" || st.state === "scanned");
      if (hasQR && img.getAttribute("src") !== st.qrcodeURL) img.setAttribute("src", st.qrcodeURL);
      show(qr, hasQR || st.state === "expired");
      qr.setAttribute("data-dim", st.state === "waiting" ? "no" : "yes");
      overlay.textContent = st.state === "scanned" ? "✓" : st.state === "expired" ? "Expired" : "";
      var scanURL = options.simulator && hasQR ? st.scanURL : "";
      if (scanURL) sim.setAttribute("href", scanURL);
      show(sim, !!scanURL);

      var text = "";
      var btn = "";
      if (st.state === "waiting") text = "Open WeChat, tap + then Scan, and point it at the code.";
      if (st.state === "scanned") text = "Waiting for you to confirm on the phone.";
      if (st.state === "expired") {
        text = st.autoRefresh ? "Getting a new code…" : "Click for a new code.";
        btn = "Get a new code";
      }
      if (st.state === "error") { text = st.message || st.code || ""; btn = "Try again"; }
      if (st.state === "loggedin") btn = "Log in again";
      detail.textContent = text;
      button.textContent = btn;
      show(button, !!btn);

      result.textContent = "";
      show(result, st.state === "loggedin");
      if (st.state === "loggedin") {
        var u = st.user || {};
        var who = el("div", { id: "user", class: "sl-user", "data-openid": u.openid || "" });
        who.appendChild(el("div", { class: "sl-user-name" }, u.nickname || "WeChat user"));
        who.appendChild(el("code", { id: "openid" }, u.openid || ""));
        result.appendChild(who);
        result.appendChild(el("h3", null, "User"));
        result.appendChild(table(u, "user-fields"));
        result.appendChild(el("h3", null, "Login token claims"));
        result.appendChild(table(st.claims || {}, "claims"));
        result.appendChild(el("p", { class: "sl-note" }, "Decoded in the browser for display. Your server must verify the token's signature (JWKS at /.well-known/jwks.json) before trusting it."));
        if (options.onLogin) options.onLogin(st.token, st.user, st.claims);
      }
      updateCountdown();
    }

    var c = connect({
      url: options.url,
      storage: options.storage,
      storageKey: options.storageKey,
      maxAutoRefresh: options.maxAutoRefresh,
      refreshDelay: options.refreshDelay,
      backoffBase: options.backoffBase,
      backoffMax: options.backoffMax,
      onMessage: options.onMessage,
      onState: function (st) {
        render(st);
        if (options.onState) options.onState(st);
      },
      onConnection: function (info) {
        conn.setAttribute("data-conn", info.status);
        if (info.status === "open") {
          if (!info.resumeFailed) opens++;
          conn.setAttribute("data-opens", String(opens));
          conn.setAttribute("data-resumed", String(!!info.resumed));
        }
        conn.textContent = info.status === "reconnecting"
          ? "Connection lost; reconnecting in " + Math.ceil(info.delay / 1000) + " s…"
          : "";
        if (options.onConnection) options.onConnection(info);
      },
    });

    button.addEventListener("click", function () {
      if (s.state === "error" && s.code === "unreachable") c.reconnect();
      else if (s.state === "loggedin" || s.state === "error") c.restart();
      else c.refresh();
    });
    tick = setInterval(updateCountdown, 250);
    c.unmount = function () {
      clearInterval(tick);
      c.close();
      root.textContent = "";
    };
    return c;
  }

  function autoMount() {
    var nodes = document.querySelectorAll("[data-scanlogin]");
    for (var i = 0; i < nodes.length; i++) {
      var n = nodes[i];
      if (n.getAttribute("data-scanlogin") === "manual" || n.__scanlogin) continue;
      n.__scanlogin = mount(n, {
        url: n.getAttribute("data-ws-url") || undefined,
        simulator: !!n.getAttribute("data-simulator"),
      });
      // The first widget is reachable for tests and the console.
      if (!global.__scanlogin) global.__scanlogin = n.__scanlogin;
    }
  }

  global.ScanLogin = { connect: connect, listen: listen, mount: mount, decodeClaims: decodeClaims };
  if (typeof document !== "undefined") {
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", autoMount);
    else autoMount();
  }
})(typeof window !== "undefined" ? window : this);
