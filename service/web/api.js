// The page's side of the REST API: the bearer token, requests, and RFC 9457 problems as errors.
//
// The token comes from the URL fragment (#token=...), which browsers never send to a server, or from
// the paste box. It is kept in sessionStorage (this tab only, gone when the tab closes), stripped from
// the address bar at once, and only ever sent in the Authorization header. It is never logged.

const TOKEN_KEY = "face3d.token";

/** An API failure with the problem+json members the page shows (title, detail, status). */
export class ApiError extends Error {
  constructor(status, title, detail, retryAfter = null) {
    super(`${title}: ${detail}`);
    this.status = status;
    this.title = title;
    this.detail = detail;
    this.retryAfter = retryAfter;
  }
}

/** Read a token from the fragment (then remove it from the URL and history), else from sessionStorage. */
export function takeToken() {
  const params = new URLSearchParams(window.location.hash.slice(1));
  const fromUrl = params.get("token");
  if (fromUrl !== null) {
    params.delete("token");
    const rest = params.toString();
    const clean = window.location.pathname + window.location.search + (rest ? `#${rest}` : "");
    window.history.replaceState(window.history.state, "", clean);
    if (fromUrl.trim()) setToken(fromUrl.trim());
  }
  return getToken();
}

export function getToken() {
  return window.sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(token) {
  window.sessionStorage.setItem(TOKEN_KEY, token);
}

export function clearToken() {
  window.sessionStorage.removeItem(TOKEN_KEY);
}

function authHeaders() {
  const token = getToken();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/** Turn a failed response's body into an ApiError (problem+json when the server sent one). */
function problemFrom(status, contentType, text, retryAfter) {
  if (contentType && contentType.includes("json")) {
    try {
      const body = JSON.parse(text);
      if (body && body.title) {
        return new ApiError(status, body.title, body.detail || "", retryAfter);
      }
    } catch {
      // not JSON after all: fall through to the generic message
    }
  }
  return new ApiError(status, `HTTP ${status}`, text.slice(0, 200) || "the server gave no details", retryAfter);
}

/** GET a same-origin API URL with the bearer token; resolves to the Response, rejects with ApiError. */
export async function apiGet(url) {
  let response;
  try {
    response = await fetch(url, { headers: authHeaders(), cache: "no-store" });
  } catch (err) {
    throw new ApiError(0, "Network error", `the service could not be reached (${err.message})`);
  }
  if (!response.ok) {
    const text = await response.text();
    throw problemFrom(response.status, response.headers.get("content-type"), text, response.headers.get("retry-after"));
  }
  return response;
}

/** DELETE a stored result now instead of waiting for it to expire. */
export async function apiDelete(url) {
  const response = await fetch(url, { method: "DELETE", headers: authHeaders() });
  if (!response.ok && response.status !== 404) {
    const text = await response.text();
    throw problemFrom(response.status, response.headers.get("content-type"), text, null);
  }
}

/**
 * POST one image to v1/reconstruct. XMLHttpRequest rather than fetch because only it reports upload
 * progress: onProgress(fraction) while sending, onProgress(null) once the server is working.
 */
export function reconstruct(blob, filename, onProgress) {
  return upload("v1/reconstruct", "image", [[blob, filename]], onProgress);
}

/** POST several photos of one person to v1/reconstruct/person (one head); the same progress reports. */
export function reconstructPerson(files, onProgress) {
  return upload("v1/reconstruct/person", "images", files.map((file) => [file, file.name]), onProgress);
}

/** POST [blob, filename] pairs as multipart field ``field``; resolves to the JSON answer. */
function upload(url, field, parts, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    };
    xhr.upload.onload = () => onProgress(null);
    xhr.onerror = () => reject(new ApiError(0, "Network error", "the upload did not reach the service"));
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        try {
          resolve(JSON.parse(xhr.responseText));
        } catch {
          reject(new ApiError(xhr.status, "Bad response", "the service answered with something other than JSON"));
        }
        return;
      }
      reject(problemFrom(xhr.status, xhr.getResponseHeader("content-type"), xhr.responseText, xhr.getResponseHeader("retry-after")));
    };
    const form = new FormData();
    for (const [blob, filename] of parts) form.append(field, blob, filename);
    xhr.send(form);
  });
}

/** Fetch every file of a result as Blobs: {name: Blob}. Result URLs are used exactly as the API gave them. */
export async function fetchFiles(files, names) {
  const entries = await Promise.all(
    names.map(async (name) => {
      const response = await apiGet(files[name]);
      return [name, await response.blob()];
    }),
  );
  return Object.fromEntries(entries);
}
