// Ninja PBX portal: copy buttons and small form helpers (no dependencies; works offline).
// Copy buttons: <button data-copy="#id">; falls back to selecting the text.
document.addEventListener("click", function (event) {
  var button = event.target.closest("[data-copy]");
  if (!button) return;
  var source = document.querySelector(button.getAttribute("data-copy"));
  if (!source) return;
  var text = source.textContent.trim();
  var done = function () {
    button.textContent = "Copied";
    var status = document.getElementById(button.getAttribute("aria-describedby") || "");
    if (status) status.textContent = "Copied to the clipboard.";
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done, function () { select(source); });
  } else {
    select(source);
    try { if (document.execCommand("copy")) done(); } catch (e) { /* selected for manual copy */ }
  }
  function select(node) {
    var range = document.createRange();
    range.selectNodeContents(node);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }
});

// "Generate / I will choose": show the password field only when the customer chooses one.
document.addEventListener("DOMContentLoaded", function () {
  var field = document.getElementById("id_password");
  var radios = document.querySelectorAll("input[name=password_mode]");
  if (!field || !radios.length) return;
  var group = field.closest(".field") || field.parentNode;
  var sync = function () {
    var custom = document.querySelector("input[name=password_mode][value=custom]");
    group.hidden = !(custom && custom.checked);
  };
  radios.forEach(function (radio) { radio.addEventListener("change", sync); });
  sync();
});

// Forms that undo something ask first: <form data-confirm="Question?">.
document.addEventListener("submit", function (event) {
  var question = event.target.getAttribute && event.target.getAttribute("data-confirm");
  if (question && !window.confirm(question)) event.preventDefault();
});
