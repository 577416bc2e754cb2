//! Headless Chromium, to check that HTML reports render: a screenshot's pixels and the DOM
//! as the browser parsed it. Chromium is required, not optional: `scripts/test` installs
//! Debian's `chromium`; `EVA_CHROMIUM` names another binary.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The browser binary; panics with how to get one.
pub fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("EVA_CHROMIUM") {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"] {
        if let Some(found) = std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file()) {
            return found;
        }
    }
    panic!("no Chromium found: install it (`apt-get install chromium`; scripts/test does) or set EVA_CHROMIUM");
}

/// A headless run that reads no network, writes no profile of the user's and needs no GPU.
fn headless(page: &Path, profile: &Path) -> Command {
    let mut cmd = Command::new(chromium());
    cmd.args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"])
        .args(["--disable-background-networking", "--disable-extensions", "--hide-scrollbars", "--mute-audio"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("file://{}", page.canonicalize().expect("the page exists").display()));
    cmd
}

/// A rendered page: `width` × `height` RGBA pixels.
pub struct Screenshot {
    pub width: u32,
    pub height: u32,
    pub rgba: Vec<u8>,
}

impl Screenshot {
    /// How many pixels are exactly `#rrggbb`.
    pub fn count(&self, hex: &str) -> usize {
        let byte = |i| u8::from_str_radix(&hex[i..i + 2], 16).expect("a #rrggbb color");
        let rgb = [byte(1), byte(3), byte(5)];
        self.rgba.chunks_exact(4).filter(|p| p[..3] == rgb).count()
    }
}

/// Render `page` in a `width` × `height` window.
pub fn screenshot(page: &Path, width: u32, height: u32) -> Screenshot {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let png_path = dir.path().join("page.png");
    let out = headless(page, &dir.path().join("profile"))
        .arg(format!("--screenshot={}", png_path.display()))
        .arg(format!("--window-size={width},{height}"))
        .output()
        .expect("chromium runs");
    assert!(png_path.is_file(), "chromium wrote no screenshot: {}", String::from_utf8_lossy(&out.stderr));
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png_path).expect("the png")));
    let mut reader = decoder.read_info().expect("a png");
    let mut buf = vec![0; reader.output_buffer_size().expect("a size")];
    let info = reader.next_frame(&mut buf).expect("a frame");
    buf.truncate(info.buffer_size());
    let rgba = match info.color_type {
        png::ColorType::Rgba => buf,
        png::ColorType::Rgb => buf.chunks_exact(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect(),
        other => panic!("unexpected screenshot format {other:?}"),
    };
    Screenshot { width: info.width, height: info.height, rgba }
}

/// The DOM after Chromium parsed `page`, serialised.
pub fn dom(page: &Path) -> String {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let out = headless(page, &dir.path().join("profile")).arg("--dump-dom").output().expect("chromium runs");
    assert!(out.status.success(), "chromium --dump-dom failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8 DOM")
}
