'use strict';

// The files WeChat reads besides logic.js: the page is registered, login.js
// hands Page() the logic with the configured backend, and the template only
// names handlers and labels that exist.

const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { logic, fakeWx, instantiate } = require('./harness.js');

const root = path.join(__dirname, '..');
const read = (p) => fs.readFileSync(path.join(root, p), 'utf8');

test('app.json registers the login page, and its files exist', () => {
  const app = JSON.parse(read('app.json'));
  assert.ok(app.pages.includes('pages/login/login'));
  for (const ext of ['js', 'wxml', 'wxss', 'json']) {
    assert.ok(fs.existsSync(path.join(root, 'pages/login/login.' + ext)), ext);
  }
  JSON.parse(read('pages/login/login.json'));
  JSON.parse(read('sitemap.json'));
});

test('login.js gives Page() the logic with config.apiBase', () => {
  const config = require('../config.js');
  assert.match(config.apiBase, /^https:\/\//);

  let def = null;
  const wx = fakeWx();
  global.Page = (d) => { def = d; };
  global.wx = wx;
  try {
    require('../pages/login/login.js');
  } finally {
    delete global.Page;
    delete global.wx;
  }
  assert.ok(def, 'Page() was called');
  const page = instantiate(def);
  page.onLoad({ scene: 'AbCdEfGhIjKlMnOpQrStUv0123456789' });
  assert.strictEqual(wx.requests.length, 1);
  assert.strictEqual(wx.requests[0].url, config.apiBase.replace(/\/+$/, '') + '/miniprogram/scan');
});

test('the template names only existing handlers, labels and data', () => {
  const wxml = read('pages/login/login.wxml');
  const def = logic.page({ wx: fakeWx(), apiBase: 'https://x' });

  const handlers = [...wxml.matchAll(/bind\w+="(\w+)"/g)].map((m) => m[1]);
  assert.deepStrictEqual([...new Set(handlers)].sort(), ['onCancel', 'onConfirm', 'onRetry']);
  for (const h of handlers) {
    assert.strictEqual(typeof def[h], 'function', h);
  }

  const labels = [...wxml.matchAll(/\bt\.(\w+)/g)].map((m) => m[1]);
  assert.ok(labels.length > 0);
  for (const key of labels) {
    for (const lang of ['zh', 'en']) {
      assert.strictEqual(typeof logic.messages[lang][key], 'string', lang + ' ' + key);
      // The template shows these as they are: no placeholder may be left in.
      assert.doesNotMatch(logic.messages[lang][key], /\{\w+\}/, lang + ' ' + key);
    }
  }

  // Every bare name in {{...}} is a data field (t.* checked above).
  const names = new Set();
  for (const m of wxml.matchAll(/\{\{([^}]*)\}\}/g)) {
    const expr = m[1].replace(/'[^']*'/g, '');
    for (const w of expr.matchAll(/(?<![.\w])([A-Za-z_]\w*)/g)) {
      names.add(w[1]);
    }
  }
  for (const name of names) {
    assert.ok(Object.prototype.hasOwnProperty.call(def.data, name), name);
  }

  for (const state of ['loading', 'confirm', 'confirmed', 'cancelled']) {
    assert.ok(wxml.includes("state === '" + state + "'"), state);
  }
});

test('both languages have the same texts and every error code', () => {
  const keys = (o) => Object.keys(o).sort();
  assert.deepStrictEqual(keys(logic.messages.zh), keys(logic.messages.en));
  assert.deepStrictEqual(keys(logic.messages.zh.errors), keys(logic.messages.en.errors));
  const codes = ['bad_request', 'invalid_code', 'not_found', 'already_used', 'expired',
    'rate_limited', 'unavailable', 'forbidden', 'network', 'unknown'];
  for (const code of codes) {
    assert.ok(logic.messages.zh.errors[code], code);
  }
  // No two codes share a sentence (a wrong mapping would then go unnoticed).
  for (const lang of ['zh', 'en']) {
    const texts = Object.values(logic.messages[lang].errors);
    assert.strictEqual(new Set(texts).size, texts.length, lang);
  }
});

test('logic.js also loads as a plain browser script', () => {
  const vm = require('node:vm');
  const window = {};
  window.self = window;
  vm.createContext(window);
  vm.runInContext(read('pages/login/logic.js'), window);
  assert.strictEqual(typeof window.ScanLoginPage.page, 'function');
  assert.strictEqual(window.ScanLoginPage.parseScene({ scene: 'AbCdEfGhIjKlMnOpQrStUv0123456789' }),
    'AbCdEfGhIjKlMnOpQrStUv0123456789');
});
