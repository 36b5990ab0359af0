// Push one message to a browser through push-server's HTTP/JSON API, with
// Node's own fetch (Node 18 or later, no package needed).
//
//   node push.mjs session <session id> <event> [<data JSON>]
//   node push.mjs openid <openid> <event> [<data JSON>]
//   node push.mjs batch < batch.json    ({"pushes": [...]}, 1 to 1,000 pushes)
//
// PUSH_API_URL: the API (default http://127.0.0.1:9091); GRPC_AUTH_TOKEN:
// push-server's token, if it has one. Prints the answer's JSON; exits 1 when
// the server refuses the call (or, for a batch, any push), 2 on a usage error.
import { readFileSync } from "node:fs";

const api = (process.env.PUSH_API_URL || "http://127.0.0.1:9091").replace(/\/+$/, "");

// post sends body as JSON and returns the HTTP status and the answer's text.
async function post(path, body) {
  const headers = { "Content-Type": "application/json" };
  if (process.env.GRPC_AUTH_TOKEN) headers.Authorization = "Bearer " + process.env.GRPC_AUTH_TOKEN;
  const resp = await fetch(api + path, {
    method: "POST",
    headers,
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(5000),
  });
  return { status: resp.status, text: await resp.text() };
}

function usage() {
  console.error("usage: node push.mjs session|openid <id> <event> [<data JSON>] | batch < batch.json");
  process.exit(2);
}

const [kind, id, event, data] = process.argv.slice(2);
let path, body;
try {
  if (kind === "batch" && id === undefined) {
    path = "/v1/push/batch";
    body = JSON.parse(readFileSync(0, "utf8"));
  } else if ((kind === "session" || kind === "openid") && event !== undefined && process.argv.length <= 6) {
    path = "/v1/push";
    body = { [kind]: id, event, data: data === undefined ? null : JSON.parse(data) };
  } else {
    usage();
  }
} catch (e) {
  console.error("not JSON:", e.message);
  process.exit(2);
}

let answer;
try {
  answer = await post(path, body);
} catch (e) {
  console.error("push-server unreachable:", e.cause?.message || e.message);
  process.exit(1);
}
console.log(answer.text);
if (answer.status !== 200) {
  // {"code": "invalid_argument" | "unauthenticated" | "not_found" | "unavailable", "message": ...}
  console.error(`refused: HTTP ${answer.status}`);
  process.exit(1);
}
if (path.endsWith("/batch")) {
  // Each failed push fails alone, with {"error": {...}} in its place.
  const failed = JSON.parse(answer.text).results.flatMap((r, i) => (r.error ? [i] : []));
  if (failed.length) {
    console.error(`pushes ${failed.join(", ")} failed`);
    process.exit(1);
  }
}
