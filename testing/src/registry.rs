//! A real OCI registry for tests: Debian's `docker-registry` (the reference
//! distribution registry) serving 127.0.0.1 on a free port from a temporary storage
//! directory, stopped when dropped. `EVA_DOCKER_REGISTRY` names another binary.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct LocalRegistry {
    child: Child,
    storage: tempfile::TempDir,
    /// `127.0.0.1:PORT`.
    pub host: String,
}

fn binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("EVA_DOCKER_REGISTRY") {
        return bin.into();
    }
    let found = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join("docker-registry")).find(|p| p.is_file()));
    found.unwrap_or_else(|| {
        panic!(
            "docker-registry is not installed (scripts/install-test-tools installs it; EVA_DOCKER_REGISTRY names one)"
        )
    })
}

impl LocalRegistry {
    /// Start a registry and wait until it answers `GET /v2/`.
    pub fn start() -> LocalRegistry {
        let storage = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let host = format!("127.0.0.1:{port}");
        let config = storage.path().join("config.yml");
        let data = storage.path().join("data");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    \
                 rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n",
                data.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(storage.path().join("registry.log")).unwrap();
        let child = Command::new(binary())
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting docker-registry");
        let registry = LocalRegistry { child, storage, host };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !registry.answers() {
            assert!(Instant::now() < deadline, "the registry did not start: {}", registry.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        registry
    }

    fn answers(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(&self.host) else { return false };
        let request = format!("GET /v2/ HTTP/1.0\r\nHost: {}\r\n\r\n", self.host);
        let mut response = String::new();
        stream.write_all(request.as_bytes()).is_ok()
            && stream.read_to_string(&mut response).is_ok()
            && response.starts_with("HTTP/1.0 200")
    }

    /// What the registry logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.storage.path().join("registry.log")).unwrap_or_default()
    }

    /// The file in which the registry keeps the blob (or manifest) with this digest.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
        self.storage.path().join("data/docker/registry/v2/blobs/sha256").join(&hex[..2]).join(hex).join("data")
    }

    pub fn storage(&self) -> &Path {
        self.storage.path()
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
