//! A TCP proxy in front of a real server (PostgreSQL, usually) that a test can cut or freeze, to see what GoMon
//! does when a dependency goes away or stops answering.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does with traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Bytes pass both ways.
    Open,
    /// Every connection is dropped and new ones are closed at once (a server that went away).
    Cut,
    /// Connections are accepted and bytes read, but nothing is passed on in either direction, and nothing is
    /// closed (a host that stopped answering).
    Frozen,
}

/// A proxy on `127.0.0.1:port` to an upstream address. It runs on the Tokio runtime it was started on, until that
/// runtime ends.
pub struct Proxy {
    /// The port to connect to instead of the upstream's.
    pub port: u16,
    state: watch::Sender<State>,
}

impl Proxy {
    /// Starts a proxy in front of the local HTTP server of `url` (`http://127.0.0.1:PORT/...`): the proxy, and
    /// `url` through it.
    pub async fn in_front_of(url: &str) -> (Proxy, String) {
        let mut url = reqwest::Url::parse(url).expect("URL");
        let upstream = format!("127.0.0.1:{}", url.port().expect("port"));
        let proxy = Proxy::start(upstream).await;
        url.set_port(Some(proxy.port)).expect("port");
        (proxy, url.to_string())
    }

    /// Starts a proxy to `upstream` (`host:port`), open.
    pub async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let (state, _) = watch::channel(State::Open);
        let accept_state = state.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let mut state = accept_state.subscribe();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    if !wait_open(&mut state).await {
                        return;
                    }
                    let Ok(outbound) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (client_read, client_write) = inbound.into_split();
                    let (server_read, server_write) = outbound.into_split();
                    let back = state.clone();
                    tokio::join!(
                        pass(client_read, server_write, state),
                        pass(server_read, client_write, back),
                    );
                });
            }
        });
        Proxy { port, state }
    }

    /// Drops every open connection and refuses new ones.
    pub fn cut(&self) {
        self.state.send_replace(State::Cut);
    }

    /// Holds every connection, open and new, passing nothing on, until [`Proxy::restore`].
    pub fn freeze(&self) {
        self.state.send_replace(State::Frozen);
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.state.send_replace(State::Open);
    }
}

/// Waits while the proxy is frozen; false when it is cut.
async fn wait_open(state: &mut watch::Receiver<State>) -> bool {
    match state.wait_for(|state| *state != State::Frozen).await {
        Ok(state) => *state == State::Open,
        Err(_) => false,
    }
}

/// Copies `from` to `to` while the proxy is open; returns when either side closes or the proxy is cut.
async fn pass(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut state: watch::Receiver<State>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let mut cut = state.clone();
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            _ = cut.wait_for(|state| *state == State::Cut) => return,
        };
        let Ok(read @ 1..) = read else {
            break;
        };
        if !wait_open(&mut state).await {
            return;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            break;
        }
    }
    // Half-close, so that the other direction can finish what it is sending.
    let _ = tokio::time::timeout(Duration::from_secs(1), to.shutdown()).await;
}
