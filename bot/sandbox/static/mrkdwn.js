/* Slack mrkdwn → HTML: *bold*, _italic_, ~strike~, `code`, ```pre```, > quotes, <links|text>, <@U…>,
 * <#C…|name>, <!here>, <!date^ts^format|fallback>, :emoji: shortcodes. Escapes everything else. */
"use strict";

window.Mrkdwn = (function () {
  const EMOJI = {
    white_check_mark: "✅", heavy_check_mark: "✔️", x: "❌", warning: "⚠️", no_entry: "⛔", no_entry_sign: "🚫",
    hourglass: "⌛", hourglass_flowing_sand: "⏳", moneybag: "💰", money_with_wings: "💸", euro: "💶",
    dollar: "💵", receipt: "🧾", page_facing_up: "📄", memo: "📝", information_source: "ℹ️", clock3: "🕒",
    alarm_clock: "⏰", arrows_counterclockwise: "🔄", inbox_tray: "📥", outbox_tray: "📤", bar_chart: "📊",
    chart_with_upwards_trend: "📈", chart_with_downwards_trend: "📉", calendar: "📅", date: "📅",
    bust_in_silhouette: "👤", busts_in_silhouette: "👥", eyes: "👀", tada: "🎉", red_circle: "🔴",
    large_green_circle: "🟢", large_yellow_circle: "🟡", large_orange_circle: "🟠", white_circle: "⚪",
    large_blue_circle: "🔵", heavy_minus_sign: "➖", scales: "⚖️", mag: "🔍", zap: "⚡", gear: "⚙️",
    pushpin: "📌", link: "🔗", sparkles: "✨", thumbsup: "👍", "+1": "👍", hand: "✋", stop_sign: "🛑",
    lock: "🔒", key: "🔑", rotating_light: "🚨", bell: "🔔", hammer_and_wrench: "🛠️", construction: "🚧",
    arrow_right: "➡️", arrow_forward: "▶️", leftwards_arrow_with_hook: "↩️", repeat: "🔁", fast_forward: "⏩",
    question: "❓", exclamation: "❗", heavy_plus_sign: "➕", robot_face: "🤖", card_index_dividers: "🗂️",
    clipboard: "📋", file_folder: "📁", spiral_calendar_pad: "🗓️", stopwatch: "⏱️", hourglass_done: "⌛",
    ballot_box_with_check: "☑️", heavy_multiplication_x: "✖️", small_orange_diamond: "🔸",
    small_blue_diamond: "🔹", black_small_square: "▪️", sunrise: "🌅", wave: "👋", muscle: "💪",
    envelope: "✉️", email: "📧", bank: "🏦", office: "🏢", money_mouth_face: "🤑", pencil2: "✏️",
    pencil: "📝", wastebasket: "🗑️", lower_left_ballpoint_pen: "🖊️", signature: "✍️", writing_hand: "✍️",
    raised_hand: "✋", ledger: "📒", grey_question: "❔", grey_exclamation: "❕", boom: "💥", heavy_dollar_sign: "💲",
    credit_card: "💳", chart: "💹", coin: "🪙", pound: "💷", yen: "💴", arrow_up: "⬆️", arrow_down: "⬇️",
    arrow_left: "⬅️", arrow_upper_right: "↗️", arrow_lower_right: "↘️", small_red_triangle: "🔺",
    small_red_triangle_down: "🔻", point_right: "👉", point_left: "👈", point_up: "☝️", point_down: "👇",
    ok_hand: "👌", thumbsdown: "👎", "-1": "👎", clap: "👏", pray: "🙏", raised_hands: "🙌", handshake: "🤝",
    thinking_face: "🤔", slightly_smiling_face: "🙂", smile: "😄", sweat_smile: "😅", confused: "😕",
    mailbox: "📫", mailbox_with_mail: "📬", incoming_envelope: "📨", envelope_with_arrow: "📩", package: "📦",
    books: "📚", bookmark_tabs: "📑", spiral_note_pad: "🗒️", page_with_curl: "📃", scroll: "📜", bookmark: "🔖",
    label: "🏷️", paperclip: "📎", pen: "🖊️", fountain_pen: "🖋️", card_file_box: "🗃️", file_cabinet: "🗄️",
    timer_clock: "⏲️", clock: "🕒", clock1: "🕐", clock9: "🕘", clock12: "🕛", watch: "⌚", new: "🆕", ok: "🆗",
    sos: "🆘", free: "🆓", cool: "🆒", up: "🆙", large_red_square: "🟥", large_green_square: "🟩",
    large_yellow_square: "🟨", large_orange_square: "🟧", large_blue_square: "🟦", white_large_square: "⬜",
    black_large_square: "⬛", green_heart: "💚", heart: "❤️", broken_heart: "💔",
    fire: "🔥", star: "⭐", star2: "🌟", trophy: "🏆", medal: "🏅", checkered_flag: "🏁", triangular_flag_on_post: "🚩",
    crossed_flags: "🎌", speech_balloon: "💬", thought_balloon: "💭", loudspeaker: "📢", mega: "📣",
    no_bell: "🔕", unlock: "🔓", closed_lock_with_key: "🔐", shield: "🛡️", hammer: "🔨", wrench: "🔧",
    nut_and_bolt: "🔩", globe_with_meridians: "🌐", earth_africa: "🌍", house: "🏠",
    factory: "🏭", truck: "🚚", rocket: "🚀", hourglass_not_done: "⏳", recycle: "♻️", infinity: "♾️",
    negative_squared_cross_mark: "❎", o: "⭕", interrobang: "⁉️", bangbang: "‼️",
    one: "1️⃣", two: "2️⃣", three: "3️⃣", four: "4️⃣", five: "5️⃣", keycap_ten: "🔟", hash: "#️⃣",
    abacus: "🧮", chart_increasing: "📈", chart_decreasing: "📉", magnifying_glass_tilted_left: "🔍",
    mag_right: "🔎", bulb: "💡", battery: "🔋", electric_plug: "🔌", satellite: "📡", computer: "💻",
    desktop_computer: "🖥️", printer: "🖨️", keyboard: "⌨️", floppy_disk: "💾", cd: "💿", inbox: "📥",
    outbox: "📤", dart: "🎯", jigsaw: "🧩", test_tube: "🧪", broom: "🧹", bricks: "🧱", seedling: "🌱",
    sunny: "☀️", cloud: "☁️", umbrella: "☂️", snowflake: "❄️", zzz: "💤",
  };

  function esc(s) {
    return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
  }

  // Slack escapes &, <, > in text it sends; undo that before escaping for HTML.
  function unslack(s) {
    return String(s).replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
  }

  /* :shortcode: → the emoji (Slack's names; unknown ones stay as typed). Safe on escaped and plain text. */
  function emoji(s) {
    return String(s).replace(/:([a-z0-9_+\-]+):/g, (m, name) => EMOJI[name] || m);
  }

  const MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December"];
  const DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

  function ordinal(n) {
    const s = ["th", "st", "nd", "rd"], v = n % 100;
    return n + (s[(v - 20) % 10] || s[v] || s[0]);
  }

  function sameDay(a, b) {
    return a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();
  }

  function pretty(d, fallback) {
    const now = new Date();
    const y = new Date(now); y.setDate(now.getDate() - 1);
    const t = new Date(now); t.setDate(now.getDate() + 1);
    if (sameDay(d, now)) return "today";
    if (sameDay(d, y)) return "yesterday";
    if (sameDay(d, t)) return "tomorrow";
    return fallback;
  }

  function time(d, secs) {
    const opts = { hour: "numeric", minute: "2-digit" };
    if (secs) opts.second = "2-digit";
    return d.toLocaleTimeString("en-US", opts);
  }

  function ago(d) {
    const s = Math.round((Date.now() - d.getTime()) / 1000);
    const future = s < 0, a = Math.abs(s);
    const [n, unit] = a < 60 ? [a, "second"] : a < 3600 ? [Math.round(a / 60), "minute"]
      : a < 86400 ? [Math.round(a / 3600), "hour"] : [Math.round(a / 86400), "day"];
    const txt = `${n} ${unit}${n === 1 ? "" : "s"}`;
    return future ? `in ${txt}` : `${txt} ago`;
  }

  /* <!date^1767225600^{date_short_pretty} at {time}|fallback> in the reader's local time */
  function formatDate(ts, fmt) {
    const d = new Date(Number(ts) * 1000);
    if (isNaN(d.getTime())) return null;
    const dateNum = `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
    const date = `${MONTHS[d.getMonth()]} ${ordinal(d.getDate())}, ${d.getFullYear()}`;
    const dateShort = `${MONTHS[d.getMonth()].slice(0, 3)} ${d.getDate()}, ${d.getFullYear()}`;
    const dateLong = `${DAYS[d.getDay()]}, ${date}`;
    const map = {
      date_num: dateNum, date, date_short: dateShort, date_long: dateLong,
      date_pretty: pretty(d, date), date_short_pretty: pretty(d, dateShort), date_long_pretty: pretty(d, dateLong),
      time: time(d, false), time_secs: time(d, true), ago: ago(d),
    };
    return fmt.replace(/\{([a-z_]+)\}/g, (m, k) => (k in map ? map[k] : m));
  }

  function angle(inner, ctx) {
    const [target, label] = splitOnce(inner, "|");
    if (target.startsWith("@")) {
      const id = target.slice(1);
      const name = label || (ctx.userName ? ctx.userName(id) : id);
      return `<span class="mention" data-user="${esc(id)}">@${esc(unslack(name))}</span>`;
    }
    if (target.startsWith("#")) {
      const id = target.slice(1);
      const name = label || (ctx.channelName ? ctx.channelName(id) : id);
      return `<span class="mention channel">#${esc(unslack(name))}</span>`;
    }
    if (target.startsWith("!date^")) {
      const parts = target.split("^");
      const txt = formatDate(parts[1], parts[2] || "{date}");
      return `<time class="slack-date" data-ts="${esc(parts[1])}">${esc(txt == null ? unslack(label || "") : txt)}</time>`;
    }
    if (target.startsWith("!subteam^")) return `<span class="mention">@${esc(unslack(label || "group"))}</span>`;
    if (target.startsWith("!")) return `<span class="mention">@${esc(target.slice(1))}</span>`;
    const href = unslack(target);
    const safe = /^(https?:|mailto:|\/)/i.test(href) ? href : "#";
    return `<a href="${esc(safe)}" target="_blank" rel="noopener">${esc(unslack(label || target))}</a>`;
  }

  function splitOnce(s, sep) {
    const i = s.indexOf(sep);
    return i < 0 ? [s, ""] : [s.slice(0, i), s.slice(i + 1)];
  }

  function inline(s) {
    // s is already HTML-escaped and free of placeholders' markup
    return s
      .replace(/(^|[\s(\u0001>~_])\*(?!\s)([^*\n]+?)\*(?=$|[\s.,;:!?)\u0001<~_])/g, "$1<b>$2</b>")
      .replace(/(^|[\s(\u0001>~*])_(?!\s)([^_\n]+?)_(?=$|[\s.,;:!?)\u0001<~*])/g, "$1<i>$2</i>")
      .replace(/(^|[\s(\u0001>_*])~(?!\s)([^~\n]+?)~(?=$|[\s.,;:!?)\u0001<_*])/g, "$1<s>$2</s>");
  }

  /* mrkdwn text → HTML */
  function render(text, ctx) {
    ctx = ctx || {};
    const slots = [];
    const hold = (html) => { slots.push(html); return `\u0001${slots.length - 1}\u0002`; };
    let s = String(text == null ? "" : text);
    s = s.replace(/```([\s\S]*?)```/g, (m, code) => hold(`<pre class="code-block">${esc(unslack(code.replace(/^\n/, "")))}</pre>`));
    s = s.replace(/`([^`\n]+)`/g, (m, code) => hold(`<code>${esc(unslack(code))}</code>`));
    s = s.replace(/<([^<>\n]+)>/g, (m, inner) => hold(angle(inner, ctx)));
    s = emoji(esc(unslack(s)));
    s = s.split("\n").map((line) => {
      const q = line.match(/^&gt;\s?(.*)$/);
      return q ? `<blockquote>${inline(q[1])}</blockquote>` : inline(line);
    }).join("<br>").replace(/<\/blockquote><br><blockquote>/g, "<br>");
    return s.replace(/\u0001(\d+)\u0002/g, (m, i) => slots[Number(i)]);
  }

  /* a plain_text object's text (emoji shortcodes only) */
  function plain(text) {
    return emoji(esc(unslack(text == null ? "" : text)));
  }

  /* a text object ({type, text}) → HTML */
  function textObj(obj, ctx) {
    if (!obj) return "";
    if (typeof obj === "string") return plain(obj);
    return obj.type === "mrkdwn" ? render(obj.text, ctx) : plain(obj.text);
  }

  return { render, plain, textObj, esc, formatDate, emojize: emoji, EMOJI };
})();
