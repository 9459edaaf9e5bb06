//! A loopback TCP proxy the tests can cut: it forwards every connection to
//! a target, and on [`Proxy::cut`] closes them all and refuses new ones
//! until [`Proxy::open`]; on [`Proxy::black_hole`] it keeps every
//! connection open and forwards nothing (a peer gone silent); with
//! [`Proxy::delay`] it holds every chunk, both ways, that long first.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// See the module docs.
pub struct Proxy {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    open: Arc<AtomicBool>,
    forwarding: Arc<AtomicBool>,
    delay_ms: Arc<AtomicU64>,
    live: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    /// Forwards connections on a fresh loopback port to `target` (`host:port`).
    pub fn start(target: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let open = Arc::new(AtomicBool::new(true));
        let forwarding = Arc::new(AtomicBool::new(true));
        let live: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (open2, live2, target) = (Arc::clone(&open), Arc::clone(&live), target.to_owned());
        let forwarding2 = Arc::clone(&forwarding);
        let delay_ms = Arc::new(AtomicU64::new(0));
        let delay2 = Arc::clone(&delay_ms);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if !open2.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&target) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                {
                    let mut live = live2.lock().unwrap();
                    live.push(client.try_clone().unwrap());
                    live.push(server.try_clone().unwrap());
                }
                let flow = Flow {
                    forwarding: Arc::clone(&forwarding2),
                    delay_ms: Arc::clone(&delay2),
                };
                pipe(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    flow.clone(),
                );
                pipe(server, client, flow);
            }
        });
        Proxy {
            url,
            open,
            forwarding,
            delay_ms,
            live,
        }
    }

    /// Closes every forwarded connection and refuses new ones.
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for stream in self.live.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Keeps every connection open and drops whatever either side sends.
    pub fn black_hole(&self) {
        self.forwarding.store(false, Ordering::SeqCst);
    }

    /// Holds every chunk, both ways, `delay` before passing it on.
    pub fn delay(&self, delay: std::time::Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Accepts connections again.
    pub fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

/// What a pipe does with what it reads.
#[derive(Clone)]
struct Flow {
    forwarding: Arc<AtomicBool>,
    delay_ms: Arc<AtomicU64>,
}

fn pipe(mut from: TcpStream, mut to: TcpStream, flow: Flow) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) if !flow.forwarding.load(Ordering::SeqCst) => {}
                Ok(n) => {
                    let delay = flow.delay_ms.load(Ordering::SeqCst);
                    if delay > 0 {
                        std::thread::sleep(std::time::Duration::from_millis(delay));
                    }
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}
