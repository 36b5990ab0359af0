// Type declarations of scanlogin.js, the browser client of scanlogin.

/** A login flow: an official account's QR code, or a Mini Program code. */
export type Flow = "oa" | "miniprogram";

/** The WeChat user of a login, as the server sends it. */
export interface User {
  openid: string;
  unionid?: string;
  nickname?: string;
  avatar_url?: string;
  [field: string]: unknown;
}

/** The claims of a login token, decoded for display (not verified). */
export interface Claims {
  iss: string;
  /** The user's openid. */
  sub: string;
  iat: number;
  exp: number;
  jti: string;
  /** The login session. */
  sid: string;
  unionid?: string;
  [claim: string]: unknown;
}

// ---- Messages of the browser protocol (server to browser) ----------------

export interface QRCodeMessage {
  type: "qrcode";
  flow: Flow;
  session: string;
  resume: string;
  scene: string;
  qrcode_url: string;
  scan_url: string;
  expires_in: number;
  expires_at: number;
}
export interface ScannedMessage {
  type: "scanned";
}
export interface LoginMessage {
  type: "login";
  token: string;
  user: User;
}
export interface ExpiredMessage {
  type: "expired";
}
export interface CancelledMessage {
  type: "cancelled";
}
export interface PushMessage {
  type: "message";
  event: string;
  data: unknown;
}
export interface ErrorMessage {
  type: "error";
  /** rate_limited, upstream_unavailable, miniprogram_misconfigured, resume_failed, refresh_limit, bad_request, session_taken, ... */
  code: string;
  message: string;
}
export interface PongMessage {
  type: "pong";
}
/** Any message the server sends on /ws. */
export type ServerMessage =
  | QRCodeMessage
  | ScannedMessage
  | LoginMessage
  | ExpiredMessage
  | CancelledMessage
  | PushMessage
  | ErrorMessage
  | PongMessage;
/** What a browser sends on /ws. */
export type ClientMessage = { type: "ping" } | { type: "refresh" };

// ---- States of connect ----------------------------------------------------

/** The name of a state. */
export type StateName = "connecting" | "waiting" | "scanned" | "loggedin" | "cancelled" | "expired" | "error";

interface StateBase {
  /** The flow asked for, or the server's; empty before the first code. */
  flow: Flow | "";
}
/** Opening the connection, before the first QR code. */
export interface ConnectingState extends StateBase {
  state: "connecting";
}
/** A code to show, until expiresAt (this computer's clock, ms). */
export interface WaitingState extends StateBase {
  state: "waiting";
  session: string;
  scene: string;
  /** Absolute URL of the code's image. */
  qrcodeURL: string;
  /** The URL in the QR code (official-account codes; empty for Mini Program codes). */
  scanURL: string;
  expiresAt: number;
}
/** Scanned; the user confirms on the phone. */
export interface ScannedState extends StateBase {
  state: "scanned";
  scene: string;
  qrcodeURL: string;
  scanURL: string;
  expiresAt: number;
}
/** Logged in: the token is for your server, which must verify it. */
export interface LoggedInState extends StateBase {
  state: "loggedin";
  token: string;
  user: User;
  /** The token's claims, decoded without verification; null if unreadable. */
  claims: Claims | null;
}
/** The user declined on the phone; refresh() gives a new code. */
export interface CancelledState extends StateBase {
  state: "cancelled";
  qrcodeURL: string;
}
/** The code expired; with autoRefresh a new one is asked for by itself. */
export interface ExpiredState extends StateBase {
  state: "expired";
  qrcodeURL: string;
  autoRefresh: boolean;
}
/**
 * An error from the server (its code), or of the client: "unreachable"
 * (still retrying), "bad_url". "session_taken": another tab resumed the
 * session (close 4002); this connection stopped, restart() starts over.
 */
export interface ErrorState extends StateBase {
  state: "error";
  code: string;
  message: string;
}
/** A state of connect, told to onState. */
export type State =
  | ConnectingState
  | WaitingState
  | ScannedState
  | LoggedInState
  | CancelledState
  | ExpiredState
  | ErrorState;

/** What happens to the WebSocket, told to onConnection. */
export interface ConnectionEvent {
  status: "open" | "reconnecting" | "closed";
  /** open: the connection resumed the saved session. */
  resumed?: boolean;
  /** open: the server had lost the session and started a new one. */
  resumeFailed?: boolean;
  /** reconnecting: ms before the next attempt. */
  delay?: number;
  /** reconnecting: failed attempts in a row. */
  attempt?: number;
  /** reconnecting, closed: the close code (4000: dropped by the client). */
  code?: number;
  reason?: string;
}

/** Storage for the session and the flow (sessionStorage by default). */
export interface SessionStorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/** Reconnect and liveness timing, in ms. */
export interface TimingOptions {
  /** First reconnect delay, before jitter (500). */
  backoffBase?: number;
  /** Longest reconnect delay (30000). */
  backoffMax?: number;
  /** Between pings (25000). */
  pingInterval?: number;
  /** Without an answer after a ping: the socket is dead (10000). */
  pongTimeout?: number;
}

export interface ConnectOptions extends TimingOptions {
  /** WebSocket URL; default ws(s)://<this host>/ws. */
  url?: string;
  /** The flow; default: the one last used in this tab, else the server's first. */
  flow?: Flow;
  /** The server's flows, if known: a saved flow not among them is ignored. */
  flows?: Flow[] | null;
  /** Key of the saved session ("scanlogin"); the flow is kept under key + ".flow". */
  storageKey?: string;
  /** Where the session is kept; null: nowhere (no resume across reloads). */
  storage?: SessionStorageLike | null;
  /** Expired codes replaced without a click (5). */
  maxAutoRefresh?: number;
  /** ms the expired state shows before the automatic refresh (1500). */
  refreshDelay?: number;
  onState?: (state: State) => void;
  /** A Push from an internal service. */
  onMessage?: (event: string, data: unknown) => void;
  onConnection?: (event: ConnectionEvent) => void;
}

/** A login connection, from connect. */
export interface Connection {
  /** The latest state. */
  readonly state: State;
  /** Names of the states so far, oldest first (the last 100). */
  readonly history: StateName[];
  /** The flow asked for, or the server's answer; empty before the first code. */
  readonly flow: Flow | "";
  /** A new code: on this connection if open, else through a new session. */
  refresh(): void;
  /** Connect now (after "unreachable"), resuming the session if there is one. */
  reconnect(): void;
  /** Abandon the socket as a network failure would; the client resumes. */
  dropSocket(): void;
  /** Forget the session and start over with a new code. */
  restart(): void;
  /** Start over with a new code in flow f (nothing if it is the current one). */
  setFlow(f: Flow): void;
  /** End the connection for good. */
  close(): void;
}

export interface ListenOptions extends TimingOptions {
  /** WebSocket URL; default ws(s)://<this host>/ws. */
  url?: string;
  /** The login token to start with. */
  token?: string | null;
  /** A fresh token when the last one expired (close 4001, or exp passed). */
  getToken?: () => string | Promise<string>;
  /** A Push to the user. */
  onMessage?: (event: string, data: unknown) => void;
  onConnection?: (event: ConnectionEvent) => void;
}

/** An authenticated connection for the user's pushes, from listen. */
export interface Listener {
  /** Replace the token used for the next connection. */
  setToken(token: string): void;
  /** Abandon the socket as a network failure would; the client reconnects. */
  dropSocket(): void;
  /** End the connection for good. */
  close(): void;
}

export interface MountOptions extends Omit<ConnectOptions, "pingInterval" | "pongTimeout"> {
  /** The server's flows, the default first; with two or more the widget offers a switch. */
  flows?: Flow[] | null;
  /** Development: link each code's page in the WeChat simulator (its URL for Mini Program codes). */
  simulator?: boolean | string;
  /** Called once logged in. */
  onLogin?: (token: string, user: User, claims: Claims | null) => void;
}

/** A mounted widget: its connection, and unmount to remove it. */
export interface Widget extends Connection {
  unmount(): void;
}

/** Open a login connection: QR code, scan, login, with resume and retries. */
export function connect(options?: ConnectOptions): Connection;
/** Keep a /ws?token= connection open for the user's pushes. */
export function listen(options?: ListenOptions): Listener;
/** Draw the login widget inside root and connect it. */
export function mount(root: HTMLElement, options?: MountOptions): Widget;
/** The claims of a JWT, for display only: nothing is verified. */
export function decodeClaims(token: string): Claims | null;

declare global {
  /** Set when the module is loaded in a page (a <script type="module"> tag). */
  var ScanLogin:
    | {
        connect: typeof connect;
        listen: typeof listen;
        mount: typeof mount;
        decodeClaims: typeof decodeClaims;
      }
    | undefined;
}
