// Shop Assist dashboard: copy buttons, sold-out toggles, confirmations, printing and the live
// orders table. Plain JavaScript, no inline handlers (owner pages run under a strict CSP).
(function () {
  'use strict';

  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || '';

  /** @param {string} text @param {HTMLElement} button */
  function copyText(text, button) {
    var done = function () {
      var label = button.textContent;
      button.textContent = 'Copied';
      button.classList.add('copied');
      setTimeout(function () { button.textContent = label; button.classList.remove('copied'); }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { fallbackCopy(text); done(); });
    } else {
      fallbackCopy(text);
      done();
    }
  }

  function fallbackCopy(text) {
    var area = document.createElement('textarea');
    area.value = text;
    area.setAttribute('readonly', '');
    area.className = 'offscreen';
    document.body.appendChild(area);
    area.select();
    try { document.execCommand('copy'); } catch (e) { /* the text stays selectable */ }
    document.body.removeChild(area);
  }

  document.addEventListener('click', function (event) {
    var target = /** @type {HTMLElement} */ (event.target);
    var copy = target.closest('[data-copy]');
    if (copy) {
      var source = document.querySelector(copy.getAttribute('data-copy'));
      if (source) copyText(source.textContent.trim(), /** @type {HTMLElement} */ (copy));
    }
    if (target.closest('[data-print]')) window.print();
  });

  document.addEventListener('submit', function (event) {
    var form = /** @type {HTMLFormElement} */ (event.target);
    var question = form.getAttribute('data-confirm');
    if (question && !window.confirm(question)) { event.preventDefault(); return; }
    if (form.hasAttribute('data-toggle-availability')) { event.preventDefault(); toggleAvailability(form); }
  });

  /** Sold-out toggle without a page reload (the plain form still works without JS). */
  function toggleAvailability(form) {
    var button = form.querySelector('button');
    button.disabled = true;
    fetch(form.action, { method: 'POST', body: new FormData(form), headers: { Accept: 'application/json' }, credentials: 'same-origin' })
      .then(function (r) { if (!r.ok) throw new Error(String(r.status)); return r.json(); })
      .then(function (data) {
        form.querySelector('input[name="available"]').value = data.available ? '0' : '1';
        form.querySelector('.state').textContent = data.available ? 'Available' : 'Sold out';
        button.textContent = data.available ? 'Mark sold out' : 'Mark available';
        form.closest('tr').classList.toggle('sold-out', !data.available);
      })
      .catch(function () { form.submit(); })
      .then(function () { button.disabled = false; });
  }

  // ------------------------------------------------------------ live orders

  var table = document.getElementById('orders');
  if (!table) return;
  var tbody = table.querySelector('tbody');
  var shopId = table.getAttribute('data-shop-id');
  var listUrl = table.getAttribute('data-list');
  var liveState = document.getElementById('live-state');
  var empty = document.getElementById('no-orders');
  var shown = (new URL(listUrl, location.href).searchParams.get('status') || '').split(',').filter(Boolean);
  var LABELS = { preparing: 'Preparing', ready: 'Ready', completed: 'Completed', cancelled: 'Cancel' };
  var audio = null;

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text != null) node.textContent = String(text);
    return node;
  }

  /** One table row, the same markup as dashboard/_order_row.html. */
  function renderRow(o) {
    var tr = el('tr', 'status-' + o.status + (o.flagged ? ' flagged' : ''));
    tr.setAttribute('data-order-id', o.order_id);
    var at = o.paid_at || o.created_at || '';
    var when = el('td', 'when', at.slice(11, 16));
    when.appendChild(el('br'));
    when.appendChild(el('span', 'muted small', at.slice(0, 10)));
    var idCell = el('td', 'order-no');
    var link = el('a', '', '#' + o.number);
    link.href = '/dashboard/shops/' + shopId + '/orders/' + o.order_id;
    idCell.appendChild(link);
    idCell.appendChild(el('br'));
    var shortId = el('span', 'muted small', o.order_id.slice(-6));
    shortId.title = o.order_id;
    idCell.appendChild(shortId);
    var f = o.fulfillment || {};
    var who = el('td', '', (f.name || '') + (f.table ? ' · table ' + f.table : ''));
    who.appendChild(el('br'));
    who.appendChild(el('span', 'muted small', f.type || ''));
    var items = el('td', 'items');
    (o.items || []).forEach(function (i, n) {
      if (n) items.appendChild(el('br'));
      var opts = (i.options || []).map(function (x) { return x.choice; }).join(', ');
      items.appendChild(document.createTextNode(i.quantity + ' × ' + i.name + (opts ? ' (' + opts + ')' : '')));
    });
    var status = el('td');
    status.appendChild(el('span', 'badge status', o.status.replace(/_/g, ' ')));
    if (o.flagged) {
      status.appendChild(el('br'));
      status.appendChild(el('span', 'badge flag', 'Check payment: ' + (o.flag_reason || 'flagged')));
    } else if (o.flag_reason) {
      status.appendChild(el('br'));
      status.appendChild(el('span', 'badge ok', 'Resolved: ' + o.flag_reason));
    }
    if (o.notification_failed) {
      status.appendChild(el('br'));
      status.appendChild(el('span', 'badge flag', 'Notification failed'));
    }
    var actions = el('td', 'actions');
    (o.next_statuses || []).forEach(function (s) {
      var b = el('button', s === 'cancelled' ? 'danger' : '', LABELS[s] || s);
      b.type = 'button';
      b.setAttribute('data-status', s);
      actions.appendChild(b);
    });
    [when, idCell, who, items, el('td', 'num', o.total_display || ''), status, actions].forEach(function (c) { tr.appendChild(c); });
    return tr;
  }

  function upsert(o, isNew) {
    var old = tbody.querySelector('tr[data-order-id="' + CSS.escape(o.order_id) + '"]');
    if (shown.length && shown.indexOf(o.status) < 0) {
      if (old) old.remove();
      return;
    }
    var row = renderRow(o);
    if (old) old.replaceWith(row); else tbody.insertBefore(row, tbody.firstChild);
    if (isNew && !old) row.classList.add('new');
    empty.classList.toggle('hidden', tbody.children.length > 0);
  }

  function refreshAll() {
    return fetch(listUrl, { credentials: 'same-origin', headers: { Accept: 'application/json' } })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (data) {
        tbody.textContent = '';
        data.orders.forEach(function (o) { tbody.appendChild(renderRow(o)); });
        empty.classList.toggle('hidden', data.orders.length > 0);
      })
      .catch(function () { /* the next event or reconnect tries again */ });
  }

  function fetchOrder(id) {
    return fetch('/api/orders/' + encodeURIComponent(id), { credentials: 'same-origin', headers: { Accept: 'application/json' } })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); });
  }

  function beep() {
    if (!audio) return;
    var now = audio.currentTime;
    [0, 0.18].forEach(function (offset, n) {
      var osc = audio.createOscillator();
      var gain = audio.createGain();
      osc.frequency.value = n ? 1320 : 880;
      gain.gain.setValueAtTime(0.0001, now + offset);
      gain.gain.exponentialRampToValueAtTime(0.3, now + offset + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, now + offset + 0.15);
      osc.connect(gain).connect(audio.destination);
      osc.start(now + offset);
      osc.stop(now + offset + 0.16);
    });
  }

  function announce(o) {
    beep();
    if (window.Notification && Notification.permission === 'granted') {
      try {
        new Notification('New order #' + o.number, { body: (o.total_display || '') + ' · ' + (o.items || []).length + ' item(s)', tag: o.order_id });
      } catch (e) { /* some browsers only notify from a service worker */ }
    }
  }

  var alerts = document.getElementById('enable-alerts');
  alerts.addEventListener('click', function () {
    var Ctx = window.AudioContext || window.webkitAudioContext;
    if (Ctx && !audio) audio = new Ctx();  // needs this click: browsers block sound before one
    if (audio && audio.state === 'suspended') audio.resume();
    beep();
    if (window.Notification && Notification.permission === 'default') Notification.requestPermission();
    alerts.textContent = 'Sound on';
    alerts.disabled = true;
  });

  tbody.addEventListener('click', function (event) {
    var button = event.target.closest('button[data-status]');
    if (!button) return;
    var next = button.getAttribute('data-status');
    if (next === 'cancelled' && !window.confirm('Cancel this order?')) return;
    var id = button.closest('tr').getAttribute('data-order-id');
    button.disabled = true;
    fetch('/api/orders/' + encodeURIComponent(id), {
      method: 'PATCH',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf, Accept: 'application/json' },
      body: JSON.stringify({ status: next })
    })
      .then(function (r) { return r.json().then(function (body) { return { ok: r.ok, body: body }; }); })
      .then(function (res) {
        if (res.ok) upsert(res.body, false);
        else { window.alert(res.body.detail || 'That did not work.'); refreshAll(); }
      })
      .catch(function () { button.disabled = false; });
  });

  function setLive(text, ok) {
    liveState.textContent = text;
    liveState.classList.toggle('ok', ok);
  }

  var source = new EventSource(table.getAttribute('data-events'));
  source.addEventListener('ready', function () { setLive('Live', true); refreshAll(); });
  source.addEventListener('resync', refreshAll);
  source.addEventListener('error', function () { setLive('Reconnecting…', false); });
  source.addEventListener('order_paid', function (e) {
    var o = JSON.parse(e.data);
    fetchOrder(o.order_id).then(function (full) { upsert(full, true); announce(full); }, function () { upsert(o, true); announce(o); });
  });
  source.addEventListener('order_status', function (e) {
    var o = JSON.parse(e.data);
    fetchOrder(o.order_id).then(function (full) { upsert(full, false); }, function () { refreshAll(); });
  });
})();
