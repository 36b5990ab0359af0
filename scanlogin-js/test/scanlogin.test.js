// Unit tests of scanlogin.js with a fake WebSocket: node --test test/*.test.js
import { test } from "node:test";
import assert from "node:assert/strict";

import { connect, listen, decodeClaims } from "../scanlogin.js";

// FakeWebSocket stands for the browser's WebSocket; the test plays the
// server: open, receive, serverClose.
class FakeWebSocket {
  static all = [];
  constructor(url) {
    this.url = new URL(url);
    this.readyState = 0;
    this.sent = [];
    this.closed = null; // {code, reason} once the client closed it
    FakeWebSocket.all.push(this);
  }
  static get last() {
    return FakeWebSocket.all[FakeWebSocket.all.length - 1];
  }
  send(text) {
    this.sent.push(JSON.parse(text));
  }
  close(code, reason) {
    this.closed = { code, reason };
    this.readyState = 3;
    queueMicrotask(() => this.onclose && this.onclose({ code }));
  }
  open() {
    this.readyState = 1;
    this.onopen && this.onopen({});
  }
  receive(msg) {
    this.onmessage && this.onmessage({ data: JSON.stringify(msg) });
  }
  serverClose(code) {
    this.readyState = 3;
    this.onclose && this.onclose({ code });
  }
}
globalThis.WebSocket = FakeWebSocket;

// memoryStorage stands for sessionStorage.
function memoryStorage() {
  const m = new Map();
  return {
    getItem: (k) => (m.has(k) ? m.get(k) : null),
    setItem: (k, v) => m.set(k, String(v)),
    removeItem: (k) => m.delete(k),
  };
}

// until waits for cond to hold (the client's timers are set to a few ms).
async function until(cond, what) {
  for (let i = 0; i < 2000; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 2));
  }
  assert.fail("never: " + what);
}

// socketAfter waits for a socket newer than old.
async function socketAfter(old, what) {
  await until(() => FakeWebSocket.last !== old, what || "a new socket");
  return FakeWebSocket.last;
}

const URLBASE = "ws://login.example.com/ws";
const fast = { url: URLBASE, backoffBase: 2, backoffMax: 4, refreshDelay: 1, pingInterval: 1e6, pongTimeout: 1e6 };

function qrcode(n, flow = "oa") {
  return {
    type: "qrcode", flow, session: "S" + n, resume: "R" + n, scene: "scene" + n,
    qrcode_url: flow === "oa" ? "https://mp.example.com/showqrcode?ticket=T" + n : "/wxacode/k" + n,
    scan_url: flow === "oa" ? "https://weixin.example/q/" + n : "", expires_in: 120, expires_at: Date.now() + 120000,
  };
}

function jwt(claims) {
  const enc = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  return enc({ alg: "EdDSA", typ: "JWT" }) + "." + enc(claims) + ".c2ln";
}

function start(extra = {}) {
  const states = [];
  const conns = [];
  const messages = [];
  const storage = extra.storage || memoryStorage();
  const c = connect({
    ...fast, storage, ...extra,
    onState: (s) => states.push(s),
    onConnection: (e) => conns.push(e),
    onMessage: (event, data) => messages.push([event, data]),
  });
  return { c, states, conns, messages, storage, ws: FakeWebSocket.last };
}

test("states through a login", (t) => {
  const { c, states, messages, storage, ws } = start();
  t.after(() => c.close());
  assert.equal(states[0].state, "connecting");
  assert.equal(ws.url.search, "");
  ws.open();
  ws.receive(qrcode(1));
  assert.equal(c.state.state, "waiting");
  assert.equal(c.state.flow, "oa");
  assert.equal(c.state.session, "S1");
  assert.equal(c.state.qrcodeURL, "https://mp.example.com/showqrcode?ticket=T1");
  assert.ok(c.state.expiresAt > Date.now() + 100000);
  assert.deepEqual(JSON.parse(storage.getItem("scanlogin")), { session: "S1", resume: "R1", flow: "oa" });

  ws.receive({ type: "message", event: "cart.updated", data: { n: 2 } });
  assert.deepEqual(messages, [["cart.updated", { n: 2 }]]);

  ws.receive({ type: "scanned" });
  assert.equal(c.state.state, "scanned");
  assert.equal(c.state.scene, "scene1");

  const token = jwt({ sub: "oAlice", sid: "S1", exp: 2e9 });
  ws.receive({ type: "login", token, user: { openid: "oAlice" } });
  assert.equal(c.state.state, "loggedin");
  assert.equal(c.state.token, token);
  assert.equal(c.state.user.openid, "oAlice");
  assert.equal(c.state.claims.sub, "oAlice");
  assert.equal(storage.getItem("scanlogin"), null, "a used session is forgotten");
  assert.deepEqual(c.history, ["connecting", "waiting", "scanned", "loggedin"]);
  assert.deepEqual(decodeClaims(token), { sub: "oAlice", sid: "S1", exp: 2e9 });
  assert.equal(decodeClaims("not a token"), null);
});

test("a Mini Program code's path is resolved against the login server", (t) => {
  const { c, ws } = start({ flow: "miniprogram" });
  t.after(() => c.close());
  assert.equal(ws.url.searchParams.get("flow"), "miniprogram");
  ws.open();
  ws.receive(qrcode(1, "miniprogram"));
  assert.equal(c.state.qrcodeURL, "http://login.example.com/wxacode/k1");
  assert.equal(c.state.scanURL, "");
});

test("expired codes are refreshed, up to maxAutoRefresh; cancelled waits for refresh()", async (t) => {
  const { c, ws } = start({ maxAutoRefresh: 1 });
  t.after(() => c.close());
  ws.open();
  ws.receive(qrcode(1));
  ws.receive({ type: "expired" });
  assert.equal(c.state.state, "expired");
  assert.equal(c.state.autoRefresh, true);
  await until(() => ws.sent.some((m) => m.type === "refresh"), "an automatic refresh");
  ws.receive(qrcode(2));
  assert.equal(c.state.session, "S2");

  ws.receive({ type: "expired" });
  assert.equal(c.state.autoRefresh, false, "past maxAutoRefresh the user clicks");
  ws.receive(qrcode(3));
  ws.receive({ type: "cancelled" });
  assert.equal(c.state.state, "cancelled");
  const before = ws.sent.length;
  c.refresh();
  assert.deepEqual(ws.sent.slice(before), [{ type: "refresh" }]);
});

test("a dropped connection resumes its session, in its flow", async (t) => {
  const { c, conns, ws } = start({ flow: "miniprogram" });
  t.after(() => c.close());
  ws.open();
  ws.receive(qrcode(1, "miniprogram"));
  ws.serverClose(1006);
  assert.equal(conns.at(-1).status, "reconnecting");
  const ws2 = await socketAfter(ws, "a reconnect");
  assert.equal(ws2.url.searchParams.get("session"), "S1");
  assert.equal(ws2.url.searchParams.get("resume"), "R1");
  assert.equal(ws2.url.searchParams.get("flow"), "miniprogram");
  ws2.open();
  assert.deepEqual(conns.at(-1), { status: "open", resumed: true });

  // The server lost the session: it says so, and sends a new code.
  ws2.receive({ type: "error", code: "resume_failed", message: "gone" });
  assert.notEqual(c.state.state, "error");
  ws2.receive(qrcode(2, "miniprogram"));
  assert.equal(c.state.session, "S2");

  // dropSocket (and the ping timeout) abandon the socket the same way.
  c.dropSocket();
  assert.equal(ws2.closed.code, 4000);
  const ws3 = await socketAfter(ws2, "a reconnect after dropSocket");
  assert.equal(ws3.url.searchParams.get("session"), "S2");
});

test("a reload resumes the tab's session and keeps its flow", (t) => {
  const storage = memoryStorage();
  const first = start({ storage });
  first.ws.open();
  first.ws.receive(qrcode(1, "miniprogram"));
  first.c.close();

  const { c, ws } = start({ storage }); // no flow asked for: the tab's
  t.after(() => c.close());
  assert.equal(ws.url.searchParams.get("flow"), "miniprogram");
  assert.equal(ws.url.searchParams.get("session"), "S1");
  assert.equal(c.flow, "miniprogram");
});

test("setFlow starts over in the other flow, which later connections keep", async (t) => {
  const { c, ws, storage } = start();
  t.after(() => c.close());
  ws.open();
  ws.receive(qrcode(1));
  c.setFlow("miniprogram");
  assert.equal(ws.closed.code, 1000);
  const ws2 = FakeWebSocket.last;
  assert.notEqual(ws2, ws);
  assert.equal(ws2.url.searchParams.get("flow"), "miniprogram");
  assert.equal(ws2.url.searchParams.get("session"), null, "the old session is not resumed");
  assert.equal(storage.getItem("scanlogin.flow"), "miniprogram");
  ws2.open();
  ws2.receive(qrcode(2, "miniprogram"));
  ws2.serverClose(1001);
  const ws3 = await socketAfter(ws2);
  assert.equal(ws3.url.searchParams.get("flow"), "miniprogram");
});

test("close 4002: another tab took the session; no resume, storage cleared", async (t) => {
  const { c, conns, ws, storage } = start();
  t.after(() => c.close());
  ws.open();
  ws.receive(qrcode(1));
  ws.receive({ type: "error", code: "session_taken", message: "resumed elsewhere" });
  ws.serverClose(4002);
  assert.equal(c.state.state, "error");
  assert.equal(c.state.code, "session_taken");
  assert.deepEqual(conns.at(-1), { status: "closed", code: 4002 });
  assert.equal(storage.getItem("scanlogin"), null);
  c.reconnect();
  c.refresh();
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(FakeWebSocket.last, ws, "it never connects again by itself");

  // restart is the way back: a new session.
  c.restart();
  assert.notEqual(FakeWebSocket.last, ws);
  assert.equal(FakeWebSocket.last.url.searchParams.get("session"), null);
});

test("listen: close 4001 gets a fresh token from getToken and reconnects", async (t) => {
  const first = jwt({ sub: "oAlice", exp: Math.floor(Date.now() / 1000) + 300 });
  const fresh = jwt({ sub: "oAlice", exp: Math.floor(Date.now() / 1000) + 600 });
  let asked = 0;
  const got = [];
  const conns = [];
  const l = listen({
    ...fast, token: first,
    getToken: () => { asked++; return Promise.resolve(fresh); },
    onMessage: (event, data) => got.push([event, data]),
    onConnection: (e) => conns.push(e),
  });
  t.after(() => l.close());
  const ws = FakeWebSocket.last;
  assert.equal(ws.url.searchParams.get("token"), first);
  assert.equal(asked, 0, "a live token is used as it is");
  ws.open();
  ws.receive({ type: "message", event: "order.paid", data: { order: "A1001" } });
  assert.deepEqual(got, [["order.paid", { order: "A1001" }]]);

  ws.serverClose(4001);
  const ws2 = await socketAfter(ws, "a reconnect with a fresh token");
  assert.equal(asked, 1);
  assert.equal(ws2.url.searchParams.get("token"), fresh);
  assert.deepEqual(conns.at(-1), { status: "reconnecting", delay: 0, attempt: 0, code: 4001 });
});

test("listen: an expired token is replaced before connecting; without getToken it stops", async (t) => {
  const stale = jwt({ sub: "oAlice", exp: Math.floor(Date.now() / 1000) - 10 });
  const fresh = jwt({ sub: "oAlice", exp: Math.floor(Date.now() / 1000) + 600 });
  const before = FakeWebSocket.last;
  const l = listen({ ...fast, token: stale, getToken: () => fresh });
  t.after(() => l.close());
  const ws = await socketAfter(before);
  assert.equal(ws.url.searchParams.get("token"), fresh);

  const conns = [];
  const ok = jwt({ sub: "oBob", exp: Math.floor(Date.now() / 1000) + 300 });
  const l2 = listen({ ...fast, token: ok, onConnection: (e) => conns.push(e) });
  t.after(() => l2.close());
  const ws2 = FakeWebSocket.last;
  ws2.open();
  ws2.serverClose(4001);
  assert.deepEqual(conns.at(-1), { status: "closed", code: 4001, reason: "token expired" });
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(FakeWebSocket.last, ws2, "no reconnect without a token");
});

test("frames that hold no JSON object are ignored, by connect and by listen", (t) => {
  const { c, ws } = start();
  t.after(() => c.close());
  ws.open();
  for (const data of ["not json", "null", "42", '"qrcode"']) ws.onmessage({ data });
  assert.equal(c.state.state, "connecting");
  ws.receive(qrcode(1));
  assert.equal(c.state.state, "waiting");

  const got = [];
  const l = listen({ ...fast, token: jwt({ sub: "oAlice", exp: 2e9 }), onMessage: (e, d) => got.push([e, d]) });
  t.after(() => l.close());
  const lw = FakeWebSocket.last;
  lw.open();
  for (const data of ["not json", "null", "[]"]) lw.onmessage({ data });
  lw.receive({ type: "message", event: "order.paid", data: { id: 7 } });
  assert.deepEqual(got, [["order.paid", { id: 7 }]]);
});
