/* Shop Assist loader: see widget/README.md */
(function () {
'use strict';
/** @type {any} */
var w = window;
if (w.ShopAssist && w.ShopAssist.loaded) return;
/** @type {HTMLScriptElement|null} */
var script = /** @type {any} */ (document.currentScript) ||
  document.querySelector('script[data-shop][src*="widget.js"]');
if (!script || !script.dataset.shop) return;
var d = script.dataset;
var shop = d.shop || '';
var host = new URL(script.src).origin;
var color = /^#[0-9a-f]{3,8}$/i.test(d.color || '') ? d.color : '#2f6f4f';
var left = d.position === 'left';
var z = parseInt(d.zIndex || '', 10) || 2147483000;
var lang = (d.lang || navigator.language || 'en').slice(0, 2).toLowerCase();
/** @type {Record<string, string[]>} open, close, unread */
var T = {
  en: ['Open chat', 'Close chat', 'unread'],
  es: ['Abrir chat', 'Cerrar chat', 'sin leer'],
  fr: ['Ouvrir le chat', 'Fermer le chat', 'non lus'],
  de: ['Chat öffnen', 'Chat schließen', 'ungelesen']
};
var t = T[lang] || T.en;
if (!T[lang]) lang = 'en';

var css = ':host{all:initial}' +
  '.b,.p{position:fixed;z-index:' + z + ';' + (left ? 'left' : 'right') + ':20px;box-sizing:border-box;margin:0}' +
  '.b{bottom:20px;width:60px;height:60px;padding:0;border:0;border-radius:50%;background:' + color +
  ';color:#fff;cursor:pointer;box-shadow:0 4px 16px rgba(0,0,0,.25);display:flex;align-items:center;justify-content:center;transition:transform .15s}' +
  '.b:hover{transform:scale(1.06)}.b:focus-visible{outline:3px solid #1a73e8;outline-offset:3px}' +
  '.b svg{width:28px;height:28px;fill:currentColor;display:block}' +
  '.n{position:absolute;top:-2px;right:-2px;min-width:20px;height:20px;padding:0 5px;box-sizing:border-box;border-radius:10px;' +
  'background:#d93025;color:#fff;font:700 12px/20px system-ui,sans-serif;text-align:center}' +
  '.p{bottom:92px;width:380px;height:min(640px,calc(100vh - 112px));border-radius:14px;overflow:hidden;' +
  'box-shadow:0 8px 32px rgba(0,0,0,.28);background:#fff;display:none}' +
  '.p.o{display:block}.p iframe{border:0;width:100%;height:100%;display:block;margin:0;padding:0}' +
  '@media (max-width:640px){.p{inset:0;width:100%;height:100vh;height:100dvh;border-radius:0}.p.o~.b{display:none}}';

var el = document.createElement('shop-assist-widget');
var root = el.attachShadow({ mode: 'open' });
if (root.adoptedStyleSheets && w.CSSStyleSheet && 'replaceSync' in CSSStyleSheet.prototype) {
  var sheet = new CSSStyleSheet();
  sheet.replaceSync(css);
  root.adoptedStyleSheets = [sheet];
} else {
  var st = document.createElement('style');
  st.textContent = css;
  root.appendChild(st);
}
var panel = document.createElement('div');
panel.className = 'p';
panel.setAttribute('role', 'dialog');
panel.setAttribute('aria-label', 'Chat');
var btn = document.createElement('button');
btn.type = 'button';
btn.className = 'b';
btn.setAttribute('aria-expanded', 'false');
btn.setAttribute('aria-label', t[0]);
var ns = 'http://www.w3.org/2000/svg';
var svg = document.createElementNS(ns, 'svg');
svg.setAttribute('viewBox', '0 0 24 24');
svg.setAttribute('aria-hidden', 'true');
var path = document.createElementNS(ns, 'path');
var chatIcon = 'M4 3h16a2 2 0 0 1 2 2v11a2 2 0 0 1-2 2H8l-5 4V5a2 2 0 0 1 1-2z';
var closeIcon = 'M6.4 5 12 10.6 17.6 5 19 6.4 13.4 12 19 17.6 17.6 19 12 13.4 6.4 19 5 17.6 10.6 12 5 6.4z';
path.setAttribute('d', chatIcon);
svg.appendChild(path);
var badge = document.createElement('span');
badge.className = 'n';
badge.hidden = true;
btn.appendChild(svg);
btn.appendChild(badge);
root.appendChild(panel);
root.appendChild(btn);

/** @type {HTMLIFrameElement|null} */
var frame = null;
var ready = false;
var isOpen = false;
var unread = 0;
/** @type {Function[]} */
var paidHandlers = [];
/** @param {any} msg */
function send(msg) {
  msg.sa = 1;
  if (frame && ready && frame.contentWindow) frame.contentWindow.postMessage(msg, host);
}

function preload() {
  if (frame) return;
  frame = document.createElement('iframe');
  frame.title = 'Chat';
  frame.src = host + '/embed/' + encodeURIComponent(shop) + '?lang=' + lang +
    '&origin=' + encodeURIComponent(location.origin);
  panel.appendChild(frame);
}

function label() {
  var l = isOpen ? t[1] : t[0];
  btn.setAttribute('aria-label', unread && !isOpen ? l + ' (' + unread + ' ' + t[2] + ')' : l);
  badge.textContent = String(unread);
  badge.hidden = !unread || isOpen;
}

function open() {
  preload();
  if (isOpen) return;
  isOpen = true;
  unread = 0;
  panel.classList.add('o');
  btn.setAttribute('aria-expanded', 'true');
  path.setAttribute('d', closeIcon);
  label();
  if (frame) frame.focus();
  send({ type: 'open', full: innerWidth <= 640 });
  fit();
}

/** @param {boolean} [silent] the chat app asked */
function close(silent) {
  if (!isOpen) return;
  isOpen = false;
  panel.classList.remove('o');
  btn.setAttribute('aria-expanded', 'false');
  path.setAttribute('d', chatIcon);
  label();
  if (!silent) send({ type: 'close' });
  btn.focus();
}

// Phone: the panel follows the visual viewport (above the keyboard).
var vv = w.visualViewport;
function fit() {
  if (!vv || !isOpen) return;
  var full = innerWidth <= 640;
  panel.style.height = full ? vv.height + 'px' : '';
  panel.style.top = full ? vv.offsetTop + 'px' : '';
  send({ type: 'resize', height: Math.round(full ? vv.height : panel.clientHeight) });
}
if (vv) {
  vv.addEventListener('resize', fit);
  vv.addEventListener('scroll', fit);
}

btn.addEventListener('click', function () { isOpen ? close() : open(); });
btn.addEventListener('pointerenter', preload);
btn.addEventListener('focus', preload);
root.addEventListener('keydown', function (e) {
  if (/** @type {KeyboardEvent} */ (e).key === 'Escape' && isOpen) close();
});

w.addEventListener('message', function (/** @type {MessageEvent} */ e) {
  if (e.origin !== host || !frame || e.source !== frame.contentWindow) return;
  var m = e.data || {};
  if (m.sa !== 1) return;
  if (m.type === 'ready') {
    ready = true; // also after "New order" reloads it
    if (isOpen) send({ type: 'open', full: innerWidth <= 640 });
  } else if (m.type === 'close') close(true);
  else if (m.type === 'unread') {
    unread = isOpen ? 0 : Math.max(0, m.count | 0);
    label();
  } else if (m.type === 'order_paid') {
    paidHandlers.forEach(function (fn) {
      try { fn({ order_id: String(m.order_id), number: +m.number || null, status: String(m.status) }); } catch (err) { setTimeout(function () { throw err; }); }
    });
  }
});

var api = {
  loaded: true,
  open: open,
  close: function () { close(); },
  /** @param {string} name @param {Function} fn */
  on: function (name, fn) { if (name === 'order_paid' && typeof fn === 'function') paidHandlers.push(fn); },
  /** @param {any[]} call */
  push: function (call) {
    var fn = call && /** @type {any} */ (api)[call[0]];
    if (typeof fn === 'function' && call[0] !== 'push') fn.apply(api, call.slice(1));
  }
};
var queued = Array.isArray(w.ShopAssist) ? w.ShopAssist : [];
w.ShopAssist = api;

function start() {
  document.body.appendChild(el);
  if (d.open === 'true' || d.open === '') open();
  queued.forEach(api.push);
  var idle = w.requestIdleCallback || function (/** @type {Function} */ f) { setTimeout(f, 1500); };
  idle(preload, { timeout: 4000 });
}
if (document.body) start();
else document.addEventListener('DOMContentLoaded', start);
})();
