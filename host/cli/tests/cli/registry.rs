//! Plugins through a real OCI registry (Debian's `docker-registry` on loopback):
//! published with `eva-host plugin publish`, pulled by tag and by digest into fresh
//! caches, run by the host, and refused when unsigned, signed by a stranger, tampered
//! with in the registry, or named by a digest the registry's bytes do not have.

use std::path::Path;
use std::process::{Command, Output};

use eva_test_support::registry::LocalRegistry;

/// `eva-host ARGS` with its own plugin cache; (success, stdout, stderr).
fn eva(cache: &Path, args: &[&str]) -> (bool, String, String) {
    let Output { status, stdout, stderr } = Command::new(env!("CARGO_BIN_EXE_eva-host"))
        .args(args)
        .env("EVA_CACHE_DIR", cache)
        .env_remove("EVA_REGISTRY_USERNAME")
        .output()
        .unwrap();
    (
        status.success(),
        String::from_utf8_lossy(&stdout).trim().to_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

fn ok(cache: &Path, args: &[&str]) -> String {
    let (ok, out, err) = eva(cache, args);
    assert!(ok, "eva-host {} failed: {err}", args.join(" "));
    out
}

fn refused(cache: &Path, args: &[&str]) -> String {
    let (ok, out, err) = eva(cache, args);
    assert!(!ok, "eva-host {} should have failed: {out}", args.join(" "));
    err
}

fn sha256(bytes: &[u8]) -> String {
    eva_plugin_registry::sha256_digest(bytes)
}

/// Score three rows with a reward plugin; the rewards.
fn score(dir: &Path, cache: &Path, plugin: &str, extra: &[&str]) -> Vec<f64> {
    let rows = dir.join("rows.jsonl");
    std::fs::write(
        &rows,
        concat!(
            r#"{"prompt": "Where is the Louvre?", "response": "In Paris."}"#,
            "\n",
            r#"{"prompt": "Where is the Louvre?", "response": "It is a museum in Paris, France, by the Seine."}"#,
            "\n"
        ),
    )
    .unwrap();
    let out = dir.join("scored.jsonl");
    let (rows, out) = (rows.to_str().unwrap(), out.to_str().unwrap());
    let args = ["score", "--input", rows, "--output", out, "--reward", "plugin", "--reward-plugin", plugin];
    let args = [&args[..], &["--plugin-config", "rule-reward.max-words=4"], extra].concat();
    ok(cache, &args);
    let text = std::fs::read_to_string(out).unwrap();
    text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["reward"].as_f64().unwrap()).collect()
}

#[test]
fn a_published_plugin_is_pulled_verified_and_run_and_tampering_is_refused() {
    let registry = LocalRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let cache = |name: &str| dir.path().join(name);
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let component = eva_test_support::component("eva-plugin-rule-reward");
    let bytes = std::fs::read(&component).unwrap();
    let file = component.to_str().unwrap();
    let repo = format!("oci://{}/eva/rule-reward", registry.host);

    // Keys: ours, and a stranger's.
    let keys = ok(&cache("keys"), &["plugin", "keygen", "--out", &path("ours")]);
    assert_eq!(keys.lines().count(), 2, "{keys}");
    ok(&cache("keys"), &["plugin", "keygen", "--out", &path("theirs")]);
    let (ours, theirs) = (path("ours.key"), path("theirs.key"));
    let trusted = path("ours.pub");

    let pinned = ok(&cache("publisher"), &["plugin", "publish", file, &format!("{repo}:v1"), "--sign", &ours]);
    assert!(pinned.starts_with(&format!("{repo}@sha256:")), "{pinned}");
    let unsigned = ok(&cache("publisher"), &["plugin", "publish", file, &format!("{repo}:unsigned")]);
    let stranger =
        ok(&cache("publisher"), &["plugin", "publish", file, &format!("{repo}:stranger"), "--sign", &theirs]);

    // By tag, into a fresh cache: the same bytes, with the plugin's metadata.
    let inspect = ok(&cache("by-tag"), &["plugin", "inspect", &format!("{repo}:v1")]);
    assert!(inspect.contains("plugin:      rule-reward"), "{inspect}");
    assert!(inspect.contains(&format!("sha256:      {}", &sha256(&bytes)[7..])), "{inspect}");

    // By digest, into another fresh cache, with the signature required; then run.
    let pulled = ok(&cache("by-digest"), &["plugin", "pull", &pinned, "--require-signed", &trusted]);
    assert_eq!(std::fs::read(&pulled).unwrap(), bytes, "the cached component is the published one");
    let local = score(dir.path(), &cache("local"), file, &[]);
    let remote = score(dir.path(), &cache("by-digest"), &pinned, &["--require-signed", &trusted]);
    assert_eq!(local, [1.0, 0.4]);
    assert_eq!(remote, local, "the pulled plugin runs and scores as the file does");

    // Signatures: missing, by a key not trusted, and required of a local file.
    let err = refused(&cache("strict"), &["plugin", "pull", &unsigned, "--require-signed", &trusted]);
    assert!(err.contains("the plugin is not signed"), "{err}");
    let err = refused(&cache("strict"), &["plugin", "pull", &stranger, "--require-signed", &trusted]);
    assert!(err.contains("which is not among the trusted keys"), "{err}");
    let err = refused(&cache("strict"), &["plugin", "inspect", file, "--require-signed", &trusted]);
    assert!(err.contains("a local file carries no signature"), "{err}");
    // Any of several trusted keys will do.
    let both = ["--require-signed", &trusted, "--require-signed", &path("theirs.pub")];
    ok(&cache("strict"), &[&["plugin", "pull", &stranger][..], &both].concat());

    // A digest the registry holds no manifest for.
    let wrong = format!("{repo}@{}", sha256(b"not a manifest"));
    let err = refused(&cache("wrong"), &["plugin", "pull", &wrong]);
    assert!(err.contains(&wrong), "{err}");

    // The registry's copy of the manifest replaced by another one: the bytes served for
    // the pinned digest no longer hash to it.
    let pinned_digest = pinned.rsplit_once('@').unwrap().1;
    let unsigned_digest = unsigned.rsplit_once('@').unwrap().1;
    let manifest_file = registry.blob_file(pinned_digest);
    let original_manifest = std::fs::read(&manifest_file).unwrap();
    std::fs::copy(registry.blob_file(unsigned_digest), &manifest_file).unwrap();
    let err = refused(&cache("tampered-manifest"), &["plugin", "pull", &pinned]);
    assert!(err.contains("digest") && err.contains(pinned_digest), "{err}");
    std::fs::write(&manifest_file, original_manifest).unwrap();

    // The component blob altered in the registry: refused, and nothing is cached.
    let blob = registry.blob_file(&sha256(&bytes));
    let mut altered = bytes.clone();
    *altered.last_mut().unwrap() ^= 1;
    std::fs::write(&blob, &altered).unwrap();
    let err = refused(&cache("tampered-blob"), &["plugin", "pull", &format!("{repo}:v1")]);
    assert!(err.contains("does not match its digest") && err.contains("refused"), "{err}");
    let kept = std::fs::read_dir(cache("tampered-blob").join("oci/components")).map_or(0, |d| d.count());
    assert_eq!(kept, 0, "a refused component is not cached");

    // A pull by digest that is cached needs no registry; a damaged cache entry is not used.
    drop(registry);
    let again = ok(&cache("by-digest"), &["plugin", "pull", &pinned, "--require-signed", &trusted]);
    assert_eq!(again, pulled);
    std::fs::write(&pulled, &altered).unwrap();
    let err = refused(&cache("by-digest"), &["plugin", "pull", &pinned]);
    assert!(err.contains("pulling") && err.contains(&pinned), "{err}");
}
