// The playground's web chat: talks to the bot through the stand-in's /_user/ API.
// No framework, no build step, nothing loaded from the internet.
"use strict";

(() => {
  const TEXTS = {
    en: {
      placeholder: "Describe the photo you need…",
      welcomeTitle: "Find reference photos",
      welcomeText: "Describe a picture in your own words, or send a photo to find similar ones.",
      welcomeHint: "Rate each result with 👍 or 👎: it teaches the search.",
      dropHint: "Drop a photo to search for similar ones",
      online: "bot · local playground",
      typing: "typing…",
      connecting: "connecting…",
      offline: "reconnecting…",
      edited: "edited",
      today: "Today",
      voice: "Voice message",
      failed: "Could not send: ",
      noCommands: "The bot has not set any commands yet",
      suggestions: ["sunset over the sea", "a red bicycle by a wall", "mountains in fog", "/help"],
    },
    ru: {
      placeholder: "Опишите нужное фото…",
      welcomeTitle: "Поиск референсов",
      welcomeText: "Опишите снимок своими словами или пришлите фото, чтобы найти похожие.",
      welcomeHint: "Оценивайте результаты 👍 или 👎 — это учит поиск.",
      dropHint: "Отпустите фото, чтобы найти похожие",
      online: "бот · локальная песочница",
      typing: "печатает…",
      connecting: "подключение…",
      offline: "переподключение…",
      edited: "изменено",
      today: "Сегодня",
      voice: "Голосовое сообщение",
      failed: "Не отправлено: ",
      noCommands: "Бот пока не задал команды",
      suggestions: ["закат над морем", "красный велосипед у стены", "горы в тумане", "/help"],
    },
  };

  const $ = (id) => document.getElementById(id);
  const els = {
    messages: $("messages"),
    welcome: $("welcome"),
    chips: $("chips"),
    status: $("status"),
    botName: $("bot-name"),
    composer: $("composer"),
    text: $("text"),
    file: $("file"),
    menu: $("menu"),
    commands: $("commands"),
    lightbox: $("lightbox"),
    toast: $("toast"),
    drop: $("drop"),
  };

  const state = {
    user: null,
    lang: localStorage.getItem("playground.lang") || (navigator.language || "en").slice(0, 2),
    seq: 0,
    typing: false,
    online: null, // null: connecting, then true/false
    rows: new Map(), // entry key -> row element
    lastDay: null,
    stick: true, // keep the newest message in view (until the visitor scrolls up)
  };
  if (!TEXTS[state.lang]) state.lang = "en";
  const t = (key) => TEXTS[state.lang][key];

  // ----- HTTP -----------------------------------------------------------------------------
  async function api(path, options = {}) {
    const response = await fetch(path, options);
    let body = {};
    try {
      body = await response.json();
    } catch (_) {
      /* not JSON */
    }
    if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
    return body;
  }

  const currentUser = () => ({ ...state.user, language_code: state.lang });

  function postJSON(path, payload) {
    return api(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ user: currentUser(), ...payload }),
    });
  }

  // ----- language -------------------------------------------------------------------------
  function applyLanguage() {
    document.documentElement.lang = state.lang;
    els.text.placeholder = t("placeholder");
    document.querySelectorAll("[data-i18n]").forEach((node) => {
      node.textContent = t(node.dataset.i18n);
    });
    document.querySelectorAll(".lang button").forEach((button) => {
      button.classList.toggle("active", button.dataset.lang === state.lang);
    });
    els.chips.replaceChildren(
      ...t("suggestions").map((text) => {
        const chip = document.createElement("button");
        chip.type = "button";
        chip.textContent = text;
        chip.addEventListener("click", () => sendText(text));
        return chip;
      }),
    );
    renderStatus();
    if (!els.commands.hidden) showCommands();
  }

  document.querySelectorAll(".lang button").forEach((button) => {
    button.addEventListener("click", () => {
      state.lang = button.dataset.lang;
      localStorage.setItem("playground.lang", state.lang);
      applyLanguage();
    });
  });

  function renderStatus() {
    const status = els.status;
    status.classList.toggle("typing", state.online === true && state.typing);
    status.classList.toggle("offline", state.online === false);
    if (state.online === null) status.textContent = t("connecting");
    else if (!state.online) status.textContent = t("offline");
    else status.textContent = state.typing ? t("typing") : t("online");
  }

  // ----- formatted text (Telegram entities; offsets are UTF-16 units, like JS strings) ------
  const ENTITY_TAGS = {
    bold: "strong",
    italic: "em",
    underline: "u",
    strikethrough: "s",
    code: "code",
    pre: "pre",
    blockquote: "blockquote",
    expandable_blockquote: "blockquote",
  };

  function entityElement(entity, text) {
    if (entity.type === "text_link" || entity.type === "url") {
      const href = entity.type === "url" ? text : entity.url;
      if (/^(https?|tg):\/\//i.test(href || "")) {
        const link = document.createElement("a");
        link.href = href;
        link.target = "_blank";
        link.rel = "noopener noreferrer";
        return link;
      }
      return document.createElement("span");
    }
    if (entity.type === "spoiler") {
      const span = document.createElement("span");
      span.className = "spoiler";
      span.addEventListener("click", () => span.classList.add("shown"));
      return span;
    }
    return document.createElement(ENTITY_TAGS[entity.type] || "span");
  }

  function renderFormatted(text, entities) {
    const sorted = [...(entities || [])].sort((a, b) => a.offset - b.offset || b.length - a.length);
    const build = (start, end, list) => {
      const fragment = document.createDocumentFragment();
      let position = start;
      let index = 0;
      while (index < list.length) {
        const entity = list[index];
        const from = Math.max(entity.offset, position);
        const to = Math.min(entity.offset + entity.length, end);
        const inside = [];
        index += 1;
        while (index < list.length && list[index].offset < entity.offset + entity.length) {
          inside.push(list[index]);
          index += 1;
        }
        if (to <= from) continue;
        if (from > position) fragment.append(text.slice(position, from));
        const element = entityElement(entity, text.slice(from, to));
        element.append(build(from, to, inside));
        fragment.append(element);
        position = to;
      }
      if (position < end) fragment.append(text.slice(position, end));
      return fragment;
    };
    return build(0, text.length, sorted);
  }

  // ----- rendering entries ----------------------------------------------------------------
  function timeLabel(seconds, edited) {
    const date = new Date(seconds * 1000);
    const hhmm = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    return edited ? `${t("edited")} ${hhmm}` : hhmm;
  }

  function formatSize(bytes) {
    if (!bytes && bytes !== 0) return "";
    if (bytes < 1024) return `${bytes} B`;
    if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
    return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
  }

  function renderAlbum(photos) {
    const album = document.createElement("div");
    album.className = `album n${photos.length}`;
    photos.forEach((photo, index) => {
      const tile = document.createElement("button");
      tile.type = "button";
      tile.className = "tile";
      tile.title = photo.name || "";
      const image = document.createElement("img");
      image.loading = "lazy";
      image.alt = photo.name || `photo ${index + 1}`;
      image.src = photos.length === 1 ? photo.url : photo.thumb_url;
      image.addEventListener("load", () => {
        if (state.stick) scrollToBottom();
      });
      tile.append(image);
      if (photos.length > 1) {
        const badge = document.createElement("span");
        badge.className = "index";
        badge.textContent = String(index + 1);
        tile.append(badge);
      }
      tile.addEventListener("click", () => openLightbox(photos, index));
      album.append(tile);
    });
    return album;
  }

  function renderDocument(documentInfo) {
    const box = document.createElement("div");
    box.className = "doc";
    const icon = document.createElement("div");
    icon.className = "icon-doc";
    icon.textContent = "⬇";
    const info = document.createElement("div");
    const link = document.createElement("a");
    link.href = documentInfo.url;
    link.textContent = documentInfo.file_name;
    link.setAttribute("download", documentInfo.file_name);
    const size = document.createElement("div");
    size.className = "size";
    size.textContent = formatSize(documentInfo.file_size);
    info.append(link, size);
    box.append(icon, info);
    return box;
  }

  function renderKeyboard(entry) {
    const rows = (entry.reply_markup && entry.reply_markup.inline_keyboard) || [];
    if (!rows.length) return null;
    const keyboard = document.createElement("div");
    keyboard.className = "keyboard";
    const messageId = entry.items[entry.items.length - 1].message_id;
    for (const row of rows) {
      const line = document.createElement("div");
      line.className = "kb-row";
      for (const button of row) {
        if (button.url) {
          const link = document.createElement("a");
          link.className = "kb-button";
          link.href = button.url;
          link.target = "_blank";
          link.rel = "noopener noreferrer";
          link.textContent = `${button.text} ↗`;
          line.append(link);
          continue;
        }
        const element = document.createElement("button");
        element.type = "button";
        element.className = "kb-button";
        element.textContent = button.text;
        element.title = button.text;
        if (button.callback_data !== undefined) {
          element.addEventListener("click", () => pressButton(element, messageId, button.callback_data));
        } else {
          element.disabled = true;
        }
        line.append(element);
      }
      keyboard.append(line);
    }
    return keyboard;
  }

  function renderEntry(entry) {
    const items = entry.items.filter((item) => !item.deleted);
    const row = document.createElement("div");
    row.className = `row ${entry.from}`;
    const bubble = document.createElement("div");
    bubble.className = "bubble";
    const photos = items.filter((item) => item.photo).map((item) => item.photo);
    const textItem = items.find((item) => item.text !== undefined);
    const captionItem = items.find((item) => item.caption);

    if (photos.length) {
      bubble.classList.add("media");
      bubble.append(renderAlbum(photos));
    }
    for (const item of items) {
      if (item.document) bubble.append(renderDocument(item.document));
      if (item.sticker) {
        const sticker = document.createElement("img");
        sticker.className = "sticker";
        sticker.alt = item.sticker.emoji || "sticker";
        sticker.src = item.sticker.url;
        bubble.append(sticker);
      }
      if (item.voice) bubble.append(`🎤 ${t("voice")} · ${item.voice.duration || 0}s`);
    }
    const body = document.createElement("div");
    body.className = "text";
    if (textItem) body.append(renderFormatted(textItem.text, textItem.entities));
    else if (captionItem) body.append(renderFormatted(captionItem.caption, captionItem.caption_entities));
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = timeLabel(entry.date, entry.edits > 0);
    body.append(meta);
    bubble.append(body);
    if (photos.length && !textItem && !captionItem) bubble.classList.add("media-only");
    row.append(bubble);
    const keyboard = renderKeyboard(entry);
    if (keyboard) {
      row.classList.add("with-keyboard");
      row.append(keyboard);
    }
    return row;
  }

  function nearBottom() {
    const box = els.messages;
    return box.scrollHeight - box.scrollTop - box.clientHeight < 120;
  }

  function scrollToBottom() {
    els.messages.scrollTop = els.messages.scrollHeight;
  }

  els.messages.addEventListener("scroll", () => {
    state.stick = nearBottom();
  });

  function upsert(entry) {
    const existing = state.rows.get(entry.key + entry.from);
    if (entry.deleted) {
      if (existing) existing.remove();
      state.rows.delete(entry.key + entry.from);
      return;
    }
    const row = renderEntry(entry);
    if (existing) {
      existing.replaceWith(row);
    } else {
      const day = new Date(entry.date * 1000).toDateString();
      if (day !== state.lastDay) {
        state.lastDay = day;
        const label = document.createElement("div");
        label.className = "day";
        if (day === new Date().toDateString()) label.dataset.i18n = "today";
        label.textContent = label.dataset.i18n ? t("today") : new Date(entry.date * 1000).toLocaleDateString();
        els.messages.insertBefore(label, typingRow);
      }
      row.classList.add("new");
      els.messages.insertBefore(row, typingRow);
    }
    state.rows.set(entry.key + entry.from, row);
  }

  // The "typing" bubble lives at the end of the list and is shown while the bot says so.
  const typingRow = document.createElement("div");
  typingRow.className = "row typing-row";
  typingRow.hidden = true;
  typingRow.innerHTML = '<div class="bubble"><span class="dot"></span><span class="dot"></span><span class="dot"></span></div>';
  els.messages.append(typingRow);

  function updateWelcome() {
    els.welcome.hidden = state.rows.size > 0;
  }

  // ----- long polling ---------------------------------------------------------------------
  async function poll() {
    for (;;) {
      try {
        const query = new URLSearchParams({
          chat_id: state.user.id,
          after: state.seq,
          timeout: 25,
          typing: state.typing ? 1 : 0,
        });
        const body = await api(`/_user/updates?${query}`);
        const stick = state.stick;
        body.entries.forEach(upsert);
        state.seq = Math.max(state.seq, body.seq);
        state.typing = body.typing;
        state.online = true;
        typingRow.hidden = !state.typing;
        updateWelcome();
        renderStatus();
        if (stick || body.entries.some((entry) => entry.from === "user")) {
          state.stick = true;
          scrollToBottom();
        }
      } catch (error) {
        state.online = false;
        renderStatus();
        await new Promise((resolve) => setTimeout(resolve, 1500));
      }
    }
  }

  // ----- acting as the user ---------------------------------------------------------------
  async function sendText(text) {
    const value = text.trim();
    if (!value) return;
    hideCommands();
    try {
      await postJSON("/_user/send_text", { text: value });
    } catch (error) {
      toast(t("failed") + error.message);
    }
  }

  async function sendPhoto(file) {
    if (!file || !file.type.startsWith("image/")) return;
    const form = new FormData();
    form.append("user", JSON.stringify(currentUser()));
    const caption = els.text.value.trim();
    if (caption) form.append("caption", caption);
    form.append("photo", file, file.name);
    els.text.value = "";
    autosize();
    try {
      await api("/_user/send_photo", { method: "POST", body: form });
    } catch (error) {
      toast(t("failed") + error.message);
    }
  }

  async function pressButton(element, messageId, data) {
    element.disabled = true;
    try {
      const { callback_id: callbackId } = await postJSON("/_user/press_button", {
        message_id: messageId,
        callback_data: data,
      });
      const query = new URLSearchParams({ id: callbackId, timeout: 10 });
      const { answer } = await api(`/_user/callback_answer?${query}`);
      if (answer && answer.text) toast(answer.text, answer.show_alert);
      if (answer && answer.url) window.open(answer.url, "_blank", "noopener");
    } catch (error) {
      toast(error.message);
    } finally {
      element.disabled = false;
    }
  }

  // ----- composer -------------------------------------------------------------------------
  function autosize() {
    els.text.style.height = "auto";
    els.text.style.height = `${Math.min(els.text.scrollHeight, 160)}px`;
  }

  els.text.addEventListener("input", autosize);
  els.text.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      els.composer.requestSubmit();
    }
  });
  els.composer.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = els.text.value;
    els.text.value = "";
    autosize();
    sendText(value);
    els.text.focus();
  });
  els.file.addEventListener("change", () => {
    sendPhoto(els.file.files[0]);
    els.file.value = "";
  });

  // Drag and drop, and pasting an image, send it as a photo.
  let dragDepth = 0;
  document.addEventListener("dragenter", (event) => {
    if (![...event.dataTransfer.types].includes("Files")) return;
    dragDepth += 1;
    els.drop.hidden = false;
  });
  document.addEventListener("dragleave", () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) els.drop.hidden = true;
  });
  document.addEventListener("dragover", (event) => event.preventDefault());
  document.addEventListener("drop", (event) => {
    event.preventDefault();
    dragDepth = 0;
    els.drop.hidden = true;
    sendPhoto(event.dataTransfer.files[0]);
  });
  els.text.addEventListener("paste", (event) => {
    const file = [...(event.clipboardData.files || [])].find((item) => item.type.startsWith("image/"));
    if (file) {
      event.preventDefault();
      sendPhoto(file);
    }
  });

  // Command menu: what the bot registered with setMyCommands for this language.
  async function showCommands() {
    let commands = [];
    try {
      const query = new URLSearchParams({ language_code: state.lang, chat_id: state.user.id });
      commands = await api(`/_user/commands?${query}`);
    } catch (_) {
      /* shown as empty */
    }
    if (!commands.length) {
      const empty = document.createElement("button");
      empty.type = "button";
      empty.disabled = true;
      empty.textContent = t("noCommands");
      els.commands.replaceChildren(empty);
    } else {
      els.commands.replaceChildren(
        ...commands.map((command) => {
          const item = document.createElement("button");
          item.type = "button";
          const name = document.createElement("span");
          name.className = "cmd";
          name.textContent = `/${command.command}`;
          const description = document.createElement("span");
          description.className = "desc";
          description.textContent = command.description;
          item.append(name, description);
          item.addEventListener("click", () => sendText(`/${command.command}`));
          return item;
        }),
      );
    }
    els.commands.hidden = false;
  }

  function hideCommands() {
    els.commands.hidden = true;
  }

  els.menu.addEventListener("click", () => (els.commands.hidden ? showCommands() : hideCommands()));

  // ----- overlays -------------------------------------------------------------------------
  let lightboxPhotos = [];
  let lightboxIndex = 0;

  function openLightbox(photos, index) {
    lightboxPhotos = photos;
    lightboxIndex = index;
    showLightboxPhoto();
    els.lightbox.hidden = false;
  }

  function showLightboxPhoto() {
    const photo = lightboxPhotos[lightboxIndex];
    els.lightbox.querySelector("img").src = photo.url;
    const parts = [];
    if (lightboxPhotos.length > 1) parts.push(`${lightboxIndex + 1}/${lightboxPhotos.length}`);
    if (photo.name) parts.push(photo.name);
    parts.push(`${photo.width}×${photo.height}`);
    els.lightbox.querySelector("figcaption").textContent = parts.join(" · ");
  }

  els.lightbox.addEventListener("click", () => {
    els.lightbox.hidden = true;
  });
  document.addEventListener("keydown", (event) => {
    if (els.lightbox.hidden) {
      if (event.key === "Escape") hideCommands();
      return;
    }
    if (event.key === "Escape") els.lightbox.hidden = true;
    const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
    if (step) {
      lightboxIndex = (lightboxIndex + step + lightboxPhotos.length) % lightboxPhotos.length;
      showLightboxPhoto();
    }
  });

  let toastTimer = null;
  function toast(text, alert = false) {
    clearTimeout(toastTimer);
    els.toast.textContent = text;
    els.toast.classList.toggle("alert", alert);
    els.toast.hidden = false;
    if (!alert) toastTimer = setTimeout(() => (els.toast.hidden = true), 2600);
  }
  els.toast.addEventListener("click", () => (els.toast.hidden = true));

  // ----- start ----------------------------------------------------------------------------
  async function start() {
    applyLanguage();
    for (;;) {
      try {
        const info = await api("/_user/info");
        state.user = info.user;
        state.online = true;
        renderStatus();
        els.botName.textContent = info.bot.first_name;
        document.title = `${info.bot.first_name} · local playground`;
        break;
      } catch (_) {
        await new Promise((resolve) => setTimeout(resolve, 1500));
      }
    }
    updateWelcome();
    els.text.focus();
    poll();
  }

  start();
})();
