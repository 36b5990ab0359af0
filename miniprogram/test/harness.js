// Test doubles for the login page: a fake `wx`, a fake clock, and a Page
// harness that behaves like WeChat's for what the page uses (data, setData,
// handlers called with the page as `this`).
'use strict';

const logic = require('../pages/login/logic.js');

const API = 'https://login.test';
// 32 characters of WeChat's allowed scene set.
const SCENE = 'AbCdEfGhIjKlMnOpQrStUv0123456789';

function fakeWx(opts) {
  opts = opts || {};
  const wx = {
    logins: [],
    requests: [],
    titles: [],
    login(o) {
      const call = {
        ok(code) { o.success({ code: code, errMsg: 'login:ok' }); },
        fail(errMsg) { o.fail({ errMsg: errMsg || 'login:fail' }); }
      };
      wx.logins.push(call);
      if (opts.autoLogin !== false) {
        call.ok('code-' + wx.logins.length);
      }
    },
    request(o) {
      const call = {
        url: o.url,
        method: o.method,
        data: o.data,
        header: o.header,
        reply(statusCode, data) { o.success({ statusCode: statusCode, data: data, header: {} }); },
        fail(errMsg) { o.fail({ errMsg: errMsg || 'request:fail' }); }
      };
      wx.requests.push(call);
    },
    getSystemInfoSync() {
      return { language: opts.language === undefined ? 'zh_CN' : opts.language };
    },
    setNavigationBarTitle(o) { wx.titles.push(o.title); }
  };
  if (opts.appBaseLanguage !== undefined) {
    wx.getAppBaseInfo = function () { return { language: opts.appBaseLanguage }; };
  }
  return wx;
}

function fakeClock(start) {
  const clock = {
    t: start === undefined ? 1700000000000 : start,
    next: 1,
    intervals: new Map(),
    now() { return clock.t; },
    setInterval(fn, ms) {
      const id = clock.next++;
      clock.intervals.set(id, { fn: fn, ms: ms, due: clock.t + ms });
      return id;
    },
    clearInterval(id) { clock.intervals.delete(id); },
    // advance moves time on, firing due intervals in order.
    advance(ms) {
      const end = clock.t + ms;
      for (;;) {
        let first = null;
        for (const [id, iv] of clock.intervals) {
          if (iv.due <= end && (first === null || iv.due < first.iv.due)) {
            first = { id: id, iv: iv };
          }
        }
        if (first === null) {
          break;
        }
        clock.t = first.iv.due;
        first.iv.due += first.iv.ms;
        first.iv.fn();
      }
      clock.t = end;
    }
  };
  return clock;
}

// instantiate copies a Page definition the way Page() does: data deep-copied,
// methods reachable on the instance, setData merging top-level keys.
function instantiate(def) {
  const page = {};
  for (const k of Object.keys(def)) {
    if (typeof def[k] === 'function') {
      page[k] = def[k];
    }
  }
  page.data = JSON.parse(JSON.stringify(def.data));
  page.setDataCalls = 0;
  page.setData = function (patch) {
    page.setDataCalls++;
    for (const k of Object.keys(patch)) {
      page.data[k] = JSON.parse(JSON.stringify(patch[k] === undefined ? null : patch[k]));
    }
  };
  return page;
}

// open builds the page with a fake wx and clock and runs onLoad with options.
function open(options, wxOpts) {
  const wx = fakeWx(wxOpts);
  const clock = fakeClock();
  const def = logic.page({ wx: wx, apiBase: API + '/', timers: clock });
  const page = instantiate(def);
  page.onLoad(options === undefined ? { scene: encodeURIComponent(SCENE) } : options);
  return { wx: wx, clock: clock, page: page };
}

function scanAnswer(extra) {
  return Object.assign({
    confirm: 'secret-T',
    expires_in: 100,
    site: 'Example Shop',
    requester: { browser: 'Chrome 120', os: 'Windows 10', ip: '203.0.113.7', at: Date.UTC(2024, 0, 2, 3, 4, 5) }
  }, extra || {});
}

// toConfirm opens the page and answers the scan, leaving it in "confirm".
function toConfirm(wxOpts) {
  const h = open(undefined, wxOpts);
  h.wx.requests[0].reply(200, scanAnswer());
  return h;
}

module.exports = { logic, API, SCENE, fakeWx, fakeClock, instantiate, open, scanAnswer, toConfirm };
