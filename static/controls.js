/**
 * Controls and layout: the composer, the header's badge and toggle, the
 * buttons inside answers (Retry, Regenerate, Copy), and keeping the newest
 * text in view.
 */
//
// Touch screens (issue 13): a phone's keyboard has no Shift at hand, so there
// Enter is a new line and the Send button sends, as in phones' messaging
// apps; with a mouse or trackpad Enter sends and Shift+Enter is a new line.
// Ctrl/Cmd+Enter sends on both. The keyboard hint shows only where it holds.

import { activeAnswer, state } from "./conversation.js";
import { $, el } from "./dom.js";
import { clearNotice, notice } from "./notices.js";

const TOUCH = matchMedia("(pointer: coarse)");
const PLACEHOLDER = {
  keyboard: "Message relay (Enter sends, Shift+Enter for a new line)",
  touch: "Message relay",
};
const CONNECTION_LABEL = {
  connecting: "connecting…", live: "live", reconnecting: "reconnecting…", polling: "polling", offline: "offline",
};
// Reconnecting this long (the badge pulses) before the page says so in words.
const TROUBLE_NOTICE_MS = 8000;
const COPIED_MS = 2000; // how long a Copy button says it copied

/** Enable, disable, show and hide the controls as the conversation stands. */
export function updateChrome() {
  const active = activeAnswer();
  $("empty").hidden = state.messages.length > 0 || state.gone;
  $("send").disabled = state.sending || Boolean(active) || Date.now() < state.holdUntil;
  $("stop").hidden = !active;
  $("stop").disabled = Boolean(active && state.cancelling === active.id);
  const model = [...state.messages].reverse().find((m) => m.model)?.model;
  $("model").hidden = !model;
  $("model").textContent = model || "";
  placeRegenerate(active);
}

let regenerateButton = null;

/** One Regenerate button, on the last answer once it is final, and only while nothing runs. */
function placeRegenerate(active) {
  const last = state.messages.at(-1);
  const final = last?.role === "assistant" && ["done", "cancelled"].includes(last.status);
  const view = final && !active && !state.gone && !state.sending
    ? document.querySelector(`li.message[data-message-id="${CSS.escape(last.id)}"]`)
    : null;
  if (!view) return void regenerateButton?.remove();
  if (!regenerateButton) {
    regenerateButton = el("button", "Regenerate");
    regenerateButton.type = "button";
    regenerateButton.className = "regenerate";
  }
  if (regenerateButton.parentNode !== view) view.append(regenerateButton);
}

// ---- the connection badge ----

let troubleSince = 0; // when the connection was last seen going from working to not

/** Show the connection's state, the client Session's ("connecting", "live", "polling", "reconnecting", "offline"). */
export function showConnection(now) {
  if (state.gone) return;
  const badge = $("connection");
  if (badge.dataset.state !== now || badge.textContent !== CONNECTION_LABEL[now]) {
    badge.dataset.state = now;
    badge.textContent = CONNECTION_LABEL[now];
  }
  connectionNotice(now);
}

/**
 * Say in words when the connection is down: at once when the device is
 * offline, after TROUBLE_NOTICE_MS of reconnecting (a blip is not worth a
 * sentence). The badge alone is easy to miss, and on a phone it is a dot.
 */
function connectionNotice(now) {
  const working = now === "live" || now === "polling";
  if (working) troubleSince = 0;
  else troubleSince ||= Date.now();
  if (now === "offline") {
    notice("You are offline. Check your connection; the chat catches up when it is back.", {
      kind: "connection", weak: true,
    });
  } else if (!working && Date.now() - troubleSince >= TROUBLE_NOTICE_MS) {
    notice("Lost the connection to the server. Check your connection; we keep trying.", {
      kind: "connection", weak: true,
    });
  } else {
    clearNotice("connection");
  }
}

// ---- layout ----

export function nearBottom() {
  const page = document.scrollingElement;
  return page.scrollHeight - page.scrollTop - page.clientHeight < 80;
}

export function scrollToEnd() {
  document.scrollingElement.scrollTop = document.scrollingElement.scrollHeight;
}

// ---- input ----

/** Enter sends with a mouse or trackpad; on a touch screen it is a new line. */
function enterSends(e) {
  if (e.key !== "Enter" || e.isComposing) return false; // an IME is composing
  return e.ctrlKey || e.metaKey || (!e.shiftKey && !TOUCH.matches);
}

function showInputMode() {
  $("prompt").placeholder = TOUCH.matches ? PLACEHOLDER.touch : PLACEHOLDER.keyboard;
}

/**
 * A code block's Copy button: the code to the clipboard. Where the page
 * may not write it (plain http off localhost), select the code instead, so
 * that Ctrl/Cmd+C copies it.
 */
async function copyCode(button) {
  const code = button.parentElement.querySelector("code");
  try {
    await navigator.clipboard.writeText(code.textContent);
    button.dataset.copied = "copied";
  } catch {
    getSelection().selectAllChildren(code);
    button.dataset.copied = "selected";
  }
  setTimeout(() => delete button.dataset.copied, COPIED_MS);
}

/**
 * Wire the controls to the page's `actions`: send(text), stop(), regenerate(),
 * retry(answerId), newChat(), setWithoutStreaming(on), decide(answerId,
 * callId, approved) (a tool card's Approve or Deny), shown() (the tab is
 * visible again), online(), offline().
 */
export function bindUi(actions) {
  const prompt = $("prompt");
  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    actions.send(prompt.value);
  });
  prompt.addEventListener("keydown", (e) => {
    if (enterSends(e)) {
      e.preventDefault();
      actions.send(prompt.value);
    }
  });
  showInputMode();
  // A tablet that gains or loses a trackpad, a laptop whose screen is touched.
  TOUCH.addEventListener("change", showInputMode);
  $("stop").addEventListener("click", actions.stop);
  const toggle = $("whole-answers");
  toggle.checked = state.withoutStreaming;
  toggle.addEventListener("change", () => actions.setWithoutStreaming(toggle.checked));
  $("new-chat").addEventListener("click", actions.newChat);
  // Buttons inside answers come and go with re-renders: one listener for all.
  $("messages").addEventListener("click", (e) => {
    const button = e.target.closest("button");
    if (button?.classList.contains("copy")) copyCode(button);
    else if (button?.classList.contains("retry")) actions.retry(button.closest("li").dataset.messageId);
    else if (button?.classList.contains("regenerate")) actions.regenerate();
    else if (button?.dataset.decision) {
      const card = button.closest("[data-call-id]");
      actions.decide(button.closest("li").dataset.messageId, card.dataset.callId, button.dataset.decision === "approve");
    }
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) actions.shown();
  });
  addEventListener("online", actions.online);
  addEventListener("offline", actions.offline);
}
