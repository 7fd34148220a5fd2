// Browser sign-in through the province's identity platform (统一身份认证), shared by the
// console and the workbench (served once, at /auth/signin.js).
//
// OAuth 2.0 authorization code with PKCE (RFC 7636, S256) for a public client: the page holds
// no secret. GET /auth/config says whether an issuer is configured; if so, the button sends
// the browser to the issuer's authorization endpoint with a random state and the SHA-256 of a
// random verifier (both kept in this tab's sessionStorage only), and on the way back the
// state is checked, the code exchanged for tokens at the issuer's token endpoint (with the
// verifier, no secret), the URL cleaned, and the access token handed to the page as the same
// bearer token a pasted one would be. The gateway verifies it like any other (issuer, key,
// audience, expiry): nothing here is trusted by the server.
//
// Threats this blocks: a code injected into the page's URL by another site (login CSRF: the
// state is not this tab's), a code stolen on the way (useless without the verifier), a
// response from another issuer (RFC 9207 `iss` checked when present), a code replayed by a
// reload (the URL is cleaned first and the pending request used once).

const CONFIG_PATH = "/auth/config";
const PENDING_KEY = "relief-signin-pending";
const EXPIRES_KEY = "relief-signin-expires";
// A sign-in not finished within this time is refused on return (a stale or planted response).
const PENDING_TTL_MS = 10 * 60 * 1000;
const NOT_SECURE =
  "无法使用统一身份认证登录: 请通过 https 地址打开本页 (浏览器只在安全连接中提供所需的加密功能)";
// A timer cannot wait longer than this (2^31 - 1 ms); expiries further out are rechecked.
const LONGEST_TIMER_MS = 2_147_483_647;

// Errors the issuer may send back (RFC 6749 §4.1.2.1, OIDC Core §3.1.2.6), as a user reads them.
const ISSUER_ERRORS = {
  access_denied: "您在统一身份认证平台取消了登录或未授权本系统",
  login_required: "统一身份认证平台要求重新登录",
  consent_required: "统一身份认证平台要求确认授权",
  interaction_required: "统一身份认证平台要求进一步操作",
  invalid_request: "登录请求无效 (统一身份认证平台拒绝了请求参数)",
  invalid_scope: "登录请求的权限范围不被统一身份认证平台接受",
  unauthorized_client: "本系统未在统一身份认证平台登记为可登录的应用",
  unsupported_response_type: "统一身份认证平台不支持授权码登录",
  server_error: "统一身份认证平台内部错误",
  temporarily_unavailable: "统一身份认证平台暂时不可用",
};

/** An error shown to the user as is (Chinese, no detail from the page's internals). */
export class SignInError extends Error {
  constructor(text) {
    super(text);
    this.messages = [text];
    this.userMessage = text;
  }
}

// ------------------------------------------------------------------ PKCE and random values

function base64url(bytes) {
  let text = "";
  for (const byte of bytes) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** A random, URL-safe value of `size` bytes (32 bytes → a 43-character PKCE verifier). */
export function randomValue(size = 32) {
  return base64url(crypto.getRandomValues(new Uint8Array(size)));
}

/** The S256 code challenge of a verifier: BASE64URL(SHA-256(ASCII(verifier))). */
export async function codeChallenge(verifier) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return base64url(new Uint8Array(digest));
}

// ------------------------------------------------------------------ the server's configuration

/** GET /auth/config: {enabled, ready, issuer, authorizationEndpoint, tokenEndpoint, clientId,
 * scopes, tokenForm, message}. A page that cannot read it keeps its token form. */
export async function loadConfig() {
  let response;
  try {
    response = await fetch(CONFIG_PATH, { credentials: "omit", cache: "no-store" });
  } catch {
    return { enabled: false, tokenForm: true, message: "无法连接网关, 请检查网络后重试" };
  }
  try {
    const body = await response.json();
    if (response.ok && body && typeof body.enabled === "boolean") return body;
  } catch {
    // fall through: an answer this page cannot read
  }
  return { enabled: false, tokenForm: true, message: "无法读取登录方式, 请刷新页面后重试" };
}

/** The page's own address without query, fragment or trailing slash ("/workbench/" and
 * "/workbench" are one page): where the issuer sends the user back, registered exactly. */
function ownAddress() {
  const path = window.location.pathname.replace(/\/+$/, "") || "/";
  return `${window.location.origin}${path}`;
}

// ------------------------------------------------------------------ going to the issuer

/** Send the browser to the issuer's authorization endpoint (does not return). */
export async function redirectToIssuer(config) {
  const verifier = randomValue(32);
  const state = randomValue(16);
  const redirectUri = ownAddress();
  const target = new URL(config.authorizationEndpoint);
  const query = {
    response_type: "code",
    client_id: config.clientId,
    redirect_uri: redirectUri,
    scope: config.scopes,
    state,
    code_challenge: await codeChallenge(verifier),
    code_challenge_method: "S256",
  };
  for (const [name, value] of Object.entries(query)) target.searchParams.set(name, value);
  sessionStorage.setItem(
    PENDING_KEY,
    JSON.stringify({ state, verifier, redirectUri, issuer: config.issuer, at: Date.now() }),
  );
  window.location.assign(target.toString());
}

// ------------------------------------------------------------------ coming back

/** The issuer's answer in this page's URL, if any: {code, state, error, iss} or null. */
function callbackParameters() {
  const query = new URLSearchParams(window.location.search);
  if (!query.has("code") && !query.has("error")) return null;
  return {
    code: query.get("code") || "",
    state: query.get("state") || "",
    error: query.get("error") || "",
    iss: query.get("iss"),
  };
}

/** Remove the answer from the address bar and history: a reload never replays the code. */
function cleanAddress() {
  window.history.replaceState(window.history.state, "", window.location.pathname);
}

function takePending() {
  const raw = sessionStorage.getItem(PENDING_KEY);
  sessionStorage.removeItem(PENDING_KEY); // used once, whatever happens next
  if (!raw) return null;
  try {
    const pending = JSON.parse(raw);
    return pending && typeof pending.state === "string" ? pending : null;
  } catch {
    return null;
  }
}

/** Compare two strings in time independent of where they differ. */
function sameText(a, b) {
  if (typeof a !== "string" || typeof b !== "string" || a.length !== b.length) return false;
  let difference = 0;
  for (let i = 0; i < a.length; i += 1) difference |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return difference === 0;
}

function issuerError(code) {
  const known = ISSUER_ERRORS[code];
  // An unknown code is shown as its code only: it is a short ASCII token, never free text.
  const text = known || `统一身份认证平台拒绝了登录 (${/^[\w.-]{1,64}$/.test(code) ? code : "未知错误"})`;
  return new SignInError(`${text}, 未登录`);
}

/** Exchange the code for tokens at the issuer's token endpoint (public client, PKCE). */
async function exchange(config, pending, code) {
  const body = new URLSearchParams({
    grant_type: "authorization_code",
    code,
    redirect_uri: pending.redirectUri,
    client_id: config.clientId,
    code_verifier: pending.verifier,
  });
  let response;
  try {
    response = await fetch(config.tokenEndpoint, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded", Accept: "application/json" },
      body,
      credentials: "omit",
      cache: "no-store",
      referrerPolicy: "no-referrer",
    });
  } catch {
    throw new SignInError("无法连接统一身份认证平台换取令牌, 请检查网络后重新登录");
  }
  let answer = null;
  try {
    answer = await response.json();
  } catch {
    answer = null;
  }
  if (!response.ok || !answer || typeof answer.access_token !== "string" || !answer.access_token) {
    const code = typeof answer?.error === "string" ? answer.error : "";
    const reason = code === "invalid_grant" ? "授权码无效、已使用或已过期" : `HTTP ${response.status}`;
    throw new SignInError(`统一身份认证平台未能签发令牌 (${reason}), 请重新登录`);
  }
  if (answer.token_type && String(answer.token_type).toLowerCase() !== "bearer") {
    throw new SignInError("统一身份认证平台签发的令牌类型不受支持, 请联系系统管理员");
  }
  const seconds = Number(answer.expires_in);
  if (Number.isFinite(seconds) && seconds > 0) {
    // Which token runs out when: its last characters, so a token pasted later (development)
    // is never signed out by this one's clock.
    const record = { at: Date.now() + seconds * 1000, tail: answer.access_token.slice(-16) };
    sessionStorage.setItem(EXPIRES_KEY, JSON.stringify(record));
  } else {
    sessionStorage.removeItem(EXPIRES_KEY);
  }
  return answer.access_token;
}

/**
 * Finish a sign-in if this page is the issuer's redirect: resolves to the access token, to
 * null when the page was opened normally; throws SignInError (Chinese) when the answer is an
 * error, not this tab's (state), too old, from another issuer, or the exchange fails.
 */
export async function completeSignIn(config) {
  const answer = callbackParameters();
  if (answer === null) return null;
  cleanAddress();
  const pending = takePending();
  if (answer.error) throw issuerError(answer.error);
  if (pending === null || !sameText(answer.state, pending.state)) {
    throw new SignInError("登录响应不是本页发起的 (state 不符), 已拒绝; 请重新登录");
  }
  if (!(Date.now() - Number(pending.at) < PENDING_TTL_MS)) {
    throw new SignInError("登录耗时过长, 请求已失效, 请重新登录");
  }
  if (config.enabled && !config.ready) {
    throw new SignInError(config.message || "统一身份认证平台暂时不可用, 请稍后重新登录");
  }
  if (!config.enabled || pending.issuer !== config.issuer) {
    throw new SignInError("网关的统一身份认证配置已变更, 请重新登录");
  }
  if (answer.iss !== null && answer.iss !== config.issuer) {
    throw new SignInError("登录响应来自另一个身份认证平台, 已拒绝; 请重新登录");
  }
  if (!answer.code) throw new SignInError("统一身份认证平台没有返回授权码, 请重新登录");
  return exchange(config, pending, answer.code);
}

// ------------------------------------------------------------------ expiry

let expiryTimer = null;

function expiry(token) {
  try {
    const record = JSON.parse(sessionStorage.getItem(EXPIRES_KEY) || "null");
    const current = token.get();
    if (record && current && typeof record.tail === "string" && current.endsWith(record.tail)) {
      return Number(record.at);
    }
  } catch {
    // an unreadable record is no record
  }
  return null;
}

/** Call `expired(messages)` when the platform's token in `token` runs out (its
 * `expires_in`); nothing for a token that did not come from the platform. */
export function watchExpiry(token, expired) {
  if (expiryTimer !== null) clearTimeout(expiryTimer);
  expiryTimer = null;
  const at = expiry(token);
  if (at === null || !Number.isFinite(at)) return;
  expiryTimer = setTimeout(
    () => {
      expiryTimer = null;
      if (expiry(token) !== at) return; // signed out, or another token since
      if (Date.now() < at) {
        watchExpiry(token, expired);
        return;
      }
      sessionStorage.removeItem(EXPIRES_KEY);
      expired(["统一身份认证登录已过期"]);
    },
    Math.min(Math.max(at - Date.now(), 0), LONGEST_TIMER_MS),
  );
}

// ------------------------------------------------------------------ the page's sign-in box

function element(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

function issuerHost(config) {
  try {
    return new URL(config.authorizationEndpoint).host;
  } catch {
    return "";
  }
}

/**
 * Set up sign-in for a page. Options:
 * - `box`: an empty element in the sign-in section, where the button and its notes go;
 * - `tokenForm`: the page's token form, shown only when the server allows it;
 * - `show(kind, text)`: the page's status line ("error" | "info" | "ok");
 * - `signIn(token)`: the page's own sign-in with a bearer token (a promise);
 * - `token`: the page's token store ({get}), holding the token of a reload, or "";
 * - `expired(messages)`: the page's "signed out, say why" (as for UNAUTHENTICATED).
 * Resolves to the configuration. Sign-out stays the page's: it clears sessionStorage, which
 * holds everything this module keeps.
 */
export async function setUpSignIn({ box, tokenForm, show, signIn, token, expired }) {
  const config = await loadConfig();
  tokenForm.hidden = config.tokenForm === false;
  if (config.message && !config.enabled) show("error", config.message);
  if (config.enabled) renderBox(box, config, show);

  const saved = token.get();
  let fresh = null;
  try {
    fresh = await completeSignIn(config);
  } catch (error) {
    show("error", error.userMessage || "登录失败, 请重新登录");
    // Signed in already (a planted answer opened in this tab): the person stays who they were.
    if (!saved) return config;
  }
  if (fresh) {
    show("info", "");
    await signIn(fresh);
  } else if (saved) {
    await signIn(saved);
  }
  watchExpiry(token, expired);
  return config;
}

function renderBox(box, config, show) {
  box.replaceChildren();
  box.hidden = false;
  box.classList.add("signin");
  const host = issuerHost(config);
  const button = element("button", { type: "button", class: "primary", id: "signin-issuer" });
  button.textContent = "统一身份认证登录";
  const note = element("p", { class: "hint" });
  // crypto.subtle (the SHA-256 of PKCE) exists only in a secure context: https, or loopback.
  const secure = window.isSecureContext && Boolean(window.crypto?.subtle);
  if (!config.ready) {
    note.textContent = config.message || "统一身份认证平台暂时不可用, 请稍后刷新页面重试";
  } else if (!secure) {
    note.className = "message message-error";
    note.textContent = NOT_SECURE;
  } else {
    note.textContent = `将跳转到统一身份认证平台${host ? ` (${host})` : ""} 登录, 完成后返回本页。`;
  }
  button.disabled = !config.ready || !secure;
  button.addEventListener("click", async () => {
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    show("info", "正在跳转到统一身份认证平台…");
    try {
      await redirectToIssuer(config);
    } catch {
      button.disabled = false;
      button.removeAttribute("aria-busy");
      show("error", "无法发起统一身份认证登录 (浏览器不支持所需的加密功能), 请更换浏览器后重试");
    }
  });
  box.append(button, note);
  if (config.tokenForm) {
    const divider = element("p", { class: "hint signin-divider" });
    divider.textContent = "开发与演示环境: 也可在下方粘贴网关签发的访问令牌";
    box.append(divider);
  }
}
