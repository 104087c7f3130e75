/* Shop Assist chat app: one program for the loader's iframe (/embed/{shop}) and the hosted page
 * (/s/{slug}). Everything the model, the catalog or a customer wrote is put on the page as text
 * nodes (plus <strong>/<em>/<a href=https:> built by hand); never through innerHTML. */
(function () {
'use strict';

/**
 * @typedef {{group: string, choice: string, price_delta?: number}} Opt
 * @typedef {{line_id?: string, product_id?: string, name: string, quantity: number, options?: Opt[],
 *   note?: string|null, unit_price?: number, line_total: number}} Line
 * @typedef {{lines: Line[], subtotal: number, currency?: string}} Cart
 * @typedef {{order_id: string, status: string, currency?: string, items: Line[], subtotal: number,
 *   tax?: number, tip?: number, total: number, number?: number}} Order
 * @typedef {{shop_id: string, name: string, greeting: string, currency: string, exponent: number,
 *   color: string, paused: boolean, open: boolean, closed_notice: string, mode: string, lang: string,
 *   parent: string}} Config
 * @typedef {{thread_id?: string, token?: string, seq: number, turn?: number, busy?: boolean, next?: string,
 *   pay?: {order_id: string, token: string, url?: string, final?: boolean}}} Saved
 */

/** @type {Config} */
var cfg = JSON.parse(/** @type {HTMLElement} */ (document.getElementById('sa-config')).textContent || '{}');
var embed = cfg.mode === 'embed';
var shopPath = encodeURIComponent(cfg.shop_id);
var chatUrl = '/api/chat/' + shopPath;
var storeKey = 'shop-assist:' + cfg.shop_id;
var PAID = ['paid', 'preparing', 'ready', 'completed'];
var FAILED = ['payment_failed', 'expired', 'cancelled', 'refunded'];

// [placeholder, send, close, hello, cart, checkout, order, subtotal, tax, tip, total, pay,
//  waiting, continue, paid, failed, offline, rate limit ({n} seconds), error, interrupted,
//  retry, typing, paused, new order, message label, item/items]
/** @type {Record<string, string[]>} */
var L = {
  en: ['Type a message', 'Send', 'Close chat', 'Hi! What can I get you?', 'Your cart', 'Checkout',
    'Your order', 'Subtotal', 'Tax', 'Tip', 'Total', 'Pay', 'Waiting for payment…',
    'Continue to payment', 'Paid. Order number', 'The payment did not go through.',
    'You are offline.', 'Too many messages. Try again in {n} s.', 'Something went wrong.',
    'The reply was interrupted.', 'Retry', 'Typing…', 'This shop is not taking orders right now.',
    'New order', 'Message', 'item/items'],
  es: ['Escribe un mensaje', 'Enviar', 'Cerrar chat', '¡Hola! ¿Qué te pongo?', 'Tu carrito', 'Pagar pedido',
    'Tu pedido', 'Subtotal', 'Impuestos', 'Propina', 'Total', 'Pagar', 'Esperando el pago…',
    'Continuar al pago', 'Pagado. Número de pedido', 'El pago no se completó.',
    'Estás sin conexión.', 'Demasiados mensajes. Inténtalo en {n} s.', 'Algo salió mal.',
    'La respuesta se interrumpió.', 'Reintentar', 'Escribiendo…', 'Esta tienda no acepta pedidos ahora.',
    'Nuevo pedido', 'Mensaje', 'artículo/artículos'],
  fr: ['Écrivez un message', 'Envoyer', 'Fermer le chat', 'Bonjour ! Que puis-je vous servir ?', 'Votre panier',
    'Commander', 'Votre commande', 'Sous-total', 'Taxes', 'Pourboire', 'Total', 'Payer',
    'En attente du paiement…', 'Continuer vers le paiement', 'Payé. Numéro de commande',
    "Le paiement n'a pas abouti.", 'Vous êtes hors ligne.', 'Trop de messages. Réessayez dans {n} s.',
    'Une erreur est survenue.', 'La réponse a été interrompue.', 'Réessayer', 'Écrit…',
    "Cette boutique ne prend pas de commandes pour l'instant.", 'Nouvelle commande', 'Message', 'article/articles'],
  de: ['Nachricht eingeben', 'Senden', 'Chat schließen', 'Hallo! Was darf es sein?', 'Ihr Warenkorb', 'Zur Kasse',
    'Ihre Bestellung', 'Zwischensumme', 'Steuer', 'Trinkgeld', 'Gesamt', 'Bezahlen', 'Warte auf Zahlung…',
    'Weiter zur Zahlung', 'Bezahlt. Bestellnummer', 'Die Zahlung ist nicht durchgegangen.',
    'Sie sind offline.', 'Zu viele Nachrichten. Erneut in {n} s.', 'Etwas ist schiefgelaufen.',
    'Die Antwort wurde unterbrochen.', 'Erneut versuchen', 'Schreibt…',
    'Dieser Shop nimmt gerade keine Bestellungen an.', 'Neue Bestellung', 'Nachricht', 'Artikel/Artikel']
};
var lang = L[cfg.lang] ? cfg.lang : (navigator.language || '').slice(0, 2);
if (!L[lang]) lang = 'en';
var S = L[lang];
document.documentElement.lang = lang;

/**
 * Builds an element. Text goes in as a text node; attributes by setAttribute.
 * @param {string} tag @param {Record<string, string>|null} [attrs] @param {...(Node|string)} kids
 * @returns {HTMLElement}
 */
function h(tag, attrs, ...kids) {
  var el = document.createElement(tag);
  for (var k in attrs || {}) el.setAttribute(k, /** @type {any} */ (attrs)[k]);
  kids.forEach(function (c) { el.append(c); });
  return el;
}

// ------------------------------------------------------------------ safe minimal markdown

var INLINE = /\*\*([^*\n]+)\*\*|\*([^*\s][^*\n]*)\*|(!?)\[([^\]\n]*)\]\(([^)\s]*)\)|(https:\/\/[^\s<>"'()]*[^\s<>"'().,;:!?])/g;

/** Appends `text` with **bold**, *italic* and https links, all as nodes. @param {HTMLElement} parent @param {string} text */
function inline(parent, text) {
  var last = 0;
  var m;
  INLINE.lastIndex = 0;
  while ((m = INLINE.exec(text))) {
    parent.append(text.slice(last, m.index));
    if (m[1] != null) parent.append(h('strong', null, m[1]));
    else if (m[2] != null) parent.append(h('em', null, m[2]));
    else if (m[3]) parent.append(m[4]); // an image: its alt text only, never a remote image
    else if (m[5] != null) parent.append(link(m[5], m[4] || m[5]));
    else parent.append(link(m[6], m[6]));
    last = INLINE.lastIndex;
  }
  parent.append(text.slice(last));
}

/** An <a> for https URLs, plain text for anything else (javascript:, data:, http:...). @param {string} href @param {string} label */
function link(href, label) {
  try {
    var u = new URL(href);
    if (u.protocol === 'https:') return h('a', { href: u.href, target: '_blank', rel: 'noopener noreferrer' }, label);
  } catch (e) { /* not a URL */ }
  return document.createTextNode(label);
}

/**
 * One message rendered as it streams: finished lines become paragraphs or list items once;
 * only the unfinished last line is redrawn on each delta.
 * @param {HTMLElement} el
 */
function Md(el) {
  this.el = el;
  this.tail = '';
  /** @type {HTMLElement|null} */ this.p = null;
  /** @type {HTMLElement|null} */ this.list = null;
  this.live = h('p');
}
/** @param {string} text */
Md.prototype.push = function (text) {
  this.tail += text;
  var i;
  while ((i = this.tail.indexOf('\n')) >= 0) {
    this.line(this.tail.slice(0, i));
    this.tail = this.tail.slice(i + 1);
  }
  this.live.textContent = '';
  inline(this.live, this.tail);
  if (this.tail && !this.live.parentNode) this.el.append(this.live);
};
/** @param {string} s */
Md.prototype.line = function (s) {
  var m = /^\s*(?:([-*•])|\d+[.)])\s+(.*)$/.exec(s);
  var before = this.live.parentNode ? this.live : null;
  if (m) {
    var tag = m[1] ? 'UL' : 'OL';
    if (!this.list || this.list.tagName !== tag) this.el.insertBefore((this.list = h(tag)), before);
    var li = h('li');
    inline(li, m[2]);
    this.list.append(li);
    this.p = null;
    return;
  }
  this.list = null;
  if (!s.trim()) {
    this.p = null;
    return;
  }
  if (this.p) this.p.append(h('br'));
  else this.el.insertBefore((this.p = h('p')), before);
  inline(this.p, s);
};
Md.prototype.end = function () {
  if (this.tail) this.line(this.tail);
  this.tail = '';
  this.live.remove();
};

// ------------------------------------------------------------------ layout

var closeBtn = h('button', { type: 'button', class: 'sa-x', 'aria-label': S[2] }, '×');
var head = h('header', { class: 'sa-head' }, h('h1', null, cfg.name));
if (embed) head.append(closeBtn);
var log = h('div', { class: 'sa-log', role: 'log', 'aria-live': 'polite', 'aria-relevant': 'additions', tabindex: '-1' });
var bar = h('div', { class: 'sa-bar', role: 'alert' });
var barText = h('span');
var barBtn = h('button', { type: 'button' }, S[20]);
bar.append(barText, barBtn);
bar.hidden = true;
var cartBox = h('div', { class: 'sa-cart' });
cartBox.hidden = true;
var input = /** @type {HTMLInputElement} */ (h('input', { type: 'text', name: 'message', autocomplete: 'off', maxlength: '2000', placeholder: S[0], 'aria-label': S[24], enterkeyhint: 'send' }));
var sendBtn = h('button', { type: 'submit' }, S[1]);
var form = h('form', { class: 'sa-form' }, input, sendBtn);
var main = h('main', { class: 'sa' }, head, log, bar, cartBox, form);
// Paused by the owner or outside opening hours: questions are answered, orders are not taken
// (the server refuses a checkout), so a banner says so and the cart has no Checkout button.
var shut = cfg.paused ? S[22] : cfg.open === false ? cfg.closed_notice || S[22] : '';
if (shut) head.after(h('p', { class: 'sa-shut', role: 'status' }, shut));
document.body.append(main);
if (/^#[0-9a-f]{3,8}$/i.test(cfg.color)) document.documentElement.style.setProperty('--sa-color', cfg.color);

// Touch screens get no autofocus (it would pop the keyboard). Inside the iframe our own width is
// the panel's, so the loader says whether the page is phone-sized.
var mobile = matchMedia('(pointer: coarse)').matches || (!embed && innerWidth <= 640);
var isOpen = !embed;
var unread = 0;

/** @param {any} msg */
function toParent(msg) {
  if (embed && cfg.parent && parent !== window) {
    msg.sa = 1;
    parent.postMessage(msg, cfg.parent);
  }
}

function nearBottom() { return log.scrollHeight - log.scrollTop - log.clientHeight < 80; }
/** @param {boolean} [force] */
function scroll(force) { if (force || nearBottom()) log.scrollTop = log.scrollHeight; }

/** @param {string} cls @param {Node} [body] */
function bubble(cls, body) {
  var stick = nearBottom();
  var el = h('div', { class: 'sa-msg ' + cls });
  if (body) el.append(body);
  log.append(el);
  scroll(stick);
  return el;
}

/** @param {string} who @param {string} text */
function addMessage(who, text) {
  if (who === 'user') return bubble('sa-me', document.createTextNode(text));
  var md = new Md(bubble('sa-bot'));
  md.push(text);
  md.end();
}

/** @param {string} text */
function notice(text) { bubble('sa-note', document.createTextNode(text)); }

// ------------------------------------------------------------------ money

/** Minor units to a formatted amount in the shop's currency. @param {number} minor @param {string} [currency] */
function money(minor, currency) {
  var cur = (currency || cfg.currency).toUpperCase();
  var exp = cur.toLowerCase() === cfg.currency ? cfg.exponent : 2;
  try {
    return new Intl.NumberFormat(lang, { style: 'currency', currency: cur, minimumFractionDigits: exp, maximumFractionDigits: exp }).format(minor / Math.pow(10, exp));
  } catch (e) {
    return (minor / Math.pow(10, exp)).toFixed(exp) + ' ' + cur;
  }
}

/** @param {Line[]} lines @param {string} [currency] */
function lineList(lines, currency) {
  var ul = h('ul', { class: 'sa-lines' });
  (lines || []).forEach(function (l) {
    // A bare "Yes"/"No" means nothing without its group ("Warm it up: No").
    var opts = (l.options || []).map(function (o) { return /^(yes|no)$/i.test(o.choice) ? o.group + ': ' + o.choice : o.choice; }).join(', ');
    var li = h('li', null, h('span', null, l.quantity + ' × ' + l.name), h('span', null, money(l.line_total, currency)));
    if (opts || l.note) li.append(h('small', null, [opts, l.note || ''].filter(Boolean).join(' · ')));
    ul.append(li);
  });
  return ul;
}

// ------------------------------------------------------------------ state

/** @type {Saved} */
var st = { seq: 0 };
try { st = JSON.parse(localStorage.getItem(storeKey) || '') || st; } catch (e) { /* none yet */ }
function save() {
  try { localStorage.setItem(storeKey, JSON.stringify(st)); } catch (e) { /* storage blocked: this page only */ }
}
var busy = false;
var finished = false;
/** @type {Md|null} */ var reply = null;
/** @type {HTMLElement|null} */ var typing = null;
/** @type {Record<string, HTMLElement>} */ var orderCards = {};
/** @type {{text: string, action?: string}|null} */ var lastSend = null;

/** @param {boolean} on */
function setBusy(on) {
  busy = on;
  st.busy = on;
  save();
  log.setAttribute('aria-busy', String(on));
  if (on && !typing) typing = bubble('sa-bot sa-typing', h('span', { class: 'sa-sr' }, S[21]));
  if (!on && typing) {
    typing.remove();
    typing = null;
  }
}

/**
 * Shows one line with a retry button.
 * @param {string} text @param {(() => void)|null} retry @param {number} [wait] seconds the retry stays disabled
 */
function fail(text, retry, wait) {
  setBusy(false);
  barText.textContent = text;
  barBtn.hidden = !retry;
  barBtn.onclick = function () { hideBar(); if (retry) retry(); };
  bar.hidden = false;
  if (wait) {
    barBtn.setAttribute('disabled', '');
    setTimeout(function () { barBtn.removeAttribute('disabled'); }, wait * 1000);
  }
}
function hideBar() { bar.hidden = true; }

// ------------------------------------------------------------------ the stream

/**
 * Reads a text/event-stream body and calls `on(name, data, id)` for every event.
 * @param {Response} res @param {(name: string, data: any, id: number) => void} on
 */
async function readEvents(res, on) {
  var reader = /** @type {ReadableStream} */ (res.body).getReader();
  var dec = new TextDecoder();
  var buf = '';
  for (;;) {
    var r = await reader.read();
    if (r.done) return;
    buf += dec.decode(r.value, { stream: true });
    // A "\r" at the end may be half of "\r\n": keep it for the next chunk.
    var cut = buf.endsWith('\r') ? buf.length - 1 : buf.length;
    var parts = buf.slice(0, cut).replace(/\r\n?/g, '\n').split('\n\n');
    buf = parts.pop() + buf.slice(cut);
    parts.forEach(function (block) {
      var name = 'message';
      var data = '';
      var id = 0;
      block.split('\n').forEach(function (line) {
        var i = line.indexOf(':');
        var field = i < 0 ? line : line.slice(0, i);
        var value = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
        if (field === 'event') name = value;
        else if (field === 'data') data += (data ? '\n' : '') + value;
        else if (field === 'id') id = parseInt(value, 10) || 0;
      });
      var parsed;
      try { parsed = JSON.parse(data); } catch (e) { return; } // a malformed event is skipped
      if (parsed) on(name, parsed, id);
    });
  }
}

/** @param {string} name @param {any} d @param {number} id */
function onEvent(name, d, id) {
  if (name === 'thread') {
    // Every turn opens with this event; its id is the first of the turn in that thread.
    st.thread_id = d.thread_id || st.thread_id;
    if (d.thread_token) st.token = d.thread_token;
    st.seq = 0;
    st.turn = id;
  } else if (name === 'handoff') st.next = d.thread_id; // the rest of this turn stays on the old thread
  else if (name === 'delta') {
    if (typing) { typing.remove(); typing = null; }
    if (!reply) reply = new Md(bubble('sa-bot'));
    reply.push(String(d.text || ''));
    scroll();
  } else if (name === 'cart') renderCart(d.cart);
  else if (name === 'order') renderOrder(d.order);
  else if (name === 'notice') notice(String(d.text || ''));
  else if (name === 'error') {
    finished = true;
    endReply();
    fail(String(d.message || S[18]), d.retryable && lastSend ? resend : null);
  }
  if (id) st.seq = Math.max(st.seq || 0, id);
  if (name === 'done' || name === 'error') {
    if (st.next) {
      st.thread_id = st.next;
      st.next = undefined;
      st.seq = 0;
    }
  }
  if (name === 'done') {
    finished = true;
    endReply();
    setBusy(false);
    if (!isOpen) toParent({ type: 'unread', count: ++unread });
  }
  save();
}

function endReply() {
  if (reply) reply.end();
  reply = null;
}

function threadUrl() { return chatUrl + '/threads/' + encodeURIComponent(st.thread_id || ''); }

/** @param {string} text @param {string} [action] */
function send(text, action) {
  if (busy) return;
  hideBar();
  addMessage('user', text);
  lastSend = { text: text, action: action };
  post();
}

function resend() { hideBar(); post(); }

async function post() {
  var sent = /** @type {{text: string, action?: string}} */ (lastSend);
  /** @type {Record<string, string>} */
  var body = { message: sent.text };
  if (sent.action) body.action = sent.action;
  if (st.thread_id && st.token) {
    body.thread_id = st.thread_id;
    body.thread_token = st.token;
  }
  setBusy(true);
  finished = false;
  /** @type {Response} */
  var res;
  try {
    res = await fetch(chatUrl, { method: 'POST', headers: { 'Content-Type': 'application/json', Accept: 'text/event-stream' }, body: JSON.stringify(body) });
  } catch (e) {
    return fail(navigator.onLine ? S[18] : S[16], resend);
  }
  if (!res.ok) return httpFail(res, resend, true);
  await consume(res);
}

/** @param {Response} res @param {() => void} retry @param {boolean} [chat] a chat request (may name a lost thread) */
async function httpFail(res, retry, chat) {
  /** @type {any} */
  var j = {};
  try { j = await res.json(); } catch (e) { /* not JSON */ }
  if (res.status === 429) {
    var wait = parseInt(res.headers.get('Retry-After') || '', 10) || j.retry_after || 10;
    return fail(S[17].replace('{n}', String(Math.ceil(wait))), retry, wait);
  }
  if (chat && (res.status === 401 || res.status === 403 || res.status === 404) && st.thread_id) {
    // The stored conversation is gone (expired or unknown): start a fresh one.
    st = { seq: 0 };
    save();
    return retry();
  }
  fail(res.status < 500 && j.detail ? String(j.detail) : S[18], retry);
}

/** @param {Response} res */
async function consume(res) {
  try { await readEvents(res, onEvent); } catch (e) { /* the connection dropped */ }
  if (!finished) resume();
}

/**
 * Replays the current reply from the events endpoint and stops at `done`: what we missed, or
 * after a reload (nothing of it on screen) the whole turn.
 * @param {boolean} [whole]
 */
async function resume(whole) {
  if (!st.thread_id || !st.token) return fail(S[19], null);
  setBusy(true);
  finished = false;
  var after = String((whole ? st.turn : st.seq) || 0);
  var ctl = new AbortController();
  try {
    var res = await fetch(threadUrl() + '/events?after=' + after, {
      headers: { 'X-Thread-Token': st.token, 'Last-Event-ID': after, Accept: 'text/event-stream' },
      signal: ctl.signal
    });
    if (!res.ok) throw res;
    await readEvents(res, function (name, d, id) {
      onEvent(name, d, id);
      if (finished) ctl.abort();
    });
  } catch (e) { /* aborted at done, or failed */ }
  if (!finished) fail(navigator.onLine ? S[19] : S[16], function () { resume(); });
}

// ------------------------------------------------------------------ cart and order

var cartOpen = false;

/** @param {Cart} cart */
function renderCart(cart) {
  cartBox.textContent = '';
  var lines = (cart && cart.lines) || [];
  cartBox.hidden = !lines.length || Object.keys(orderCards).length > 0;
  if (!lines.length) return;
  var count = lines.reduce(function (n, l) { return n + l.quantity; }, 0);
  var checkout = h('button', { type: 'button', class: 'sa-go' }, S[5]);
  checkout.onclick = function () { send(S[5], 'checkout'); };
  var details = h('details', null, h('summary', null, S[4] + ' · ' + count + ' ' + S[25].split('/')[+(new Intl.PluralRules(lang).select(count) != 'one')] + ' · ' + money(cart.subtotal, cart.currency)), lineList(lines, cart.currency));
  // Keep the customer's choice to see the lines across updates.
  if (cartOpen) details.setAttribute('open', '');
  details.addEventListener('toggle', function () { cartOpen = /** @type {HTMLDetailsElement} */ (details).open; });
  cartBox.append(details);
  if (!shut) cartBox.append(checkout);
}

/** @param {Order} order */
function renderOrder(order) {
  if (!order || !order.order_id) return;
  cartBox.hidden = true;
  var cur = order.currency;
  var rows = h('dl', { class: 'sa-sum' });
  /** @type {[number, number|undefined][]} */
  var sums = [[7, order.subtotal], [8, order.tax], [9, order.tip], [10, order.total]];
  sums.forEach(function (p) {
    if (p[1] || p[0] === 10) rows.append(h('dt', null, S[p[0]]), h('dd', null, money(p[1] || 0, cur)));
  });
  var status = h('p', { class: 'sa-status', role: 'status' });
  var card = h('section', { class: 'sa-order', 'aria-label': S[6] }, h('h2', null, S[6]), lineList(order.items, cur), rows, status);
  var payBtn = h('button', { type: 'button', class: 'sa-go' }, S[11] + ' ' + money(order.total, cur));
  payBtn.onclick = function () { pay(order.order_id, /** @type {HTMLButtonElement} */ (payBtn)); };
  if (order.status === 'awaiting_payment') card.append(payBtn);
  var old = orderCards[order.order_id];
  if (old) old.replaceWith(card);
  else bubble('sa-card', card);
  orderCards[order.order_id] = card;
  showStatus(order);
}

/** @param {{order_id: string, status: string, number?: number}} o */
function showStatus(o) {
  var card = orderCards[o.order_id];
  if (!card) return;
  var line = /** @type {HTMLElement} */ (card.querySelector('.sa-status'));
  var payBtn = card.querySelector('.sa-go');
  if (PAID.indexOf(o.status) >= 0) {
    line.textContent = '✓ ' + S[14] + ' ' + (o.number || o.order_id);
    line.className = 'sa-status sa-ok';
    if (payBtn) payBtn.remove();
  } else if (FAILED.indexOf(o.status) >= 0) {
    line.textContent = S[15];
    line.className = 'sa-status sa-bad';
    if (payBtn) payBtn.removeAttribute('disabled');
  } else if (payBtn && !paying) {
    // Still awaiting payment and no payment window open (it was closed or cancelled).
    payBtn.removeAttribute('disabled');
    line.textContent = '';
  }
}

/** @type {EventSource|null} */ var orderEvents = null;
/** @type {Window|null} */ var popup = null;
var paying = false; // a payment window (or the link that replaces it) is open
var popupTimer = 0;

/**
 * Opens the payment window synchronously (inside the click), then asks for the checkout URL.
 * @param {string} orderId @param {HTMLButtonElement} btn
 */
function pay(orderId, btn) {
  popup = window.open('', 'shop_assist_pay', 'popup,width=480,height=720');
  paying = true;
  btn.disabled = true;
  var line = /** @type {HTMLElement} */ (orderCards[orderId].querySelector('.sa-status'));
  line.textContent = S[12];
  line.className = 'sa-status';
  fetch('/api/order/' + shopPath, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ order_id: orderId, thread_token: st.token }) })
    .then(function (r) { return r.ok ? r.json() : Promise.reject(r); })
    .then(function (p) {
      var url = new URL(p.checkout_url, location.href);
      if (url.protocol !== 'https:' && url.origin !== location.origin) throw new Error('unsafe checkout URL');
      st.pay = { order_id: p.order_id || orderId, token: p.order_token, url: url.href };
      save();
      if (popup && !popup.closed) popup.location.href = url.href;
      else line.append(' ', h('a', { href: url.href, target: '_blank', class: 'sa-link' }, S[13]));
      watch();
    })
    .catch(function (r) {
      if (popup) popup.close();
      paying = false;
      btn.disabled = false;
      line.textContent = '';
      if (r instanceof Response) httpFail(r, function () { btn.click(); });
      else fail(S[18], null);
    });
}

/** Follows the order's status until it is final; the server's answer is the truth. */
function watch() {
  var p = st.pay;
  if (!p || p.final) return;
  checkStatus();
  if (orderEvents) orderEvents.close();
  orderEvents = new EventSource('/api/order/' + encodeURIComponent(p.order_id) + '/events?token=' + encodeURIComponent(p.token));
  /** @param {MessageEvent} e */
  var on = function (e) {
    try { applyStatus(JSON.parse(e.data)); } catch (err) { /* ignore */ }
  };
  ['message', 'status', 'order'].forEach(function (n) { /** @type {EventSource} */ (orderEvents).addEventListener(n, /** @type {any} */ (on)); });
  // A closed popup proves nothing: ask the server once more.
  clearInterval(popupTimer);
  popupTimer = setInterval(function () {
    if (!st.pay || st.pay.final) clearInterval(popupTimer);
    else if (popup && popup.closed) {
      popup = null;
      paying = false;
      checkStatus();
    }
  }, 1000);
}

function checkStatus() {
  var p = st.pay;
  if (!p) return;
  fetch('/api/order/status/' + encodeURIComponent(p.order_id) + '?token=' + encodeURIComponent(p.token))
    .then(function (r) { return r.ok ? r.json() : null; })
    .then(function (o) { if (o) applyStatus(o); }, function () { /* the stream keeps watching */ });
}

/** @param {any} o */
function applyStatus(o) {
  var p = st.pay;
  var order = o && (o.order || o);
  if (!p || !order || !order.status) return;
  order.order_id = order.order_id || p.order_id;
  if (!orderCards[order.order_id] && order.items) renderOrder(order);
  showStatus(order);
  var paid = PAID.indexOf(order.status) >= 0;
  if (p.final) return;
  if (paid || order.status === 'expired' || order.status === 'cancelled') {
    p.final = true;
    save();
    if (orderEvents) orderEvents.close();
    if (paid) {
      addMessage('bot', '✓ ' + S[14] + ' **' + (order.number || order.order_id) + '**');
      var again = h('button', { type: 'button', class: 'sa-again' }, S[23]);
      again.onclick = function () { st = { seq: 0 }; save(); location.reload(); };
      bubble('sa-note', again);
      toParent({ type: 'order_paid', order_id: order.order_id, number: order.number, status: order.status });
    }
  }
}

// ------------------------------------------------------------------ wiring

form.addEventListener('submit', function (e) {
  e.preventDefault();
  var text = input.value.trim();
  if (!text || busy) return;
  input.value = '';
  send(text);
});
closeBtn.onclick = function () { close(true); };
document.addEventListener('keydown', function (e) {
  if (e.key === 'Escape' && embed) close(true);
});

/** @param {boolean} tell */
function close(tell) {
  isOpen = false;
  if (tell) toParent({ type: 'close' });
}

window.addEventListener('message', function (e) {
  var m = e.data || {};
  // The payment return page (our origin) says the order was paid: a hint, so ask the server.
  if (e.origin === location.origin && /^shop-assist:order_/.test(m.type)) return checkStatus();
  if (!embed || e.origin !== cfg.parent || e.source !== parent || m.sa !== 1) return;
  if (m.type === 'open') {
    isOpen = true;
    unread = 0;
    toParent({ type: 'unread', count: 0 });
    scroll(true);
    (mobile || m.full ? /** @type {HTMLElement} */ (closeBtn) : input).focus();
  } else if (m.type === 'close') close(false);
  else if (m.type === 'resize') scroll(true);
});

// Going offline while idle is only news; a message that failed keeps its Retry.
window.addEventListener('offline', function () { if (bar.hidden && !busy) fail(S[16], null); });
window.addEventListener('online', function () { if (!bar.hidden && barBtn.hidden) hideBar(); });

// On phones keep the input above the on-screen keyboard (the hosted page owns its viewport).
var vv = window.visualViewport;
if (vv && !embed) {
  var fit = function () {
    document.documentElement.style.setProperty('--sa-h', /** @type {VisualViewport} */ (vv).height + 'px');
    scroll(true);
  };
  vv.addEventListener('resize', fit);
}

async function start() {
  addMessage('bot', cfg.greeting || S[3]);
  if (st.thread_id && st.token) {
    try {
      var res = await fetch(threadUrl(), { headers: { 'X-Thread-Token': st.token } });
      if (res.ok) {
        var t = await res.json();
        /** @type {{role: string, content: string}[]} */
        var msgs = (t.messages || []).filter(function (/** @type {any} */ m) { return (m.role === 'user' || m.role === 'assistant') && m.content; });
        msgs.forEach(function (m) { addMessage(m.role, m.content); });
        renderCart(t.cart);
        if (t.order) renderOrder(t.order);
        // A reply that was still streaming when the page went away: pick it up where it stopped.
        if (st.busy && (!msgs.length || msgs[msgs.length - 1].role === 'user')) resume(true);
        else setBusy(false);
      } else if (res.status === 404 || res.status === 401 || res.status === 403) {
        st = { seq: 0 };
        save();
      } else fail(S[18], function () { location.reload(); });
    } catch (e) {
      fail(navigator.onLine ? S[18] : S[16], function () { location.reload(); });
    }
  }
  if (st.pay && !st.pay.final) watch();
  if (!embed && !mobile) input.focus();
  scroll(true);
  toParent({ type: 'ready' });
}

start();
})();
