/*
 * scanlogin.js: the browser side of "scan the WeChat QR code to log in".
 * An ES module with no dependencies; README.md has the whole API.
 *
 * Protocol (see the project's README): open ws(s)://<host>/ws?flow=<flow>
 * (flow "oa": an official-account QR code; "miniprogram": a Mini Program
 * code; none: the server's first flow); the server sends {"type":"qrcode",
 * flow, session, resume, qrcode_url, scan_url, expires_in, expires_at},
 * then "scanned" (confirm on the phone), "login" {token, user} (and closes
 * with 1000), "cancelled" (declined on the phone) or "expired" (send
 * {"type":"refresh"} for a new code, in the same flow), "error" {code,
 * message}, "message" {event, data}, "pong". qrcode_url may be a path on
 * the login server (Mini Program codes): it is resolved against the
 * WebSocket's host.
 * After a drop, /ws?session=..&resume=.. reattaches to the same session and
 * replays what was missed; the flow is kept across drops, refreshes and
 * page reloads. A session has one connection: a tab whose
 * session another tab resumed gets "error" session_taken and close 4002,
 * and stops (state "error", code "session_taken"); it does not resume again.
 *
 * Three ways to use it:
 *
 *   // 1. Just the protocol; draw it yourself.
 *   import { connect } from "scanlogin";
 *   const login = connect({
 *     url: "wss://login.example.com/ws",          // default: this host's /ws
 *     flow: "miniprogram",                        // default: the server's first flow
 *     onState(s) { ... },                         // s.state: connecting, waiting,
 *                                                 // scanned, loggedin, cancelled,
 *                                                 // expired, error; s.flow
 *     onMessage(event, data) { ... },             // Push messages
 *   });
 *   login.refresh(); login.setFlow("oa"); login.close();
 *
 *   // 2. A ready-made widget in an element:
 *   mount(document.getElementById("login"), { flows: ["oa", "miniprogram"] });
 *   // flows: the server's enabled flows (LOGIN_FLOWS), first the default;
 *   // with two, the widget offers a switch between them.
 *
 *   // or with a script tag and no script of your own: loaded in a page,
 *   // the module mounts a widget in every [data-scanlogin] element and sets
 *   // the global ScanLogin (connect, listen, mount, decodeClaims).
 *   <script type="module" src="/scanlogin.js"></script>
 *   <div data-scanlogin data-ws-url="wss://login.example.com/ws" data-flows="oa,miniprogram"></div>
 *
 *   // 3. After the login, Push messages for the user (/ws?token=..):
 *   const inbox = listen({
 *     token: loginToken,
 *     getToken: () => fetch("/my-token").then((r) => r.text()),
 *     onMessage(event, data) { ... },
 *   });
 *   // The server closes the connection with 4001 when the token expires
 *   // (exp + 5 s); listen then calls getToken (a token, or a Promise of
 *   // one) and reconnects with what it returns. It also calls getToken
 *   // before a reconnect when the token's exp has passed. Without getToken
 *   // it stops (onConnection {status: "closed", code: 4001}).
 */

const global = globalThis;

var defaults = {
  url: null,              // WebSocket URL; default ws(s)://<this host>/ws
  flow: "",               // "oa" or "miniprogram"; empty: the saved one, else the server's first
  flows: null,            // the server's flows, if known: a saved flow not among them is ignored
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

// backoff is the wait before reconnect attempt n (0 first): exponential up
// to o.backoffMax, with jitter over its upper half, so that a restarted
// server is not hit by every browser at once.
function backoff(o, n) {
  var delay = Math.min(o.backoffMax, o.backoffBase * Math.pow(2, n));
  return Math.round(delay / 2 + Math.random() * delay / 2);
}

// parse is the message a frame holds, or null if it holds no JSON object.
function parse(data) {
  try {
    var m = JSON.parse(data);
    return m && typeof m === "object" ? m : null;
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
  // The flow of the sessions this connection asks for: the one asked for,
  // else the one last used in this tab (a reload, even after a login,
  // stays in it), else empty (the server's first) until a qrcode message
  // names it.
  var flow = o.flow || savedFlow();

  function emit(state, fields) {
    current = { state: state, flow: flow };
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
  function savedFlow() {
    var f = "";
    try {
      f = (storage && storage.getItem(o.storageKey + ".flow")) || "";
    } catch (e) { /* blocked storage: no preference */ }
    return f && (!o.flows || o.flows.indexOf(f) >= 0) ? f : "";
  }
  function saveFlow() {
    if (!storage || !flow) return;
    try {
      storage.setItem(o.storageKey + ".flow", flow);
    } catch (e) { /* storage full or blocked */ }
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
    if (saved && flow && saved.flow && saved.flow !== flow) {
      save(null); // a session of the other flow: start one in this flow
      saved = null;
    }
    var query = [];
    // The flow goes along with a resume too: if the session is gone,
    // the new one the server makes is in the same flow.
    if (flow) query.push("flow=" + encodeURIComponent(flow));
    if (saved) {
      query.push("session=" + encodeURIComponent(saved.session), "resume=" + encodeURIComponent(saved.resume));
    }
    var u = url;
    if (query.length) u += (u.indexOf("?") < 0 ? "?" : "&") + query.join("&");
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
      var m = parse(ev.data);
      if (m) handle(m);
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

  // retry reconnects after a growing delay (backoff).
  function retry(code) {
    var delay = backoff(o, attempt);
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
        if (m.flow) flow = m.flow;
        saveFlow();
        save({ session: m.session, resume: m.resume, flow: flow });
        var left = typeof m.expires_in === "number" ? m.expires_in * 1000 : m.expires_at - Date.now();
        emit("waiting", {
          session: m.session,
          scene: m.scene,
          qrcodeURL: absoluteURL(m.qrcode_url),
          scanURL: m.scan_url,
          // A local deadline: immune to a wrong clock on this computer.
          expiresAt: Date.now() + left,
        });
        break;
      case "scanned":
        emit("scanned", { scene: current.scene, qrcodeURL: current.qrcodeURL, scanURL: current.scanURL, expiresAt: current.expiresAt });
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
        // The connection stays open: refresh gives a new code.
        clearTimeout(refreshTimer);
        emit("cancelled", { qrcodeURL: current.qrcodeURL });
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

  // absoluteURL resolves a path against the login server's host (the
  // WebSocket's), not the page's: the widget may be on another site.
  function absoluteURL(u) {
    if (typeof u !== "string" || u.charAt(0) !== "/" || u.charAt(1) === "/") return u;
    try {
      return new URL(u, url.replace(/^ws(s?):/i, "http$1:")).href;
    } catch (e) {
      return u;
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

  // restart forgets the session and starts over with a new code.
  function restart() {
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
    /** The flow asked for, or the server's answer; empty before the first code. */
    get flow() { return flow; },
    refresh: refresh,
    reconnect: reconnect,
    dropSocket: drop,
    restart: restart,
    /** setFlow starts over with a new code in flow f (no-op if it is the current one). */
    setFlow: function (f) {
      if (!f || f === flow) return;
      flow = f;
      saveFlow();
      restart();
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
        var m = parse(ev.data);
        if (m && m.type === "message" && o.onMessage) o.onMessage(m.event, m.data);
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
    var delay = backoff(o, attempt);
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
  cancelled: "Cancelled on the phone",
  expired: "QR code expired",
  error: "Something went wrong",
};

// What the flow switch calls each flow.
var flowNames = {
  oa: "WeChat QR code",
  miniprogram: "Mini Program code",
};

// How to scan, per flow (the default for a flow not named here).
var waitingText = {
  "": "Open WeChat, tap + then Scan, and point it at the code.",
  miniprogram: "Scan the code with WeChat. A Mini Program opens on your phone: tap Confirm login there.",
};
var scannedText = {
  "": "Waiting for you to confirm on the phone.",
  miniprogram: "Tap Confirm login in WeChat on your phone, or Cancel if it was not you.",
};

var widgets = 0; // mounted so far: names radio groups apart

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
// those of connect, plus flows: the server's flows (with two or more, a
// switch between them), simulator: true to link each code's scan_url, or
// the simulator's URL to also link a Mini Program code's page there (the
// WeChat simulator's phone page, in development), and onLogin:
// function (token, user, claims). It returns the connection.
function mount(root, options) {
  options = options || {};
  root.classList.add("scanlogin");
  root.textContent = "";
  var flows = (options.flows || []).filter(function (f) { return !!f; });
  var switcher = null;
  var radios = {};
  if (flows.length > 1) {
    // A native radio group: arrow keys move between the flows.
    var group = "sl-flow-" + (++widgets);
    switcher = el("fieldset", { id: "flows", class: "sl-flows" });
    switcher.appendChild(el("legend", { class: "sl-flows-legend" }, "Log in with"));
    flows.forEach(function (f) {
      var label = el("label", { class: "sl-flow" });
      var input = el("input", { type: "radio", name: group, value: f, id: "flow-" + f });
      input.addEventListener("change", function () {
        if (input.checked) c.setFlow(f);
      });
      radios[f] = input;
      label.appendChild(input);
      label.appendChild(el("span", null, flowNames[f] || f));
      switcher.appendChild(label);
    });
  }
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
  [switcher, state, qr, countdown, detail, sim, result, button, conn].forEach(function (e) { if (e) root.appendChild(e); });

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

  // simulatorLink is the simulator's page for the code shown, in
  // development: the scan URL of an official-account code, the Mini
  // Program page of a Mini Program code (found there by its scene).
  function simulatorLink(st) {
    if (!options.simulator) return "";
    if (st.flow === "miniprogram") {
      if (typeof options.simulator !== "string" || !st.scene) return "";
      return options.simulator.replace(/\/+$/, "") + "/mp?scene=" + encodeURIComponent(st.scene);
    }
    return st.scanURL || "";
  }

  function render(st) {
    s = st;
    var flow = st.flow || "";
    root.setAttribute("data-state", st.state);
    root.setAttribute("data-flow", flow);
    state.setAttribute("data-state", st.state);
    state.textContent = labels[st.state] || st.state;
    if (radios[flow]) radios[flow].checked = true;
    var hasQR = !!st.qrcodeURL && (st.state === "waiting" || st.state === "scanned");
    if (hasQR && img.getAttribute("src") !== st.qrcodeURL) img.setAttribute("src", st.qrcodeURL);
    img.setAttribute("alt", flow === "miniprogram" ? "WeChat Mini Program login code" : "WeChat login QR code");
    show(qr, hasQR || st.state === "expired" || st.state === "cancelled");
    qr.setAttribute("data-dim", st.state === "waiting" ? "no" : "yes");
    overlay.textContent = st.state === "scanned" ? "✓" : st.state === "expired" ? "Expired" : st.state === "cancelled" ? "Cancelled" : "";
    var scanURL = hasQR ? simulatorLink(st) : "";
    if (scanURL) sim.setAttribute("href", scanURL);
    show(sim, !!scanURL);

    var text = "";
    var btn = "";
    if (st.state === "waiting") text = waitingText[flow] || waitingText[""];
    if (st.state === "scanned") text = scannedText[flow] || scannedText[""];
    if (st.state === "cancelled") {
      text = "Nobody was logged in. Get a new code to try again.";
      btn = "Get a new code";
    }
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
    flow: options.flow,
    flows: flows.length ? flows : null,
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
      flows: (n.getAttribute("data-flows") || "").split(/[\s,]+/),
      flow: n.getAttribute("data-flow") || undefined,
      simulator: n.getAttribute("data-simulator") || false,
    });
    // The first widget is reachable for tests and the console.
    if (!global.__scanlogin) global.__scanlogin = n.__scanlogin;
  }
}

export { connect, listen, mount, decodeClaims };

// Loaded in a page (a <script type="module"> tag or a bundle), the module
// also serves pages without a script of their own: the global ScanLogin,
// and a widget in every [data-scanlogin] element.
if (typeof document !== "undefined") {
  global.ScanLogin = { connect: connect, listen: listen, mount: mount, decodeClaims: decodeClaims };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", autoMount);
  else autoMount();
}
