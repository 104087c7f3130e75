// The page may talk to the widget before it has loaded: calls queue until it arrives.
window.ShopAssist = window.ShopAssist || [];
document.getElementById('order-now').addEventListener('click', function () {
  window.ShopAssist.push(['open']);
});
window.ShopAssist.push(['on', 'order_paid', function (order) {
  var note = document.getElementById('paid-note');
  note.textContent = 'Thank you! Order ' + (order.number || order.order_id) + ' is paid.';
  note.hidden = false;
}]);
