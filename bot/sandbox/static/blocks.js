/* Block Kit → DOM. Surfaces: message, modal, home. Interactive elements call ctx.onAction(el, blockId, selected);
 * input values are read back with Blocks.collect(root) as {block_id: {action_id: value | [values]}}. */
"use strict";

window.Blocks = (function () {
  const M = window.Mrkdwn;

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "html") el.innerHTML = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c == null || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  const txt = (obj, ctx) => h("span", { html: M.textObj(obj, ctx) });
  const plainText = (obj) => M.emojize((obj && typeof obj === "object" ? obj.text : obj) || "");

  function options(el) {
    const out = [...(el.options || [])];
    for (const g of el.option_groups || []) out.push(...(g.options || []));
    return out;
  }

  function idAttrs(el, blockId, kind) {
    return { "data-block-id": blockId, "data-action-id": el.action_id, "data-kind": kind || el.type };
  }

  /* interactive elements in actions blocks, section accessories and input blocks */
  function element(el, blockId, ctx, where) {
    const inInput = where === "input";
    const fire = (selected) => ctx.onAction && ctx.onAction(el, blockId, selected);
    switch (el.type) {
      case "button": {
        const b = h("button", {
          class: `bk-button ${el.style || ""}`.trim(),
          type: "button",
          "data-testid": `button-${el.action_id}`,
          "data-value": el.value,
          ...idAttrs(el, blockId),
          onclick: () => {
            if (el.url) window.open(el.url, "_blank", "noopener");
            fire(null);
          },
        }, txt(el.text, ctx));
        return b;
      }
      case "static_select": case "external_select": case "users_select": case "conversations_select":
      case "channels_select": case "multi_static_select": case "multi_users_select": case "multi_external_select": {
        const multi = el.type.startsWith("multi_");
        const sel = h("select", {
          class: "bk-select", multiple: multi, "data-input": inInput ? "1" : null,
          "data-testid": `select-${el.action_id}`, ...idAttrs(el, blockId),
        });
        if (!multi) sel.append(h("option", { value: "" }, plainText(el.placeholder) || "Select…"));
        let opts = options(el);
        if (el.type.includes("users")) opts = (ctx.users || []).map((u) => ({ text: { text: u.name }, value: u.id }));
        if (el.type.includes("conversations") || el.type.includes("channels")) {
          opts = (ctx.channels || []).map((c) => ({ text: { text: `#${c.name}` }, value: c.id }));
        }
        const initial = new Set([
          ...(el.initial_option ? [el.initial_option.value] : []),
          ...((el.initial_options || []).map((o) => o.value)),
          ...(el.initial_user ? [el.initial_user] : []), ...(el.initial_users || []),
          ...(el.initial_conversation ? [el.initial_conversation] : []),
          ...(el.initial_channel ? [el.initial_channel] : []),
        ]);
        for (const o of opts) {
          sel.append(h("option", { value: o.value, selected: initial.has(o.value) }, plainText(o.text)));
        }
        if (!inInput) sel.addEventListener("change", () => fire(multi ? [...sel.selectedOptions].map((o) => o.value) : sel.value));
        return sel;
      }
      case "overflow": {
        const sel = h("select", {
          class: "bk-overflow", "data-testid": `overflow-${el.action_id}`, ...idAttrs(el, blockId), title: "More actions",
        }, h("option", { value: "" }, "⋯"));
        for (const o of el.options || []) sel.append(h("option", { value: o.value }, plainText(o.text)));
        sel.addEventListener("change", () => { if (sel.value) fire(sel.value); sel.value = ""; });
        return sel;
      }
      case "datepicker": case "timepicker": {
        const inp = h("input", {
          type: el.type === "datepicker" ? "date" : "time", class: "bk-input",
          value: el.initial_date || el.initial_time || null, "data-input": inInput ? "1" : null,
          "data-testid": `input-${el.action_id}`, ...idAttrs(el, blockId),
        });
        if (!inInput) inp.addEventListener("change", () => fire(inp.value));
        return inp;
      }
      case "plain_text_input": case "number_input": case "email_text_input": case "url_text_input": {
        const attrs = {
          class: "bk-input", "data-input": "1", placeholder: plainText(el.placeholder) || null,
          "data-testid": `input-${el.action_id}`, maxlength: el.max_length || null, ...idAttrs(el, blockId),
        };
        if (el.multiline) {
          const ta = h("textarea", { ...attrs, rows: 4 });
          ta.value = el.initial_value || "";
          return ta;
        }
        const type = { number_input: "number", email_text_input: "email", url_text_input: "url" }[el.type] || "text";
        const inp = h("input", {
          ...attrs, type, value: el.initial_value || null,
          step: el.type === "number_input" ? (el.is_decimal_allowed ? "any" : "1") : null,
          min: el.min_value || null, max: el.max_value || null,
        });
        return inp;
      }
      case "radio_buttons": case "checkboxes": {
        const box = h("div", { class: "bk-choices", "data-input": "1", ...idAttrs(el, blockId), "data-testid": `choices-${el.action_id}` });
        const initial = new Set([...(el.initial_option ? [el.initial_option.value] : []), ...((el.initial_options || []).map((o) => o.value))]);
        const name = `${blockId}--${el.action_id}`;
        for (const o of el.options || []) {
          const inp = h("input", {
            type: el.type === "radio_buttons" ? "radio" : "checkbox", name, value: o.value, checked: initial.has(o.value),
          });
          if (!inInput) inp.addEventListener("change", () => fire(el.type === "radio_buttons" ? inp.value
            : [...box.querySelectorAll("input:checked")].map((i) => i.value)));
          box.append(h("label", { class: "bk-choice" }, inp, " ", txt(o.text, ctx),
            o.description ? h("div", { class: "bk-hint" }, txt(o.description, ctx)) : null));
        }
        return box;
      }
      case "image":
        return h("img", { class: "bk-accessory-image", src: el.image_url, alt: el.alt_text || "" });
      default:
        return h("span", { class: "bk-unsupported" }, `[${el.type}]`);
    }
  }

  function block(b, ctx) {
    const bid = b.block_id;
    const wrap = (cls, ...kids) => h("div", { class: `bk ${cls}`, "data-block-id": bid, "data-block-type": b.type }, ...kids);
    switch (b.type) {
      case "header":
        return wrap("bk-header", txt(b.text, ctx));
      case "section": {
        const body = h("div", { class: "bk-section-body" });
        if (b.text) body.append(h("div", { class: "bk-text" }, txt(b.text, ctx)));
        if (b.fields && b.fields.length) {
          body.append(h("div", { class: "bk-fields" }, b.fields.map((f) => h("div", { class: "bk-field" }, txt(f, ctx)))));
        }
        const row = wrap("bk-section", body);
        if (b.accessory) row.append(h("div", { class: "bk-accessory" }, element(b.accessory, bid, ctx, "section")));
        return row;
      }
      case "context":
        return wrap("bk-context", (b.elements || []).map((e) => (e.type === "image"
          ? h("img", { class: "bk-context-image", src: e.image_url, alt: e.alt_text || "" })
          : h("span", { class: "bk-context-text" }, txt(e, ctx)))));
      case "divider":
        return wrap("bk-divider", h("hr"));
      case "actions":
        return wrap("bk-actions", (b.elements || []).map((e) => element(e, bid, ctx, "actions")));
      case "image":
        return wrap("bk-image",
          b.title ? h("div", { class: "bk-image-title" }, txt(b.title, ctx)) : null,
          // an uploaded file (slack_file: {id} or {url}) is served by the sandbox under /files/<id>/
          h("img", { src: b.image_url || (b.slack_file && (b.slack_file.url || `/files/${b.slack_file.id}/image`)) || "",
                     alt: b.alt_text || "", loading: "lazy" }));
      case "input": {
        const err = (ctx.errors || {})[bid];
        return wrap(`bk-input-block${err ? " has-error" : ""}`,
          h("label", { class: "bk-label" }, txt(b.label, ctx), b.optional ? h("span", { class: "bk-optional" }, " (optional)") : null),
          b.element ? element(b.element, bid, ctx, "input") : null,
          b.hint ? h("div", { class: "bk-hint" }, txt(b.hint, ctx)) : null,
          err ? h("div", { class: "bk-error", "data-testid": `error-${bid}` }, err) : null);
      }
      case "rich_text":
        return wrap("bk-rich-text", (b.elements || []).map((sec) => h("div", {},
          (sec.elements || []).map((e) => (e.type === "text" ? e.text : e.type === "link" ? (e.text || e.url)
            : e.type === "user" ? `@${ctx.userName ? ctx.userName(e.user_id) : e.user_id}` : "")).join(""))));
      case "markdown":
        return wrap("bk-markdown", h("div", { html: M.render(b.text, ctx) }));
      default:
        return wrap("bk-unknown", h("pre", {}, JSON.stringify(b, null, 2)));
    }
  }

  function render(blocks, ctx) {
    const frag = document.createDocumentFragment();
    for (const b of blocks || []) frag.append(block(b, ctx || {}));
    return frag;
  }

  /* values of every input element under root: {block_id: {action_id: value | [values]}} */
  function collect(root) {
    const out = {};
    for (const el of root.querySelectorAll("[data-input]")) {
      const bid = el.dataset.blockId, aid = el.dataset.actionId;
      if (!bid || !aid) continue;
      let v;
      if (el.classList.contains("bk-choices")) {
        const picked = [...el.querySelectorAll("input:checked")].map((i) => i.value);
        v = el.dataset.kind === "radio_buttons" ? (picked[0] || null) : picked;
      } else if (el.tagName === "SELECT" && el.multiple) {
        v = [...el.selectedOptions].map((o) => o.value);
      } else {
        v = el.value === "" ? null : el.value;
      }
      (out[bid] = out[bid] || {})[aid] = v;
    }
    return out;
  }

  /* put values from collect() back (after a re-render that only added error messages) */
  function restore(root, values) {
    for (const el of root.querySelectorAll("[data-input]")) {
      const v = (values[el.dataset.blockId] || {})[el.dataset.actionId];
      if (v === undefined) continue;
      const want = new Set(v == null ? [] : Array.isArray(v) ? v : [v]);
      if (el.classList.contains("bk-choices")) {
        for (const i of el.querySelectorAll("input")) i.checked = want.has(i.value);
      } else if (el.tagName === "SELECT") {
        for (const o of el.options) o.selected = want.has(o.value);
      } else {
        el.value = v == null ? "" : v;
      }
    }
  }

  return { render, collect, restore, h };
})();
