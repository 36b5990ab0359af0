/*
 * The login page's behaviour, kept apart from Page() so that Node tests and a
 * browser stand-in of the page can run the very same code with their own `wx`.
 *
 * A scanned login code opens the page with a scene. The page asks WeChat for a
 * login code (wx.login), sends both to the backend's /miniprogram/scan, shows
 * who is asking (site, browser, OS, IP, time) and lets the user confirm or
 * cancel through /miniprogram/confirm.
 *
 * States (data.state): loading -> confirm -> confirmed | cancelled, or error.
 *
 * Written as ES5 with no dependencies: WeChat's JS runtime loads it through
 * CommonJS; a plain <script> tag gets it as the global ScanLoginPage.
 */
(function (root, factory) {
  if (typeof module === 'object' && module && module.exports) {
    module.exports = factory();
  } else {
    root.ScanLoginPage = factory();
  }
})(typeof self !== 'undefined' ? self : this, function () {
  'use strict';

  // WeChat's allowed scene characters; our backend makes scenes of 22 to 32.
  var SCENE_RE = /^[0-9A-Za-z!#$&'()*+,\/:;=?@\-._~]{22,32}$/;

  var REQUEST_TIMEOUT_MS = 15000;

  // Errors after which trying again may help; the page offers a button for them.
  var TRANSIENT = {
    network: true,
    unavailable: true,
    rate_limited: true,
    unknown: true,
    wx_login: true
  };

  var MESSAGES = {
    zh: {
      nav_title: '扫码登录',
      loading: '正在读取登录请求…',
      confirm_title: '登录 {site}？',
      confirm_title_nosite: '登录此网站？',
      confirm_lead: '有人正在电脑上请求用你的微信登录。请确认是你本人在操作，否则请取消。',
      label_browser: '浏览器',
      label_os: '操作系统',
      label_ip: 'IP 地址',
      label_time: '请求时间',
      expires_in: '{time} 后失效',
      btn_confirm: '确认登录',
      btn_cancel: '取消',
      btn_retry: '重试',
      confirmed_title: '登录成功',
      confirmed_text: '你已在电脑上登录，可以回到电脑继续操作。',
      cancelled_title: '已取消',
      cancelled_text: '电脑上的登录已取消。如需登录，请在电脑上刷新二维码后重新扫码。',
      error_title: '无法登录',
      error_detail: '错误代码：',
      unknown_value: '未知',
      errors: {
        bad_scene: '请用微信扫描电脑屏幕上的登录二维码来打开此页面。',
        wx_login: '微信暂时无法确认你的身份，请重试。',
        bad_request: '无法识别此登录请求，请重新扫描电脑上的二维码。',
        invalid_code: '微信未能确认你的身份。请关闭此页面，重新扫描电脑上的二维码。',
        not_found: '登录请求不存在或已结束。请在电脑上刷新页面，扫描新的二维码。',
        already_used: '此二维码已被使用。请在电脑上刷新页面，扫描新的二维码。',
        already_used_confirm: '此登录请求已经确认或取消过了。',
        expired: '二维码已过期。请在电脑上刷新页面，扫描新的二维码。',
        rate_limited: '操作太频繁，请稍等一分钟后再试。',
        unavailable: '登录服务暂时不可用，请稍后再试。',
        forbidden: '无法验证此次确认。请重新扫描电脑上的二维码。',
        network: '无法连接登录服务，请检查网络后重试。',
        unknown: '出了点问题。请重试，或在电脑上刷新二维码后重新扫码。'
      }
    },
    en: {
      nav_title: 'Log in',
      loading: 'Reading the login request…',
      confirm_title: 'Log in to {site}?',
      confirm_title_nosite: 'Log in to this website?',
      confirm_lead: 'A computer is asking to log in with your WeChat. Confirm only if you are the one doing it.',
      label_browser: 'Browser',
      label_os: 'Operating system',
      label_ip: 'IP address',
      label_time: 'Requested at',
      expires_in: 'Expires in {time}',
      btn_confirm: 'Confirm login',
      btn_cancel: 'Cancel',
      btn_retry: 'Try again',
      confirmed_title: 'Logged in',
      confirmed_text: "You're logged in on your computer. You can go back to it now.",
      cancelled_title: 'Cancelled',
      cancelled_text: 'Nobody was logged in. To log in, refresh the QR code on your computer and scan it again.',
      error_title: "Can't log in",
      error_detail: 'Error code:',
      unknown_value: 'Unknown',
      errors: {
        bad_scene: "This page only works when you open it by scanning the login QR code on your computer's screen.",
        wx_login: "WeChat couldn't confirm who you are just now. Please try again.",
        bad_request: "The login request wasn't understood. Scan the QR code on your computer again.",
        invalid_code: "WeChat couldn't confirm who you are. Close this page and scan the QR code on your computer again.",
        not_found: "This login request doesn't exist or has ended. Refresh the page on your computer and scan the new QR code.",
        already_used: 'This QR code has already been used. Refresh the page on your computer and scan the new QR code.',
        already_used_confirm: 'This login request has already been confirmed or cancelled.',
        expired: 'This QR code has expired. Refresh the page on your computer and scan the new QR code.',
        rate_limited: 'Too many attempts. Please wait a minute and try again.',
        unavailable: 'The login service is temporarily unavailable. Please try again in a moment.',
        forbidden: "This confirmation couldn't be verified. Scan the QR code on your computer again.",
        network: "Couldn't reach the login service. Check your network connection and try again.",
        unknown: 'Something went wrong. Please try again, or refresh the QR code on your computer and scan it again.'
      }
    }
  };

  // The error codes the backend may answer; anything else counts as unknown.
  var KNOWN_CODES = {
    bad_request: true,
    invalid_code: true,
    not_found: true,
    already_used: true,
    expired: true,
    rate_limited: true,
    unavailable: true,
    forbidden: true
  };

  function fill(template, values) {
    return template.replace(/\{(\w+)\}/g, function (all, name) {
      return Object.prototype.hasOwnProperty.call(values, name) ? String(values[name]) : all;
    });
  }

  // detectLang picks English for an English WeChat and Chinese otherwise.
  function detectLang(wx) {
    var language = '';
    try {
      if (wx && typeof wx.getAppBaseInfo === 'function') {
        language = (wx.getAppBaseInfo() || {}).language || '';
      }
      if (!language && wx && typeof wx.getSystemInfoSync === 'function') {
        language = (wx.getSystemInfoSync() || {}).language || '';
      }
    } catch (e) {
      language = '';
    }
    return /^en/i.test(String(language)) ? 'en' : 'zh';
  }

  // parseScene returns the scene from onLoad's options, or '' when it is
  // missing or not of the shape our backend makes.
  function parseScene(options) {
    var raw = options && options.scene;
    if (typeof raw !== 'string' || raw === '') {
      return '';
    }
    var scene;
    try {
      scene = decodeURIComponent(raw);
    } catch (e) {
      return '';
    }
    return SCENE_RE.test(scene) ? scene : '';
  }

  function pad2(n) {
    return n < 10 ? '0' + n : String(n);
  }

  // formatTime shows unix ms as local "YYYY-MM-DD HH:mm:ss" (Intl is not
  // available on every WeChat runtime).
  function formatTime(ms) {
    if (typeof ms !== 'number' || !isFinite(ms) || ms <= 0) {
      return '';
    }
    var d = new Date(ms);
    return d.getFullYear() + '-' + pad2(d.getMonth() + 1) + '-' + pad2(d.getDate()) + ' ' +
      pad2(d.getHours()) + ':' + pad2(d.getMinutes()) + ':' + pad2(d.getSeconds());
  }

  // formatCountdown shows seconds as "m:ss".
  function formatCountdown(seconds) {
    if (seconds < 0) {
      seconds = 0;
    }
    return Math.floor(seconds / 60) + ':' + pad2(seconds % 60);
  }

  // sentence is what the user reads for an error code; phase is 'scan' or
  // 'confirm' (already_used means something different after a confirm).
  function sentence(code, lang, phase) {
    var errors = (MESSAGES[lang] || MESSAGES.zh).errors;
    if (code === 'already_used' && phase === 'confirm') {
      return errors.already_used_confirm;
    }
    return errors[code] || errors.unknown;
  }

  // errorCode reads the code of a non-2xx answer: the body's "error" when it is
  // one we know; otherwise a proxy's 429 or 5xx still means something.
  function errorCode(statusCode, body) {
    var code = body && typeof body === 'object' ? body.error : '';
    if (typeof code === 'string' && KNOWN_CODES[code]) {
      return code;
    }
    if (statusCode === 429) {
      return 'rate_limited';
    }
    if (statusCode === 502 || statusCode === 503 || statusCode === 504) {
      return 'unavailable';
    }
    return 'unknown';
  }

  function parseBody(data) {
    if (typeof data === 'string') {
      try {
        return JSON.parse(data);
      } catch (e) {
        return null;
      }
    }
    return data;
  }

  function labels(lang) {
    var m = MESSAGES[lang] || MESSAGES.zh;
    var t = {};
    for (var k in m) {
      if (Object.prototype.hasOwnProperty.call(m, k) && typeof m[k] === 'string') {
        t[k] = m[k];
      }
    }
    return t;
  }

  function initialData(lang) {
    return {
      lang: lang,
      t: labels(lang),
      state: 'loading',
      busy: false,
      pending: '',
      title: '',
      site: '',
      browser: '',
      os: '',
      ip: '',
      time: '',
      countdown: '',
      message: '',
      notice: '',
      errorCode: '',
      canRetry: false
    };
  }

  function text(value, fallback) {
    return typeof value === 'string' && value !== '' ? value : fallback;
  }

  /*
   * page builds the object to hand to Page(). opts:
   *   wx       the wx API (login, request, getSystemInfoSync/getAppBaseInfo)
   *   apiBase  the backend's origin, e.g. 'https://login.example.com'
   *   timers   optional {now, setInterval, clearInterval}, for tests
   * Per-visit state lives on the page instance (this._v), since one definition
   * may serve several instances of the page.
   */
  function page(opts) {
    var wx = opts.wx;
    var apiBase = String(opts.apiBase || '').replace(/\/+$/, '');
    var timers = opts.timers || {};
    var now = timers.now || function () { return Date.now(); };
    var setIntervalFn = timers.setInterval || function (fn, ms) { return setInterval(fn, ms); };
    var clearIntervalFn = timers.clearInterval || function (id) { clearInterval(id); };

    function post(path, body, done) {
      wx.request({
        url: apiBase + path,
        method: 'POST',
        data: body,
        header: { 'content-type': 'application/json' },
        dataType: 'json',
        timeout: REQUEST_TIMEOUT_MS,
        success: function (res) {
          var data = parseBody(res && res.data);
          var status = res && res.statusCode;
          if (status >= 200 && status < 300) {
            done(null, data || {});
          } else {
            done({ code: errorCode(status, data), detail: String(status) });
          }
        },
        fail: function (err) {
          done({ code: 'network', detail: (err && err.errMsg) || '' });
        }
      });
    }

    function set(p, patch) {
      if (!p._v || !p._v.gone) {
        p.setData(patch);
      }
    }

    function stopCountdown(p) {
      if (p._v && p._v.timer !== null) {
        clearIntervalFn(p._v.timer);
        p._v.timer = null;
      }
    }

    function secondsLeft(p) {
      return Math.max(0, Math.ceil((p._v.deadline - now()) / 1000));
    }

    function showError(p, code, phase, detail) {
      stopCountdown(p);
      p._v.busy = false;
      set(p, {
        state: 'error',
        busy: false,
        pending: '',
        title: p.data.t.error_title,
        message: sentence(code, p._v.lang, phase),
        notice: '',
        errorCode: detail ? code + ' (' + detail + ')' : code,
        canRetry: phase === 'scan' && TRANSIENT[code] === true
      });
    }

    // tick updates the countdown; at zero the code has expired, unless a
    // confirm is in flight, whose answer then decides.
    function tick(p) {
      if (p._v.gone || p.data.state !== 'confirm') {
        return;
      }
      var left = secondsLeft(p);
      if (left <= 0 && !p._v.busy) {
        showError(p, 'expired', 'scan', '');
        return;
      }
      set(p, { countdown: fill(p.data.t.expires_in, { time: formatCountdown(left) }) });
    }

    function showConfirm(p, res) {
      var t = p.data.t;
      var who = res.requester && typeof res.requester === 'object' ? res.requester : {};
      var site = text(res.site, '');
      p._v.confirm = res.confirm;
      p._v.deadline = now() + Math.max(0, Number(res.expires_in) || 0) * 1000;
      p._v.busy = false;
      set(p, {
        state: 'confirm',
        busy: false,
        pending: '',
        title: site ? fill(t.confirm_title, { site: site }) : t.confirm_title_nosite,
        site: site,
        browser: text(who.browser, t.unknown_value),
        os: text(who.os, t.unknown_value),
        ip: text(who.ip, t.unknown_value),
        time: formatTime(who.at) || t.unknown_value,
        message: '',
        notice: '',
        errorCode: '',
        canRetry: false
      });
      stopCountdown(p);
      tick(p);
      if (p.data.state === 'confirm') {
        p._v.timer = setIntervalFn(function () { tick(p); }, 1000);
      }
    }

    // scan gets a wx.login code and sends it with the scene; a refused code is
    // retried once with a fresh one (codes are single-use and short-lived).
    function scan(p, attempt) {
      var visit = p._v;
      wx.login({
        success: function (res) {
          if (visit !== p._v) {
            return;
          }
          if (!res || !res.code) {
            showError(p, 'wx_login', 'scan', (res && res.errMsg) || '');
            return;
          }
          post('/miniprogram/scan', { scene: visit.scene, code: res.code }, function (err, body) {
            if (visit !== p._v) {
              return;
            }
            if (err) {
              if (err.code === 'invalid_code' && attempt === 0) {
                scan(p, 1);
                return;
              }
              showError(p, err.code, 'scan', err.detail);
              return;
            }
            if (typeof body.confirm !== 'string' || body.confirm === '' || typeof body.expires_in !== 'number') {
              showError(p, 'unknown', 'scan', 'bad answer');
              return;
            }
            showConfirm(p, body);
          });
        },
        fail: function (err) {
          if (visit !== p._v) {
            return;
          }
          showError(p, 'wx_login', 'scan', (err && err.errMsg) || '');
        }
      });
    }

    function answer(p, approve) {
      var v = p._v;
      if (!v || v.gone || v.busy || p.data.state !== 'confirm') {
        return;
      }
      v.busy = true;
      set(p, { busy: true, pending: approve ? 'confirm' : 'cancel', notice: '' });
      post('/miniprogram/confirm', { scene: v.scene, confirm: v.confirm, approve: approve }, function (err, body) {
        if (v !== p._v) {
          return;
        }
        v.busy = false;
        var result = err ? '' : body.result;
        if (!err && result !== 'confirmed' && result !== 'cancelled') {
          err = { code: 'unknown', detail: 'bad answer' };
        }
        if (err) {
          if (!TRANSIENT[err.code]) {
            showError(p, err.code, 'confirm', err.detail);
          } else if (secondsLeft(p) > 0) {
            // Nothing changed on the server: the choice stays open, with a note.
            set(p, { busy: false, pending: '', notice: sentence(err.code, v.lang, 'confirm') });
          } else {
            showError(p, 'expired', 'scan', '');
          }
          return;
        }
        stopCountdown(p);
        var t = p.data.t;
        set(p, {
          state: result,
          busy: false,
          pending: '',
          title: result === 'confirmed' ? t.confirmed_title : t.cancelled_title,
          message: result === 'confirmed' ? t.confirmed_text : t.cancelled_text,
          notice: '',
          countdown: ''
        });
      });
    }

    function start(p) {
      set(p, {
        state: 'loading',
        busy: false,
        pending: '',
        title: '',
        message: '',
        notice: '',
        errorCode: '',
        canRetry: false
      });
      if (!p._v.scene) {
        showError(p, 'bad_scene', 'load', '');
        return;
      }
      scan(p, 0);
    }

    function newVisit(scene, lang) {
      return { scene: scene, lang: lang, confirm: '', deadline: 0, timer: null, busy: false, gone: false };
    }

    return {
      data: initialData(detectLang(wx)),

      onLoad: function (options) {
        var lang = detectLang(wx);
        this._v = newVisit(parseScene(options), lang);
        this.setData({ lang: lang, t: labels(lang) });
        if (typeof wx.setNavigationBarTitle === 'function') {
          wx.setNavigationBarTitle({ title: MESSAGES[lang].nav_title });
        }
        start(this);
      },

      // Timers may sleep in the background: catch up at once on return.
      onShow: function () {
        if (this._v) {
          tick(this);
        }
      },

      onUnload: function () {
        if (this._v) {
          stopCountdown(this);
          this._v.gone = true;
        }
      },

      onConfirm: function () {
        answer(this, true);
      },

      onCancel: function () {
        answer(this, false);
      },

      // Try again after a passing failure before the details were shown.
      onRetry: function () {
        var v = this._v;
        if (!v || v.gone || this.data.state !== 'error' || !this.data.canRetry) {
          return;
        }
        stopCountdown(this);
        this._v = newVisit(v.scene, v.lang);
        start(this);
      }
    };
  }

  return {
    page: page,
    parseScene: parseScene,
    detectLang: detectLang,
    sentence: sentence,
    formatTime: formatTime,
    formatCountdown: formatCountdown,
    messages: MESSAGES,
    SCENE_RE: SCENE_RE
  };
});
