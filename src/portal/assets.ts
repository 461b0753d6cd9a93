/**
 * The portal's only static files, kept as strings so the build needs no copy
 * step. No inline script or style anywhere: the CSP allows 'self' only.
 */

export const PORTAL_CSS = `:root{color-scheme:light;--fg:#1a1a1a;--muted:#4a4a4a;--bg:#fff;--line:#c8c8c8;--accent:#0b57d0;--accent-fg:#fff;--danger:#a50e0e;--ok:#0d652d;--soft:#f3f5f8}
*{box-sizing:border-box}
[hidden]{display:none!important}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
.vh{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
.skip{position:absolute;left:-999px}.skip:focus{left:1rem;top:1rem;background:var(--bg);padding:.5rem;z-index:1}
header{display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:center;justify-content:space-between;padding:.75rem 1rem;border-bottom:1px solid var(--line);background:var(--soft)}
header .brand{font-weight:600;color:var(--fg);text-decoration:none}
header form{margin:0}
main{max-width:46rem;margin:0 auto;padding:1rem}
h1{font-size:1.5rem;margin:.5rem 0 1rem}h2{font-size:1.2rem;margin:1.5rem 0 .5rem}
a{color:var(--accent)}
a:focus-visible,button:focus-visible,input:focus-visible{outline:3px solid var(--accent);outline-offset:2px}
.who{color:var(--muted);overflow-wrap:anywhere}
label{display:block;font-weight:600;margin:.75rem 0 .25rem}
input[type=text],input[type=password],input[type=email]{width:100%;max-width:28rem;padding:.6rem;font:inherit;border:1px solid #767676;border-radius:4px}
fieldset{border:1px solid var(--line);border-radius:4px;margin:1rem 0;padding:.5rem 1rem}
fieldset label{display:inline-flex;gap:.4rem;align-items:center;font-weight:400;margin:.25rem 1rem .25rem 0;min-height:44px}
.hint{color:var(--muted);font-size:.95rem;margin:.25rem 0}
button,.button{display:inline-block;min-height:44px;padding:.6rem 1.1rem;font:inherit;font-weight:600;border-radius:4px;border:1px solid var(--accent);background:var(--accent);color:var(--accent-fg);cursor:pointer;text-decoration:none}
button.secondary,.button.secondary{background:var(--bg);color:var(--accent)}
button.danger{background:var(--danger);border-color:var(--danger)}
.actions{display:flex;flex-wrap:wrap;gap:.75rem;margin:1rem 0}
.notice{padding:.75rem 1rem;border-radius:4px;border-left:4px solid var(--ok);background:#e6f4ea;margin:1rem 0}
.error{padding:.75rem 1rem;border-radius:4px;border-left:4px solid var(--danger);background:#fce8e6;margin:1rem 0}
.secret{display:block;font:1.25rem/1.4 ui-monospace,Menlo,Consolas,monospace;padding:.75rem;background:var(--soft);border:1px solid var(--line);border-radius:4px;overflow-wrap:anywhere;user-select:all}
.table-wrap{overflow-x:auto}
table{border-collapse:collapse;width:100%;margin:.5rem 0}
caption{text-align:left;color:var(--muted);padding:.25rem 0}
th,td{text-align:left;padding:.5rem;border-bottom:1px solid var(--line);vertical-align:top}
td form{margin:0}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem}dt{font-weight:600}dd{margin:0;overflow-wrap:anywhere}
@media (max-width:36rem){table.stack thead{position:absolute;left:-999px}table.stack tr{display:block;border-bottom:1px solid var(--line);padding:.5rem 0}table.stack td{display:block;border:0;padding:.15rem 0}table.stack td[data-label]::before{content:attr(data-label) ": ";font-weight:600}}
`;

/** Progressive enhancement only: the copy button (hidden without JavaScript). */
export const PORTAL_JS = `document.querySelectorAll('[data-copy]').forEach(function (b) {
  var target = document.getElementById(b.getAttribute('data-copy'));
  if (!target || !navigator.clipboard) return;
  b.hidden = false;
  b.addEventListener('click', function () {
    navigator.clipboard.writeText(target.textContent.trim()).then(function () {
      var status = document.getElementById(b.getAttribute('aria-describedby'));
      if (status) status.textContent = 'Copied.';
    });
  });
});
`;
