//! A fault-injecting proxy on loopback for the federation's tests (traffic control's netem is
//! not available here): UDP (QUIC) and TCP (HTTPS) forwarded to a target, with a fault that
//! can be changed while traffic flows: pass, delay every packet or chunk, lose a share of the
//! datagrams, hang (take everything, forward nothing), or reset TCP connections.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    Pass,
    /// Every datagram or chunk waits this long before it is forwarded.
    Delay(Duration),
    /// This share (0..1) of the datagrams is dropped, either way.
    Loss(f64),
    /// Nothing is forwarded; TCP connections are accepted and left hanging.
    Hang,
    /// TCP connections are closed with a reset as soon as the client has sent something.
    Reset,
}

/// A running proxy; its threads end when it is dropped.
pub struct Proxy {
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    fault: Arc<Mutex<Fault>>,
    done: Arc<AtomicBool>,
    /// Datagrams dropped by Loss or Hang.
    pub dropped: Arc<AtomicU64>,
}

impl Proxy {
    /// Forwards UDP to `udp_target` and TCP to `tcp_target`.
    pub fn start(udp_target: SocketAddr, tcp_target: SocketAddr) -> Proxy {
        let fault = Arc::new(Mutex::new(Fault::Pass));
        let done = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicU64::new(0));
        let front = UdpSocket::bind("127.0.0.1:0").unwrap();
        let back = UdpSocket::bind("127.0.0.1:0").unwrap();
        back.connect(udp_target).unwrap();
        for s in [&front, &back] {
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
        }
        let udp = front.local_addr().unwrap();
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let (front, back) = (Arc::new(front), Arc::new(back));
        // Client to target.
        {
            let (front, back, client) = (front.clone(), back.clone(), client.clone());
            let (fault, done, dropped) = (fault.clone(), done.clone(), dropped.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65_536];
                let mut seed = 1u64;
                while !done.load(Ordering::Relaxed) {
                    let Ok((n, from)) = front.recv_from(&mut buf) else {
                        continue;
                    };
                    *client.lock().unwrap() = Some(from);
                    if pass(&fault, &mut seed, &dropped) {
                        let _ = back.send(&buf[..n]);
                    }
                }
            });
        }
        // Target to client.
        {
            let (fault, done, dropped) = (fault.clone(), done.clone(), dropped.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65_536];
                let mut seed = 7u64;
                while !done.load(Ordering::Relaxed) {
                    let Ok(n) = back.recv(&mut buf) else {
                        continue;
                    };
                    let to = *client.lock().unwrap();
                    if let Some(to) = to.filter(|_| pass(&fault, &mut seed, &dropped)) {
                        let _ = front.send_to(&buf[..n], to);
                    }
                }
            });
        }
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let tcp = listener.local_addr().unwrap();
        {
            let (fault, done) = (fault.clone(), done.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((c, _)) => {
                            let (fault, done) = (fault.clone(), done.clone());
                            std::thread::spawn(move || {
                                tcp_connection(c, tcp_target, &fault, &done)
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            });
        }
        Proxy {
            udp,
            tcp,
            fault,
            done,
            dropped,
        }
    }

    pub fn set(&self, f: Fault) {
        *self.fault.lock().unwrap() = f;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
    }
}

/// Whether a datagram goes through under the current fault (waiting out a delay first).
fn pass(fault: &Mutex<Fault>, seed: &mut u64, dropped: &AtomicU64) -> bool {
    let f = *fault.lock().unwrap();
    match f {
        Fault::Pass | Fault::Reset => true,
        Fault::Delay(d) => {
            std::thread::sleep(d);
            true
        }
        Fault::Loss(p) => {
            *seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let keep = ((*seed >> 11) as f64 / (1u64 << 53) as f64) >= p;
            if !keep {
                dropped.fetch_add(1, Ordering::Relaxed);
            }
            keep
        }
        Fault::Hang => {
            dropped.fetch_add(1, Ordering::Relaxed);
            false
        }
    }
}

fn tcp_connection(mut c: TcpStream, target: SocketAddr, fault: &Mutex<Fault>, done: &AtomicBool) {
    let f = *fault.lock().unwrap();
    match f {
        Fault::Hang => {
            // Take the connection and say nothing, until the proxy ends or the client leaves.
            let _ = c.set_read_timeout(Some(Duration::from_millis(100)));
            let mut buf = [0u8; 4096];
            while !done.load(Ordering::Relaxed) {
                match c.read(&mut buf) {
                    Ok(0) => return,
                    _ => continue,
                }
            }
        }
        Fault::Reset => {
            // Closing a socket with unread data makes the kernel send a reset.
            let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
            let mut one = [0u8; 1];
            let _ = c.peek(&mut one);
            std::thread::sleep(Duration::from_millis(20));
        }
        _ => {
            let Ok(mut up) = TcpStream::connect(target) else {
                return;
            };
            let (mut c2, mut up2) = (c.try_clone().unwrap(), up.try_clone().unwrap());
            let delay = match f {
                Fault::Delay(d) => Some(d),
                _ => None,
            };
            let t = std::thread::spawn(move || copy(&mut c2, &mut up2, delay));
            copy(&mut up, &mut c, delay);
            let _ = t.join();
        }
    }
}

fn copy(from: &mut TcpStream, to: &mut TcpStream, delay: Option<Duration>) {
    let mut buf = [0u8; 16_384];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = to.shutdown(std::net::Shutdown::Write);
                return;
            }
            Ok(n) => {
                if let Some(d) = delay {
                    std::thread::sleep(d);
                }
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}
