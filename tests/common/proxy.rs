//! A TCP forwarder between a daemon and the S3 server that a test can cut:
//! the daemon's uplink, without root or network namespaces.
//!
//! - [`Uplink::cut`]: every open connection is shut down and new ones are
//!   closed at once (a refused uplink: requests fail fast).
//! - [`Uplink::blackhole`]: open connections are shut down; new ones are
//!   accepted and never answered (a dead uplink: only timeouts end them).
//! - [`Uplink::restore`]: forward again.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const UP: u8 = 0;
const CUT: u8 = 1;
const BLACKHOLE: u8 = 2;

/// A cuttable forwarder to one upstream address.
pub struct Uplink {
    /// `http://127.0.0.1:PORT` of the forwarder.
    pub url: String,
    state: Arc<AtomicU8>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Uplink {
    /// Forward a local port to `upstream_url` (`http://host:port`).
    pub fn start(upstream_url: &str) -> Uplink {
        let upstream = upstream_url.trim_start_matches("http://").trim_end_matches('/').to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(AtomicU8::new(UP));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (st, op) = (state.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                match st.load(Ordering::SeqCst) {
                    CUT => drop(client),
                    BLACKHOLE => op.lock().unwrap().push(client),
                    _ => forward(client, &upstream, &op),
                }
            }
        });
        Uplink { url, state, open }
    }

    /// Refuse: close everything, now and until restored.
    pub fn cut(&self) {
        self.state.store(CUT, Ordering::SeqCst);
        self.close_all();
    }

    /// Blackhole: close what is open; accept new connections and never answer.
    pub fn blackhole(&self) {
        self.state.store(BLACKHOLE, Ordering::SeqCst);
        self.close_all();
    }

    /// Forward again.
    pub fn restore(&self) {
        self.state.store(UP, Ordering::SeqCst);
        self.close_all();
    }

    fn close_all(&self) {
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

fn forward(client: TcpStream, upstream: &str, open: &Arc<Mutex<Vec<TcpStream>>>) {
    let Ok(server) = TcpStream::connect_timeout(&upstream.parse().unwrap(), Duration::from_secs(2)) else {
        return;
    };
    {
        let mut o = open.lock().unwrap();
        o.push(client.try_clone().unwrap());
        o.push(server.try_clone().unwrap());
    }
    pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
    pipe(server, client);
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}
