'use strict';

// Local time is shown on the page: pin the zone so the expected text is fixed.
process.env.TZ = 'Asia/Shanghai';

const test = require('node:test');
const assert = require('node:assert');
const { logic, API, SCENE, open, scanAnswer, toConfirm } = require('./harness.js');

const zh = logic.messages.zh;
const en = logic.messages.en;

test('happy path: scan shows the requester, confirm logs in', () => {
  const { wx, clock, page } = open(undefined, { language: 'en' });
  assert.strictEqual(page.data.state, 'loading');
  assert.strictEqual(wx.logins.length, 1);
  assert.strictEqual(wx.requests.length, 1);
  const scan = wx.requests[0];
  assert.strictEqual(scan.url, API + '/miniprogram/scan');
  assert.strictEqual(scan.method, 'POST');
  assert.deepStrictEqual(scan.data, { scene: SCENE, code: 'code-1' });

  scan.reply(200, scanAnswer());
  const d = page.data;
  assert.strictEqual(d.state, 'confirm');
  assert.strictEqual(d.title, 'Log in to Example Shop?');
  assert.strictEqual(d.browser, 'Chrome 120');
  assert.strictEqual(d.os, 'Windows 10');
  assert.strictEqual(d.ip, '203.0.113.7');
  assert.strictEqual(d.time, '2024-01-02 11:04:05');
  assert.strictEqual(d.countdown, 'Expires in 1:40');
  assert.strictEqual(d.busy, false);
  assert.strictEqual(clock.intervals.size, 1);

  page.onConfirm();
  assert.strictEqual(page.data.busy, true);
  assert.strictEqual(page.data.pending, 'confirm');
  assert.strictEqual(wx.requests.length, 2);
  const confirm = wx.requests[1];
  assert.strictEqual(confirm.url, API + '/miniprogram/confirm');
  assert.deepStrictEqual(confirm.data, { scene: SCENE, confirm: 'secret-T', approve: true });

  confirm.reply(200, { result: 'confirmed' });
  assert.strictEqual(page.data.state, 'confirmed');
  assert.strictEqual(page.data.busy, false);
  assert.match(page.data.message, /^You're logged in on your computer\./);
  assert.strictEqual(clock.intervals.size, 0, 'countdown stopped');
});

test('cancel sends approve:false and shows the cancelled state', () => {
  const { wx, page } = toConfirm();
  page.onCancel();
  assert.strictEqual(page.data.pending, 'cancel');
  assert.deepStrictEqual(wx.requests[1].data, { scene: SCENE, confirm: 'secret-T', approve: false });
  wx.requests[1].reply(200, { result: 'cancelled' });
  assert.strictEqual(page.data.state, 'cancelled');
  assert.strictEqual(page.data.title, zh.cancelled_title);
  assert.strictEqual(page.data.message, zh.cancelled_text);
});

test('every scan error code gets its own sentence and the error state', () => {
  const cases = [
    [400, 'bad_request', false],
    [404, 'not_found', false],
    [409, 'already_used', false],
    [410, 'expired', false],
    [429, 'rate_limited', true],
    [503, 'unavailable', true]
  ];
  for (const [status, code, retry] of cases) {
    for (const lang of ['zh', 'en']) {
      const { wx, page } = open(undefined, { language: lang === 'en' ? 'en_US' : 'zh_CN' });
      wx.requests[0].reply(status, { error: code, message: 'server text' });
      assert.strictEqual(page.data.state, 'error', code);
      assert.strictEqual(page.data.message, logic.messages[lang].errors[code], code + ' ' + lang);
      assert.notStrictEqual(page.data.message, logic.messages[lang].errors.unknown, code);
      assert.strictEqual(page.data.canRetry, retry, code);
      assert.match(page.data.errorCode, new RegExp('^' + code));
    }
  }
});

test('every confirm error code that ends the request shows its sentence', () => {
  const cases = [
    [400, 'bad_request', en.errors.bad_request],
    [403, 'forbidden', en.errors.forbidden],
    [404, 'not_found', en.errors.not_found],
    [409, 'already_used', en.errors.already_used_confirm],
    [410, 'expired', en.errors.expired]
  ];
  for (const [status, code, text] of cases) {
    const { wx, clock, page } = toConfirm({ language: 'en' });
    page.onConfirm();
    wx.requests[1].reply(status, { error: code, message: 'x' });
    assert.strictEqual(page.data.state, 'error', code);
    assert.strictEqual(page.data.message, text, code);
    assert.strictEqual(page.data.canRetry, false, code);
    assert.strictEqual(clock.intervals.size, 0, code);
  }
});

test('a passing confirm failure keeps the choice open with a note', () => {
  const cases = [
    ['unavailable', (r) => r.reply(503, { error: 'unavailable', message: 'x' })],
    ['rate_limited', (r) => r.reply(429, { error: 'rate_limited', message: 'x' })],
    ['network', (r) => r.fail('request:fail timeout')],
    ['unknown', (r) => r.reply(500, 'Internal Server Error')]
  ];
  for (const [code, answer] of cases) {
    const { wx, page } = toConfirm();
    page.onConfirm();
    answer(wx.requests[1]);
    assert.strictEqual(page.data.state, 'confirm', code);
    assert.strictEqual(page.data.busy, false, code);
    assert.strictEqual(page.data.notice, zh.errors[code], code);
    page.onConfirm();
    assert.strictEqual(wx.requests.length, 3, code + ': the user can tap again');
    wx.requests[2].reply(200, { result: 'confirmed' });
    assert.strictEqual(page.data.state, 'confirmed', code);
    assert.strictEqual(page.data.notice, '', code);
  }
});

test('invalid_code: one fresh wx.login and scan, then the message', () => {
  // Retried once, then succeeds.
  let h = open();
  h.wx.requests[0].reply(401, { error: 'invalid_code', message: 'x' });
  assert.strictEqual(h.wx.logins.length, 2);
  assert.strictEqual(h.wx.requests.length, 2);
  assert.deepStrictEqual(h.wx.requests[1].data, { scene: SCENE, code: 'code-2' });
  assert.strictEqual(h.page.data.state, 'loading');
  h.wx.requests[1].reply(200, scanAnswer());
  assert.strictEqual(h.page.data.state, 'confirm');

  // Refused twice: the message, and no third attempt.
  h = open();
  h.wx.requests[0].reply(401, { error: 'invalid_code', message: 'x' });
  h.wx.requests[1].reply(401, { error: 'invalid_code', message: 'x' });
  assert.strictEqual(h.wx.logins.length, 2);
  assert.strictEqual(h.wx.requests.length, 2);
  assert.strictEqual(h.page.data.state, 'error');
  assert.strictEqual(h.page.data.message, zh.errors.invalid_code);
});

test('network failure on scan: message, and Try again starts over', () => {
  const { wx, page } = open(undefined, { language: 'en' });
  wx.requests[0].fail('request:fail timeout');
  assert.strictEqual(page.data.state, 'error');
  assert.strictEqual(page.data.message, en.errors.network);
  assert.strictEqual(page.data.canRetry, true);
  assert.match(page.data.errorCode, /request:fail timeout/);

  page.onRetry();
  assert.strictEqual(page.data.state, 'loading');
  assert.strictEqual(wx.logins.length, 2);
  assert.strictEqual(wx.requests.length, 2);
  wx.requests[1].reply(200, scanAnswer());
  assert.strictEqual(page.data.state, 'confirm');
});

test('Try again is refused after a final error', () => {
  const { wx, page } = open();
  wx.requests[0].reply(410, { error: 'expired', message: 'x' });
  page.onRetry();
  assert.strictEqual(wx.logins.length, 1);
  assert.strictEqual(page.data.state, 'error');
});

test('wx.login failure or a missing code says so', () => {
  const h = open(undefined, { autoLogin: false });
  h.wx.logins[0].fail('login:fail');
  assert.strictEqual(h.page.data.state, 'error');
  assert.strictEqual(h.page.data.message, zh.errors.wx_login);
  assert.strictEqual(h.wx.requests.length, 0);

  const h2 = open(undefined, { autoLogin: false });
  h2.wx.logins[0].ok('');
  assert.strictEqual(h2.page.data.message, zh.errors.wx_login);
  assert.strictEqual(h2.wx.requests.length, 0);
});

test('unexpected answers count as unknown, proxies 502/504 as unavailable', () => {
  let h = open();
  h.wx.requests[0].reply(418, { error: 'teapot', message: 'x' });
  assert.strictEqual(h.page.data.message, zh.errors.unknown);

  h = open();
  h.wx.requests[0].reply(200, { expires_in: 100 }); // no confirm secret
  assert.strictEqual(h.page.data.state, 'error');
  assert.strictEqual(h.page.data.message, zh.errors.unknown);

  h = open();
  h.wx.requests[0].reply(502, '<html>Bad Gateway</html>');
  assert.strictEqual(h.page.data.message, zh.errors.unavailable);

  h = open();
  h.wx.requests[0].reply(504, '');
  assert.strictEqual(h.page.data.message, zh.errors.unavailable);

  // A JSON body that arrived as a string is still read.
  h = open();
  h.wx.requests[0].reply(404, '{"error":"not_found","message":"x"}');
  assert.strictEqual(h.page.data.message, zh.errors.not_found);
});

test('double tap sends one request', () => {
  const { wx, page } = toConfirm();
  page.onConfirm();
  page.onConfirm();
  page.onCancel();
  assert.strictEqual(wx.requests.length, 2, 'one scan, one confirm');
  assert.strictEqual(wx.requests[1].data.approve, true);
  wx.requests[1].reply(200, { result: 'confirmed' });
  page.onConfirm();
  page.onCancel();
  assert.strictEqual(wx.requests.length, 2, 'nothing after the answer');
});

test('a missing or malformed scene stops before any call', () => {
  const bad = [
    undefined,
    {},
    { scene: '' },
    { scene: 'short' },
    { scene: encodeURIComponent('A'.repeat(33)) },
    { scene: encodeURIComponent('AbCdEfGhIjKlMnOpQrStUv 0123') }, // space is not allowed
    { scene: '%E0%A4%A' } // broken percent-encoding
  ];
  for (const options of bad) {
    const h = open(options === undefined ? null : options, { language: 'en' });
    assert.strictEqual(h.page.data.state, 'error', JSON.stringify(options));
    assert.strictEqual(h.page.data.message, en.errors.bad_scene);
    assert.strictEqual(h.page.data.canRetry, false);
    assert.strictEqual(h.wx.logins.length, 0);
    assert.strictEqual(h.wx.requests.length, 0);
  }
});

test('the scene is URL-decoded and may use every allowed character', () => {
  const scene = "Ab0!#$&'()*+,/:;=?@-._~xyzXYZ12";
  assert.ok(scene.length >= 22 && scene.length <= 32);
  const { wx } = open({ scene: encodeURIComponent(scene) });
  assert.strictEqual(wx.requests[0].data.scene, scene);
});

test('language follows WeChat: English, Chinese, and Chinese by default', () => {
  let h = open(undefined, { language: 'en' });
  assert.strictEqual(h.page.data.lang, 'en');
  assert.strictEqual(h.page.data.t.btn_confirm, 'Confirm login');
  assert.deepStrictEqual(h.wx.titles, ['Log in']);

  h = open(undefined, { language: 'zh_CN' });
  assert.strictEqual(h.page.data.lang, 'zh');
  assert.strictEqual(h.page.data.t.btn_confirm, '确认登录');
  h.wx.requests[0].reply(200, scanAnswer());
  assert.strictEqual(h.page.data.title, '登录 Example Shop？');
  assert.strictEqual(h.page.data.countdown, '1:40 后失效');

  h = open(undefined, { language: '' });
  assert.strictEqual(h.page.data.lang, 'zh');

  // The newer getAppBaseInfo wins over getSystemInfoSync.
  h = open(undefined, { language: 'zh_CN', appBaseLanguage: 'en_GB' });
  assert.strictEqual(h.page.data.lang, 'en');
});

test('countdown runs from expires_in and ends in expired', () => {
  const { clock, page } = toConfirm({ language: 'en' });
  assert.strictEqual(page.data.countdown, 'Expires in 1:40');
  clock.advance(41000);
  assert.strictEqual(page.data.countdown, 'Expires in 0:59');
  clock.advance(59000);
  assert.strictEqual(page.data.state, 'error');
  assert.strictEqual(page.data.message, en.errors.expired);
  assert.strictEqual(clock.intervals.size, 0);
});

test('a confirm in flight at expiry is decided by its answer', () => {
  const { wx, clock, page } = toConfirm();
  clock.advance(99000);
  page.onConfirm();
  clock.advance(5000);
  assert.strictEqual(page.data.state, 'confirm');
  wx.requests[1].reply(200, { result: 'confirmed' });
  assert.strictEqual(page.data.state, 'confirmed');

  // A passing failure after expiry: nothing left to try.
  const h = toConfirm();
  h.clock.advance(99000);
  h.page.onConfirm();
  h.clock.advance(5000);
  h.wx.requests[1].fail('request:fail timeout');
  assert.strictEqual(h.page.data.state, 'error');
  assert.strictEqual(h.page.data.message, zh.errors.expired);
});

test('missing requester details show a placeholder, not blanks', () => {
  const { wx, page } = open(undefined, { language: 'en' });
  wx.requests[0].reply(200, { confirm: 'T', expires_in: 60, site: '', requester: {} });
  assert.strictEqual(page.data.title, en.confirm_title_nosite);
  for (const k of ['browser', 'os', 'ip', 'time']) {
    assert.strictEqual(page.data[k], en.unknown_value, k);
  }
});

test('after unload, late answers change nothing', () => {
  const { wx, clock, page } = toConfirm();
  page.onConfirm();
  page.onUnload();
  assert.strictEqual(clock.intervals.size, 0);
  const calls = page.setDataCalls;
  wx.requests[1].reply(200, { result: 'confirmed' });
  clock.advance(200000);
  assert.strictEqual(page.setDataCalls, calls);
});

test('formatting helpers', () => {
  assert.strictEqual(logic.formatCountdown(0), '0:00');
  assert.strictEqual(logic.formatCountdown(9), '0:09');
  assert.strictEqual(logic.formatCountdown(125), '2:05');
  assert.strictEqual(logic.formatTime(undefined), '');
  assert.strictEqual(logic.formatTime(Date.UTC(2024, 11, 31, 16, 0, 0)), '2025-01-01 00:00:00');
});
