/*
 * The simulator's stand-in for WeChat running the shipped Mini Program login
 * page: it loads the page's own logic (ScanLoginPage, from logic.js), gives
 * it a `wx` that the simulator serves, and draws its data as login.wxml
 * does. Page() semantics: `this` is the page, setData merges and redraws.
 *
 *   wx.login    POST /mp/<code id> {openid}: a js_code for jscode2session
 *   wx.request  POST through the simulator's relay (/sim/miniprogram/...)
 *               to the backend; a relay failure is wx.request's fail
 */
(function () {
  "use strict";

  var root = document.getElementById("mp-root");
  var log = document.getElementById("mp-log");
  var codeID = root.getAttribute("data-code");
  var scene = root.getAttribute("data-scene");
  var openid = root.getAttribute("data-openid");
  var apiBase = root.getAttribute("data-api-base");

  function note(text, ok) {
    var li = document.createElement("li");
    li.textContent = text;
    if (!ok) li.className = "bad";
    log.appendChild(li);
  }

  var wx = {
    login: function (o) {
      fetch("/mp/" + encodeURIComponent(codeID), {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ openid: openid }),
      }).then(function (r) {
        return r.json().then(function (b) {
          if (!r.ok || !b.code) throw new Error(b.error || "HTTP " + r.status);
          return b;
        });
      }).then(function (b) {
        root.setAttribute("data-mini-openid", b.mini_openid || "");
        note("wx.login() → a code for " + b.mini_openid, true);
        if (o.success) o.success({ code: b.code, errMsg: "login:ok" });
      }, function (e) {
        note("wx.login() failed: " + e.message, false);
        if (o.fail) o.fail({ errMsg: "login:fail " + e.message });
      });
    },

    request: function (o) {
      var path = String(o.url).replace(apiBase, "");
      var ctl = typeof AbortController === "function" ? new AbortController() : null;
      var timer = ctl && o.timeout ? setTimeout(function () { ctl.abort(); }, o.timeout) : null;
      fetch(o.url, {
        method: o.method || "GET",
        headers: { "Content-Type": "application/json" },
        body: typeof o.data === "string" ? o.data : JSON.stringify(o.data || {}),
        signal: ctl ? ctl.signal : undefined,
      }).then(function (r) {
        return r.text().then(function (text) {
          if (r.headers.get("X-Sim-Request-Failed")) throw new Error(text.trim());
          var data = text;
          if (o.dataType !== "text") {
            try { data = JSON.parse(text); } catch (e) { /* wx leaves it a string */ }
          }
          var what = data && typeof data === "object" ? data.error || data.result || "" : "";
          note("wx.request " + path + " → " + r.status + (what ? " " + what : ""), r.status < 400);
          if (o.success) o.success({ statusCode: r.status, data: data, header: {} });
        });
      }).catch(function (e) {
        note("wx.request " + path + " failed: " + e.message, false);
        if (o.fail) o.fail({ errMsg: "request:fail " + e.message });
      }).then(function () {
        clearTimeout(timer);
      });
    },

    getAppBaseInfo: function () {
      return { language: /^zh/i.test(navigator.language || "") ? "zh_CN" : "en" };
    },

    setNavigationBarTitle: function (o) {
      document.getElementById("mp-nav").textContent = o.title;
    },
  };

  // ---- Drawing, as login.wxml --------------------------------------------

  function get(data, path) {
    return path.split(".").reduce(function (v, k) { return v == null ? v : v[k]; }, data);
  }

  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    for (var a in attrs || {}) e.setAttribute(a, attrs[a]);
    (children || []).forEach(function (c) { e.appendChild(c); });
    return e;
  }

  // bound is an element whose text is data[path].
  function bound(tag, attrs, path) {
    var e = el(tag, attrs);
    e.setAttribute("data-text", path);
    return e;
  }

  function icon(kind, glyph) {
    return el("div", { class: "mp-icon " + kind, "aria-hidden": "true" }, [document.createTextNode(glyph)]);
  }

  function button(id, cls, label, tap, pending) {
    var b = bound("button", { id: id, type: "button", class: cls }, label);
    b.setAttribute("data-tap", tap);
    if (pending) b.setAttribute("data-pending", pending);
    return b;
  }

  function ending(kind, glyph) {
    return el("div", { class: "mp-center" }, [
      icon(kind, glyph),
      bound("h1", { class: "mp-title", id: "mp-title" }, "title"),
      bound("p", { class: "mp-lead", id: "mp-message", role: "alert" }, "message"),
    ]);
  }

  var views = {
    loading: function () {
      return el("div", { class: "mp-center" }, [icon("waiting", "…"), bound("p", { class: "mp-lead", role: "alert" }, "t.loading")]);
    },
    confirm: function () {
      var rows = el("dl", { class: "mp-rows" });
      [["browser", "t.label_browser"], ["os", "t.label_os"], ["ip", "t.label_ip"], ["time", "t.label_time"]].forEach(function (r) {
        rows.appendChild(el("div", { class: "mp-row" }, [bound("dt", null, r[1]), bound("dd", { id: "mp-" + r[0] }, r[0])]));
      });
      var notice = bound("div", { class: "mp-notice", id: "mp-notice", role: "alert" }, "notice");
      notice.setAttribute("data-show", "notice");
      return el("div", { class: "mp-card" }, [
        bound("h1", { class: "mp-title", id: "mp-title" }, "title"),
        bound("p", { class: "mp-lead" }, "t.confirm_lead"),
        rows,
        bound("p", { class: "mp-countdown", id: "mp-countdown" }, "countdown"),
        notice,
        el("div", { class: "mp-actions" }, [
          button("mp-confirm", "primary", "t.btn_confirm", "onConfirm", "confirm"),
          button("mp-cancel", "secondary", "t.btn_cancel", "onCancel", "cancel"),
        ]),
      ]);
    },
    confirmed: function () { return ending("success", "✓"); },
    cancelled: function () { return ending("cancel", "✕"); },
    error: function () {
      var view = ending("warn", "!");
      var detail = el("p", { class: "mp-detail", id: "mp-error-code" });
      detail.setAttribute("data-show", "errorCode");
      view.appendChild(detail);
      var actions = el("div", { class: "mp-actions" }, [button("mp-retry", "primary", "t.btn_retry", "onRetry")]);
      actions.setAttribute("data-show", "canRetry");
      view.appendChild(actions);
      return view;
    },
  };

  var page;
  var shown = ""; // the state drawn: a new state draws anew, else only texts change

  function render() {
    var d = page.data;
    var state = views[d.state] ? d.state : "error";
    if (state !== shown) {
      root.textContent = "";
      root.appendChild(views[state]());
      shown = state;
    }
    root.setAttribute("data-state", d.state);
    Array.prototype.forEach.call(root.querySelectorAll("[data-text]"), function (e) {
      var v = get(d, e.getAttribute("data-text"));
      e.textContent = v == null ? "" : String(v);
    });
    Array.prototype.forEach.call(root.querySelectorAll("[data-show]"), function (e) {
      e.hidden = !get(d, e.getAttribute("data-show"));
    });
    var code = root.querySelector("#mp-error-code");
    if (code) code.textContent = (d.t.error_detail || "") + " " + d.errorCode;
    Array.prototype.forEach.call(root.querySelectorAll("button[data-pending]"), function (b) {
      b.disabled = !!d.busy;
      b.setAttribute("aria-busy", String(d.pending === b.getAttribute("data-pending")));
    });
  }

  root.addEventListener("click", function (ev) {
    var b = ev.target.closest("button[data-tap]");
    if (b && !b.disabled) page[b.getAttribute("data-tap")]();
  });

  // The page instance, as Page() makes it from the definition.
  var def = ScanLoginPage.page({ wx: wx, apiBase: apiBase });
  page = { data: JSON.parse(JSON.stringify(def.data)) };
  Object.keys(def).forEach(function (k) {
    if (typeof def[k] === "function") page[k] = def[k];
  });
  page.setData = function (patch) {
    for (var k in patch) page.data[k] = patch[k];
    render();
  };
  window.__miniPage = page;

  render();
  note("onLoad({scene: \"" + scene + "\"})", true);
  // WeChat hands the page the scene URL-encoded.
  page.onLoad({ scene: encodeURIComponent(scene) });
  page.onShow();
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) page.onShow();
  });
  window.addEventListener("pagehide", function () { page.onUnload(); });
})();
