//! The HTTP side of the web interface: routes, guards, and the page's embedded files.
//!
//! Every request passes [`check`] first, in this order:
//! 1. its Host must name this server (a page on another name that resolves here, the DNS
//!    rebinding attack, is answered 421 and gets nothing);
//! 2. `/?token=T` with the right token answers with the session cookie (HttpOnly,
//!    SameSite=Strict) and sends the browser on to `/`, so the token leaves the address bar;
//! 3. any other request without that cookie is answered 401.
//!
//! The WebSocket (`/ws`) also needs an Origin equal to this server's own: cookies do not tell
//! ports apart, so a page served by another program on 127.0.0.1 would otherwise send ours.
//! Every response carries a Content-Security-Policy that allows scripts, styles and connections
//! from this origin only, and no inline script.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use p2p_chat_core::{Command, Event};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{mpsc, Notify};

use super::hub::{json, FromPage, Hub, ToPage, LOG_ITEMS};

/// Tabs open at once; more are answered 503.
const MAX_TABS: usize = 64;
/// Largest message a tab may send: a chat of the most bytes, escaped as JSON, fits.
const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// How often open tabs get fresh peers and stats (latency and counters move on their own).
const REFRESH: Duration = Duration::from_secs(2);
/// How long the tabs get to hear that the node stopped, before the web thread says it is done.
const BYE_GRACE: Duration = Duration::from_secs(1);

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The page's files: path, content type, contents.
const ASSETS: &[(&str, &str, &str)] = &[
    ("/", "text/html; charset=utf-8", include_str!("assets/index.html")),
    ("/app.css", "text/css; charset=utf-8", include_str!("assets/app.css")),
    ("/app.js", "text/javascript; charset=utf-8", include_str!("assets/app.js")),
    ("/view.js", "text/javascript; charset=utf-8", include_str!("assets/view.js")),
    ("/icon.svg", "image/svg+xml", include_str!("assets/icon.svg")),
];

/// Who may use the server: the Host it answers to and the secret that proves the user.
pub struct Guard {
    addr: SocketAddr,
    token: String,
    /// The cookie's name carries the port: one browser may hold cookies of several nodes on
    /// 127.0.0.1, which cookies alone would not tell apart.
    cookie: String,
}

impl Guard {
    pub fn new(addr: SocketAddr, token: String) -> Guard {
        Guard { addr, token, cookie: format!("p2p_chat_{}", addr.port()) }
    }

    /// Whether `host` (a Host header, or the authority of an Origin) names this server: its own
    /// address and port, or `localhost` with its port when it listens on loopback. Bound to an
    /// unspecified address (0.0.0.0), it cannot know its own addresses, and takes any IP literal
    /// with its port: only a name can be rebound to another address, never a literal.
    fn host_ok(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        let port = self.addr.port();
        let ip = self.addr.ip();
        if host == format!("localhost:{port}") {
            return ip.is_loopback() || ip.is_unspecified();
        }
        match host.parse::<SocketAddr>() {
            Ok(a) if a.port() == port => a.ip() == ip || (ip.is_unspecified() && same_family(a.ip(), ip)),
            _ => false,
        }
    }

    fn has_cookie(&self, headers: &HeaderMap) -> bool {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .any(|(name, value)| name == self.cookie && same_secret(value, &self.token))
    }

    fn token_in(&self, query: Option<&str>) -> Option<bool> {
        let value = query?.split('&').find_map(|kv| kv.strip_prefix("token="))?;
        Some(same_secret(value, &self.token))
    }
}

fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

/// Compares in time independent of where the first difference is.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

struct Shared {
    guard: Guard,
    hub: Arc<Hub>,
    tabs: AtomicUsize,
}

/// Serves until the process ends. `events` are the node's, from the tap; once they end (the node
/// stopped) and every tab was told, or after [`BYE_GRACE`], `done` is sent.
pub async fn run(
    listener: std::net::TcpListener,
    guard: Guard,
    hub: Hub,
    events: mpsc::Receiver<Event>,
    done: std::sync::mpsc::Sender<()>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let st = Arc::new(Shared { guard, hub: Arc::new(hub), tabs: AtomicUsize::new(0) });
    let peers_changed = Arc::new(Notify::new());
    tokio::spawn(pump(events, st.clone(), peers_changed.clone(), done));
    tokio::spawn(refresh(st.hub.clone(), peers_changed));
    let app = Router::new()
        .route("/ws", get(ws))
        .fallback(asset)
        .layer(middleware::from_fn_with_state(st.clone(), check))
        .with_state(st);
    axum::serve(listener, app).await
}

/// Moves the node's events into the hub, and says when the peer list changed. When the node
/// stops, tells the tabs, and `done` once they have closed.
async fn pump(
    mut events: mpsc::Receiver<Event>,
    st: Arc<Shared>,
    peers_changed: Arc<Notify>,
    done: std::sync::mpsc::Sender<()>,
) {
    while let Some(e) = events.recv().await {
        st.hub.event(&e);
        if matches!(e, Event::PeerUp(_) | Event::PeerDown { .. }) {
            peers_changed.notify_one();
        }
    }
    st.hub.bye();
    let until = tokio::time::Instant::now() + BYE_GRACE;
    while st.tabs.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = done.send(());
}

/// Sends fresh peers and stats to the open tabs: every [`REFRESH`], and when peers come and go.
async fn refresh(hub: Arc<Hub>, peers_changed: Arc<Notify>) {
    let mut tick = tokio::time::interval(REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = peers_changed.notified() => {}
        }
        if hub.tabs() == 0 {
            continue;
        }
        let Some((peers, stats)) = query(&hub).await else { return };
        hub.broadcast(&ToPage::Peers { peers });
        hub.broadcast(&ToPage::Stats { stats });
    }
}

/// Peers and stats from the node, asked on a thread that may block.
async fn query(hub: &Arc<Hub>) -> Option<(Vec<super::hub::Peer>, super::hub::WebStats)> {
    let hub = hub.clone();
    tokio::task::spawn_blocking(move || hub.query()).await.ok()
}

fn secure(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    h.insert("cross-origin-resource-policy", HeaderValue::from_static("same-origin"));
    r
}

fn refuse(status: StatusCode, why: &'static str) -> Response {
    secure((status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], why).into_response())
}

async fn check(State(st): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    let authority_ok = req.uri().authority().is_none_or(|a| a.as_str().eq_ignore_ascii_case(host));
    if !st.guard.host_ok(host) || !authority_ok {
        return refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "This is a p2p-chat node's web interface; open it by the address it printed.\n",
        );
    }
    if req.uri().path() == "/" {
        match st.guard.token_in(req.uri().query()) {
            Some(true) => {
                let cookie = format!("{}={}; HttpOnly; SameSite=Strict; Path=/", st.guard.cookie, st.guard.token);
                let r = (StatusCode::SEE_OTHER, [(header::LOCATION, "/".to_owned()), (header::SET_COOKIE, cookie)]);
                return secure(r.into_response());
            }
            Some(false) => return refuse(StatusCode::UNAUTHORIZED, "Wrong token.\n"),
            None => {}
        }
    }
    if !st.guard.has_cookie(req.headers()) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "Open the URL with the token that the node printed when it started.\n",
        );
    }
    secure(next.run(req).await)
}

async fn asset(req: Request) -> Response {
    match ASSETS.iter().find(|(path, _, _)| *path == req.uri().path()) {
        Some((_, kind, body)) => ([(header::CONTENT_TYPE, *kind)], *body).into_response(),
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

async fn ws(
    State(st): State<Arc<Shared>>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    // The guard checked Host; the Origin must be this same server.
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    let origin = headers.get(header::ORIGIN).and_then(|h| h.to_str().ok()).unwrap_or("");
    let same_origin =
        origin.strip_prefix("http://").is_some_and(|o| o.eq_ignore_ascii_case(host) && st.guard.host_ok(o));
    if !same_origin {
        return refuse(StatusCode::FORBIDDEN, "WebSocket from another origin.\n");
    }
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    if st.tabs.fetch_add(1, Ordering::SeqCst) >= MAX_TABS {
        st.tabs.fetch_sub(1, Ordering::SeqCst);
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "Too many tabs open.\n");
    }
    upgrade.max_message_size(MAX_MESSAGE_BYTES).max_frame_size(MAX_MESSAGE_BYTES).on_upgrade(move |socket| async move {
        tab(socket, &st).await;
        st.tabs.fetch_sub(1, Ordering::SeqCst);
    })
}

async fn send(socket: &mut WebSocket, text: &str) -> bool {
    socket.send(Message::Text(text.into())).await.is_ok()
}

/// Sends `hello` with a fresh snapshot; the subscription to what follows it.
async fn hello(socket: &mut WebSocket, hub: &Arc<Hub>) -> Option<tokio::sync::broadcast::Receiver<Arc<str>>> {
    let (snapshot, rx) = hub.subscribe()?;
    let (peers, stats) = query(hub).await?;
    send(socket, &json(&hub.hello(snapshot, peers, stats))).await.then_some(rx)
}

/// One open tab: the log as it grows, and the tab's requests.
async fn tab(mut socket: WebSocket, st: &Shared) {
    let Some(mut rx) = hello(&mut socket, &st.hub).await else { return };
    let bye = json(&ToPage::Bye);
    loop {
        tokio::select! {
            m = rx.recv() => match m {
                Ok(text) => {
                    if !send(&mut socket, &text).await || *text == *bye {
                        let _ = socket.send(Message::Close(None)).await;
                        return;
                    }
                }
                Err(RecvError::Lagged(_)) => match hello(&mut socket, &st.hub).await {
                    Some(fresh) => rx = fresh,
                    None => return,
                },
                Err(RecvError::Closed) => return,
            },
            m = socket.recv() => match m {
                Some(Ok(Message::Text(t))) => {
                    if let Some(answer) = request(&st.hub, t.as_str()).await {
                        if !send(&mut socket, &json(&answer)).await {
                            return;
                        }
                    }
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// Does what a tab asks; the answer for that tab alone, if any.
async fn request(hub: &Arc<Hub>, text: &str) -> Option<ToPage> {
    let notice = |text: String| Some(ToPage::Notice { text });
    let Ok(req) = serde_json::from_str::<FromPage>(text) else {
        return notice("the node did not understand that request".into());
    };
    match req {
        FromPage::Chat { text, room } => hub.chat(text, room.as_deref()).err().and_then(notice),
        // These ask the node for its peers or rooms, which may block.
        FromPage::Line { line, room } => {
            let hub = hub.clone();
            tokio::task::spawn_blocking(move || hub.line(&line, room.as_deref())).await.ok().flatten()
        }
        FromPage::Dm { to, text } => {
            let hub = hub.clone();
            tokio::task::spawn_blocking(move || hub.dm(&to, text)).await.ok().and_then(Result::err).and_then(notice)
        }
        FromPage::Read { room, peer } => {
            hub.read(room.as_deref(), peer.as_deref());
            None
        }
        FromPage::Connect { addr } => {
            let found = tokio::net::lookup_host(addr.as_str()).await.ok().and_then(|mut a| a.next());
            match found {
                Some(a) => {
                    hub.handle().command(Command::Connect(a));
                    notice(format!("dialing {a}"))
                }
                None => notice(format!("cannot connect to {addr:?}: expected host:port, with a host that resolves")),
            }
        }
        FromPage::History { n, room } => {
            Some(ToPage::History { items: hub.history(n.min(LOG_ITEMS), room.as_deref()) })
        }
        FromPage::Peers => query(hub).await.map(|(peers, _)| ToPage::Peers { peers }),
        FromPage::Stats => query(hub).await.map(|(_, stats)| ToPage::Stats { stats }),
        FromPage::Quit if hub.headless() => {
            hub.quit();
            notice("leaving the network; the node stops".into())
        }
        FromPage::Quit => notice("this node has a terminal view: quit it there, with /quit".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_must_name_this_server() {
        let g = Guard::new("127.0.0.1:8090".parse().unwrap(), "t".into());
        assert!(g.host_ok("127.0.0.1:8090"));
        assert!(g.host_ok("localhost:8090"));
        assert!(g.host_ok("LocalHost:8090"));
        assert!(!g.host_ok("127.0.0.1:8091"));
        assert!(!g.host_ok("127.0.0.1"));
        assert!(!g.host_ok("evil.example:8090"));
        assert!(!g.host_ok("localhost.evil.example:8090"));
        assert!(!g.host_ok("127.0.0.2:8090"));
        assert!(!g.host_ok(""));
        let any = Guard::new("0.0.0.0:8090".parse().unwrap(), "t".into());
        assert!(any.host_ok("192.0.2.7:8090"));
        assert!(any.host_ok("localhost:8090"));
        assert!(!any.host_ok("[::1]:8090"));
        assert!(!any.host_ok("rebound.example:8090"));
        let public = Guard::new("192.0.2.7:8090".parse().unwrap(), "t".into());
        assert!(public.host_ok("192.0.2.7:8090"));
        assert!(!public.host_ok("localhost:8090"));
        let v6 = Guard::new("[::1]:8090".parse().unwrap(), "t".into());
        assert!(v6.host_ok("[::1]:8090"));
        assert!(!v6.host_ok("127.0.0.1:8090"));
    }

    #[test]
    fn cookie_and_token_must_match_exactly() {
        let g = Guard::new("127.0.0.1:8090".parse().unwrap(), "abc123".into());
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("other=1; p2p_chat_8090=abc123"));
        assert!(g.has_cookie(&h));
        h.insert(header::COOKIE, HeaderValue::from_static("p2p_chat_8091=abc123"));
        assert!(!g.has_cookie(&h));
        h.insert(header::COOKIE, HeaderValue::from_static("p2p_chat_8090=abc12"));
        assert!(!g.has_cookie(&h));
        assert_eq!(g.token_in(Some("token=abc123")), Some(true));
        assert_eq!(g.token_in(Some("x=1&token=abc124")), Some(false));
        assert_eq!(g.token_in(Some("x=1")), None);
        assert_eq!(g.token_in(None), None);
    }
}
