// Compiled by `tsc --noEmit -p .`: the declarations describe the API as a
// TypeScript user calls it, through the package's own name and exports.
import { connect, decodeClaims, listen, mount } from "scanlogin";
import type { ConnectionEvent, Flow, ServerMessage, State, Widget } from "scanlogin";

const flows: Flow[] = ["oa", "miniprogram"];

const login = connect({
  url: "wss://login.example.com/ws",
  flow: "miniprogram",
  flows,
  storage: null,
  backoffBase: 500,
  onState(s: State) {
    switch (s.state) {
      case "waiting":
      case "scanned": {
        const img: string = s.qrcodeURL;
        const left: number = s.expiresAt - Date.now();
        console.log(img, left, s.scene);
        break;
      }
      case "loggedin": {
        const openid: string = s.user.openid;
        const exp: number | undefined = s.claims?.exp;
        fetch("/session", { method: "POST", body: s.token });
        console.log(openid, exp);
        break;
      }
      case "expired":
        if (!s.autoRefresh) login.refresh();
        break;
      case "cancelled":
        login.refresh();
        break;
      case "error":
        if (s.code === "session_taken") login.restart();
        break;
      case "connecting":
        break;
      default: {
        const never: never = s;
        console.log(never);
      }
    }
  },
  onMessage(event: string, data: unknown) {
    console.log(event, data);
  },
  onConnection(c: ConnectionEvent) {
    if (c.status === "reconnecting") console.log(c.delay, c.attempt, c.code);
  },
});
login.setFlow("oa");
const names: string[] = login.history;
const flow: Flow | "" = login.flow;
console.log(names, flow, login.state.state);
login.close();

const inbox = listen({
  token: "eyJ...",
  getToken: () => fetch("/my-token").then((r) => r.text()),
  onMessage: (event, data) => console.log(event, data),
});
inbox.setToken("eyJ...");
inbox.close();

const widget: Widget = mount(document.getElementById("login")!, {
  flows,
  simulator: false,
  onLogin(token, user, claims) {
    console.log(token, user.openid, claims?.sub);
  },
});
widget.unmount();

console.log(decodeClaims("a.b.c")?.sid);
globalThis.ScanLogin?.connect();

function onServer(m: ServerMessage) {
  if (m.type === "qrcode") console.log(m.session, m.resume, m.expires_at);
  if (m.type === "message") console.log(m.event, m.data);
}
console.log(onServer);

// @ts-expect-error: a flow the server does not have
connect({ flow: "sms" });
// @ts-expect-error: getToken returns a token
listen({ getToken: () => 42 });
