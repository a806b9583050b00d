/* The sandbox page: pick who you are, read channels / the billbot DM / the App Home, click buttons, fill modals,
 * type /billing commands. Everything that reaches billbot goes through the sandbox backend, which signs it. */
"use strict";

(function () {
  const { h } = window.Blocks;
  const M = window.Mrkdwn;
  const $ = (id) => document.getElementById(id);

  const params = new URLSearchParams(location.search);
  const ui = {
    user: params.get("user") || localStorage.getItem("sandbox.user") || "",
    channel: params.get("channel") || "",   // a channel name, or "@billbot" for the app
    tab: params.get("tab") || "messages",   // for @billbot: home | messages
    thread: null,
  };
  let state = null;
  let poll = null;
  let renderedModal = "";
  let renderedHome = "";
  let busy = 0;

  /* ---------- server calls ---------- */

  async function post(path, body) {
    busy++;
    document.body.dataset.busy = String(busy);
    try {
      const r = await fetch(`/sandbox/${path}`, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
      });
      const out = await r.json();
      if (out.ok === false && (out.error || out.message)) toast(describe(out), true);
      else if (out.message) toast(out.message, false);
      return out;
    } catch (e) {
      toast(`sandbox unreachable: ${e}`, true);
      return { ok: false };
    } finally {
      busy--;
      document.body.dataset.busy = String(busy);
      refresh();
    }
  }

  function describe(out) {
    if (out.error) return `error: ${out.error}`;
    return out.message || "failed";
  }

  function channelRef() {
    if (!state) return null;
    if (ui.channel === "@billbot") return state.dm;
    const ch = (state.channels || []).find((c) => c.name === ui.channel || c.id === ui.channel);
    return ch ? ch.id : null;
  }

  function stateUrl(since) {
    const q = new URLSearchParams();
    if (ui.user) q.set("user", ui.user);
    const ch = channelRef();
    if (ch) q.set("channel", ch);
    else if (ui.channel && ui.channel !== "@billbot") q.set("channel", ui.channel);
    if (ui.thread) q.set("thread", ui.thread);
    if (since != null) { q.set("since", since); q.set("wait", "20"); }
    return `/sandbox/state?${q}`;
  }

  async function load(since, signal) {
    const r = await fetch(stateUrl(since), { signal, cache: "no-store" });
    return r.json();
  }

  /* fetch now, then long-poll for changes */
  async function refresh() {
    if (poll) poll.abort();
    const ctl = new AbortController();
    poll = ctl;
    try {
      let s = await load(null, ctl.signal);
      if (ui.channel === "@billbot" && !channelRef() && s.dm) { state = s; s = await load(null, ctl.signal); }
      apply(s);
      while (!ctl.signal.aborted) {
        s = await load(state.version, ctl.signal);
        if (!ctl.signal.aborted) apply(s);
      }
    } catch (e) {
      if (e.name !== "AbortError") setTimeout(refresh, 1000);
    }
  }

  /* ---------- rendering ---------- */

  const userName = (id) => {
    if (!state) return id;
    if (state.bot && id === state.bot.id) return state.bot.name;
    const u = (state.users || []).find((x) => x.id === id);
    return u ? u.name : id;
  };
  const channelName = (id) => {
    const c = state && (state.channels || []).find((x) => x.id === id);
    return c ? c.name : id;
  };

  function apply(s) {
    state = s;
    if (!ui.channel) ui.channel = (s.channels.find((c) => c.name === "billing-exceptions") || s.channels[0] || {}).name || "";
    renderSidebar();
    renderHeader();
    renderConversation();
    renderThread();
    renderModal();
    document.body.dataset.version = String(s.version);
    syncUrl();
  }

  function syncUrl() {
    const q = new URLSearchParams();
    if (ui.user) q.set("user", ui.user);
    if (ui.channel) q.set("channel", ui.channel);
    if (ui.channel === "@billbot") q.set("tab", ui.tab);
    history.replaceState(null, "", `?${q}`);
  }

  function renderSidebar() {
    const picker = $("user-picker");
    const key = JSON.stringify(state.users.map((u) => [u.id, u.name, u.roles]));
    if (picker.dataset.key !== key) {
      picker.dataset.key = key;
      picker.replaceChildren(h("option", { value: "" }, "— pick a demo user —"),
        ...state.users.map((u) => h("option", { value: u.id }, `${u.name}${u.roles.length ? ` (${u.roles.join(", ")})` : ""}`)));
    }
    picker.value = state.user || "";
    const me = state.users.find((u) => u.id === state.user);
    $("user-roles").replaceChildren(...(me ? (me.roles.length ? me.roles : ["no role"]).map((r) => h("span", { class: `role role-${r}`, "data-testid": `role-${r}` }, r)) : []));
    const list = $("channel-list");
    list.replaceChildren(...state.channels.map((c) => h("li", {
      class: `nav-item${ui.channel === c.name ? " active" : ""}`,
      "data-testid": `channel-${c.name}`,
      onclick: () => go(c.name),
    }, `# ${c.name}`)));
    $("app-entry").classList.toggle("active", ui.channel === "@billbot");
  }

  function renderHeader() {
    const isApp = ui.channel === "@billbot";
    $("conv-title").textContent = isApp ? "billbot" : `# ${ui.channel}`;
    $("app-tabs").hidden = !isApp;
    $("tab-home").classList.toggle("active", isApp && ui.tab === "home");
    $("tab-messages").classList.toggle("active", isApp && ui.tab === "messages");
    const showHome = isApp && ui.tab === "home";
    $("home").hidden = !showHome;
    $("messages").hidden = showHome;
    $("composer").hidden = showHome || !state.user;
    $("composer-input").placeholder = isApp ? "Message billbot — type /billing help" : `Message #${ui.channel} — type /billing help`;
  }

  function avatar(id, name, isBot) {
    const initials = (name || id || "?").split(/\s+/).map((p) => p[0]).join("").slice(0, 2).toUpperCase();
    let hue = 0;
    for (const ch of id || "") hue = (hue * 31 + ch.charCodeAt(0)) % 360;
    return h("div", { class: `avatar${isBot ? " bot" : ""}`, style: `background: hsl(${hue} 45% 45%)` }, isBot ? "bb" : initials);
  }

  function fmtTime(ts) {
    const d = new Date(Number(ts) * 1000);
    return d.toLocaleTimeString("en-US", { hour: "numeric", minute: "2-digit" });
  }

  function messageEl(m, channelId, inThread) {
    const isBot = !!m.bot_id;
    const author = m.subtype === "slackbot" ? "Slackbot" : isBot ? "billbot" : userName(m.user);
    const ctx = {
      userName, channelName, users: state.users, channels: state.channels,
      onAction: (el, blockId, selected) => act(el, blockId, selected, { channel: channelId, message_ts: m.ts }),
    };
    const body = h("div", { class: "msg-body" },
      h("div", { class: "msg-meta" },
        h("span", { class: "msg-author" }, author),
        isBot ? h("span", { class: "app-badge" }, "APP") : null,
        h("span", { class: "msg-time", title: m.ts }, fmtTime(m.ts)),
        m.edited ? h("span", { class: "msg-edited", "data-testid": "edited" }, "(edited)") : null),
      m.ephemeral_for ? h("div", { class: "ephemeral-note" }, "👁 Only visible to you") : null,
      m.blocks && m.blocks.length
        ? h("div", { class: "msg-blocks" }, window.Blocks.render(m.blocks, ctx))
        : h("div", { class: "msg-text", html: M.render(m.text, ctx) }),
      (m.files || []).length ? h("div", { class: "msg-files" }, m.files.map((f) => h("a", {
        class: "file-chip", href: f.url_private, target: "_blank", rel: "noopener", "data-testid": "file",
      }, `📄 ${f.title || f.name}`, h("span", { class: "file-size" }, ` ${Math.max(1, Math.round(f.size / 1024))} KB`)))) : null,
      !inThread && m.reply_count ? h("button", {
        class: "thread-link", type: "button", "data-testid": "thread-link",
        onclick: () => { ui.thread = m.ts; refresh(); },
      }, `${m.reply_count} ${m.reply_count === 1 ? "reply" : "replies"}`) : null);
    return h("div", {
      class: `message${m.ephemeral_for ? " ephemeral" : ""}`,
      "data-testid": m.ephemeral_for ? "ephemeral" : "message",
      "data-ts": m.ts,
    }, avatar(isBot ? "bot" : m.user, author, isBot), body);
  }

  function renderConversation() {
    const isApp = ui.channel === "@billbot";
    if (isApp && ui.tab === "home") return renderHome();
    const box = $("messages");
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    const chId = channelRef();
    const msgs = state.messages || [];
    if (!state.user) {
      box.replaceChildren(h("div", { class: "empty" }, "Pick a demo user on the left to see what they see."));
      return;
    }
    box.replaceChildren(...(msgs.length ? msgs.map((m) => messageEl(m, chId, false))
      : [h("div", { class: "empty" }, isApp ? "Your DM with billbot. Try /billing help." : "No messages yet.")]));
    if (atBottom) box.scrollTop = box.scrollHeight;
  }

  function renderHome() {
    const box = $("home");
    const home = state.home;
    const key = home ? `${home.id}:${home.hash}` : "none";
    if (key === renderedHome) return;
    renderedHome = key;
    if (!home) {
      box.replaceChildren(h("div", { class: "empty" }, "billbot has not published a Home tab for you yet."));
      return;
    }
    const ctx = {
      userName, channelName, users: state.users, channels: state.channels,
      onAction: (el, blockId, selected) => act(el, blockId, selected, { view_id: home.id, root: box }),
    };
    box.replaceChildren(h("div", { class: "home-view", "data-view-id": home.id }, window.Blocks.render(home.blocks, ctx)));
  }

  function renderThread() {
    const pane = $("thread-pane");
    if (!ui.thread || !state.thread || !state.thread.length) {
      pane.hidden = true;
      return;
    }
    pane.hidden = false;
    const chId = channelRef();
    $("thread-messages").replaceChildren(...state.thread.map((m, i) => {
      const el = messageEl(m, chId, true);
      if (i === 0) el.classList.add("thread-parent");
      return el;
    }));
  }

  let modalErrors = {};

  function renderModal() {
    const root = $("modal-root");
    const v = state.modal;
    const key = v ? `${v.id}:${v.hash}:${JSON.stringify(modalErrors)}` : "";
    if (key === renderedModal) return;
    renderedModal = key;
    if (!v) {
      root.hidden = true;
      root.replaceChildren();
      modalErrors = {};
      return;
    }
    const old = root.querySelector(".modal");
    const keep = old ? window.Blocks.collect(root) : {};
    const keepFor = old ? `${old.dataset.viewId}:${old.dataset.hash}` : "";
    const ctx = {
      userName, channelName, users: state.users, channels: state.channels, errors: modalErrors,
      onAction: (el, blockId, selected) => act(el, blockId, selected, { view_id: v.id, root }),
    };
    const blocks = h("div", { class: "modal-body" }, window.Blocks.render(v.blocks, ctx));
    const form = h("form", {
      class: "modal", "data-testid": "modal", "data-view-id": v.id, "data-hash": v.hash, "data-callback-id": v.callback_id,
      onsubmit: (e) => { e.preventDefault(); submitModal(v, root); },
    },
      h("header", { class: "modal-header" },
        h("span", { class: "modal-title", "data-testid": "modal-title" }, M.emojize((v.title && v.title.text) || "")),
        h("button", { type: "button", class: "icon-button", title: "Close", onclick: () => closeModal(v) }, "×")),
      blocks,
      h("footer", { class: "modal-footer" },
        h("button", { type: "button", class: "bk-button", "data-testid": "modal-close", onclick: () => closeModal(v) },
          M.emojize((v.close && v.close.text) || "Cancel")),
        v.submit ? h("button", { type: "submit", class: "bk-button primary", "data-testid": "modal-submit" }, M.emojize(v.submit.text)) : null));
    root.replaceChildren(h("div", { class: "overlay" }, form));
    root.hidden = false;
    // keep what the visitor typed when only the errors changed (same view, same hash)
    if (keepFor === `${v.id}:${v.hash}`) window.Blocks.restore(root, keep);
  }

  /* ---------- actions ---------- */

  async function act(el, blockId, selected, where) {
    if (el.confirm && !(await confirmDialog(el.confirm, el.style))) return;
    const values = where.root ? window.Blocks.collect(where.root) : {};
    await post("action", {
      user: ui.user, block_id: blockId, action_id: el.action_id, selected, values, element: el,
      channel: where.channel || null, message_ts: where.message_ts || null, view_id: where.view_id || null,
    });
  }

  async function submitModal(v, root) {
    const out = await post("submit", { user: ui.user, view_id: v.id, values: window.Blocks.collect(root) });
    modalErrors = out.errors || {};
    renderedModal = "";
    if (state) renderModal();
  }

  async function closeModal(v) {
    modalErrors = {};
    await post("close", { user: ui.user, view_id: v.id });
  }

  function confirmDialog(c, style) {
    return new Promise((resolve) => {
      const root = $("confirm-root");
      const done = (yes) => { root.hidden = true; root.replaceChildren(); resolve(yes); };
      root.replaceChildren(h("div", { class: "overlay" }, h("div", { class: "modal confirm", "data-testid": "confirm-dialog" },
        h("header", { class: "modal-header" }, h("span", { class: "modal-title" }, M.emojize((c.title && c.title.text) || "Are you sure?"))),
        h("div", { class: "modal-body", html: M.textObj(c.text, { userName, channelName }) }),
        h("footer", { class: "modal-footer" },
          h("button", { type: "button", class: "bk-button", "data-testid": "confirm-deny", onclick: () => done(false) },
            M.emojize((c.deny && c.deny.text) || "Cancel")),
          h("button", {
            type: "button", class: `bk-button ${c.style || style || "primary"}`, "data-testid": "confirm-ok",
            onclick: () => done(true),
          }, M.emojize((c.confirm && c.confirm.text) || "Yes"))))));
      root.hidden = false;
    });
  }

  let toastTimer = null;
  function toast(text, isError) {
    const t = $("toast");
    t.textContent = text;
    t.className = isError ? "error" : "";
    t.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { t.hidden = true; }, 6000);
  }

  function go(channel, tab) {
    ui.channel = channel;
    ui.thread = null;
    if (tab) ui.tab = tab;
    renderedHome = "";
    if (channel === "@billbot" && ui.tab === "home" && ui.user) post("home", { user: ui.user });
    else refresh();
  }

  /* ---------- wiring ---------- */

  $("user-picker").addEventListener("change", (e) => {
    ui.user = e.target.value;
    if (state) state.dm = null;  // the DM belongs to the previous visitor
    localStorage.setItem("sandbox.user", ui.user);
    ui.thread = null;
    renderedHome = "";
    renderedModal = "";
    modalErrors = {};
    if (ui.channel === "@billbot" && ui.tab === "home" && ui.user) post("home", { user: ui.user });
    else refresh();
  });
  $("app-entry").addEventListener("click", () => go("@billbot", "home"));
  $("tab-home").addEventListener("click", () => go("@billbot", "home"));
  $("tab-messages").addEventListener("click", () => go("@billbot", "messages"));
  $("thread-close").addEventListener("click", () => { ui.thread = null; refresh(); });

  $("composer").addEventListener("submit", async (e) => {
    e.preventDefault();
    const input = $("composer-input");
    const text = input.value.trim();
    if (!text || !ui.user) return;
    const channel = channelRef();
    if (!channel) return;
    input.value = "";
    if (text.startsWith("/")) await post("command", { user: ui.user, channel, text });
    else await post("say", { user: ui.user, channel, text });
  });
  $("thread-composer").addEventListener("submit", async (e) => {
    e.preventDefault();
    const input = $("thread-input");
    const text = input.value.trim();
    if (!text || !ui.user || !ui.thread) return;
    input.value = "";
    await post("say", { user: ui.user, channel: channelRef(), text, thread_ts: ui.thread });
  });

  if (ui.channel === "@billbot" && ui.tab === "home" && ui.user) post("home", { user: ui.user });
  else refresh();
})();
