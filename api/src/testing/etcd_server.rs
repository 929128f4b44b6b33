//! A real etcd (Debian's `etcd-server`) for tests: one process per [`EtcdServer`], listening on
//! free 127.0.0.1 ports, data in a fresh temporary directory. Ended by its pid (SIGKILL, then
//! reaped) and its directory removed when dropped, also when the test fails.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running etcd.
#[derive(Debug)]
pub struct EtcdServer {
    child: Option<Child>,
    dir: PathBuf,
    client_port: u16,
    peer_port: u16,
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl EtcdServer {
    /// The etcd binary, if installed.
    pub fn binary() -> Option<PathBuf> {
        ["/usr/bin/etcd", "/usr/local/bin/etcd"]
            .into_iter()
            .map(PathBuf::from)
            .find(|path| path.exists())
    }

    /// Starts etcd and waits (at most 20 s) until it serves requests.
    pub fn start() -> Result<EtcdServer, String> {
        let base = std::env::temp_dir().join(format!(
            "weft-etcd-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&base).map_err(|e| format!("create {}: {e}", base.display()))?;
        let mut server = EtcdServer {
            child: None,
            dir: base,
            client_port: free_port().map_err(|e| format!("no free port: {e}"))?,
            peer_port: free_port().map_err(|e| format!("no free port: {e}"))?,
        };
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let binary = Self::binary().ok_or("etcd is not installed (apt-get install etcd-server)")?;
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| format!("open etcd log: {e}"))?;
        // etcd 3.4 exits when given --log-outputs FILE: its log goes to stderr, redirected.
        let child = Command::new(binary)
            .arg("--name")
            .arg("weft-test")
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .arg("--listen-client-urls")
            .arg(&client)
            .arg("--advertise-client-urls")
            .arg(&client)
            .arg("--listen-peer-urls")
            .arg(&peer)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer)
            .arg("--initial-cluster")
            .arg(format!("weft-test={peer}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("start etcd: {e}"))?;
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(20))
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        let url = format!("127.0.0.1:{}", self.client_port);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!("etcd exited with {status}; its log: {}", self.log_tail()));
            }
            // etcd answers /health over HTTP on the client port once it has a leader.
            if let Ok(mut stream) = std::net::TcpStream::connect(&url) {
                use std::io::{Read, Write};
                let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
                let request = format!("GET /health HTTP/1.0\r\nHost: {url}\r\n\r\n");
                let mut response = String::new();
                if stream.write_all(request.as_bytes()).is_ok()
                    && stream.read_to_string(&mut response).is_ok()
                    && response.contains("\"health\":\"true\"")
                {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "etcd on {url} not healthy after {limit:?}; its log: {}",
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("etcd.log")
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let start = log.len().saturating_sub(2000);
        log.get(start..).unwrap_or_default().to_owned()
    }

    /// `etcd:http://127.0.0.1:PORT`, the store setting for this server.
    pub fn setting(&self) -> String {
        format!("etcd:{}", self.url())
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// Kills etcd (SIGKILL) and reaps it; the data stays.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills etcd and starts it again on the same ports and data.
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill();
        self.spawn()
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
