//! The layout of a plugin in a registry: a Wasm OCI artifact (config
//! `application/vnd.wasm.config.v0+json`, one `application/wasm` layer holding the
//! component), as the CNCF Wasm artifact guidance and `wkg oci` lay it out, with the
//! plugin's metadata as manifest annotations.

use std::collections::BTreeMap;

use oci_client::manifest::{OciDescriptor, OciImageManifest};
use serde::Serialize;

use crate::sha256_digest;

pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
pub const LAYER_MEDIA_TYPE: &str = "application/wasm";

/// The largest component eva pulls: a registry cannot make it buffer more.
pub const MAX_COMPONENT_BYTES: usize = 512 << 20;

/// The plugin's role (`info-metric`, `sampler`, ...).
pub const ANNOTATION_ROLE: &str = "dev.eva.plugin.role";
/// The `eva:plugin` WIT version the plugin was built against.
pub const ANNOTATION_WIT: &str = "dev.eva.plugin.wit";

/// What a published plugin says about itself; it becomes the manifest's annotations and
/// the Wasm config's import and export lists.
#[derive(Debug, Clone, Default)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub description: String,
    pub role: String,
    pub wit: String,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
}

/// The Wasm artifact config (`application/vnd.wasm.config.v0+json`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WasmConfig<'a> {
    created: &'a str,
    architecture: &'static str,
    os: &'static str,
    layer_digests: [&'a str; 1],
    component: Component<'a>,
}

#[derive(Serialize)]
struct Component<'a> {
    exports: &'a [String],
    imports: &'a [String],
}

/// A plugin ready to push: the bytes of each part and their digests.
pub(crate) struct Artifact {
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
    pub layer_digest: String,
}

impl Artifact {
    /// Lay out `component` with `info` and any `extra` annotations (a signature).
    pub fn new(component: &[u8], info: &PluginInfo, extra: BTreeMap<String, String>) -> Artifact {
        let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let layer_digest = sha256_digest(component);
        let config = WasmConfig {
            created: &created,
            architecture: "wasm",
            // Components are `wasip2` in this layout whether or not they import WASI.
            os: "wasip2",
            layer_digests: [&layer_digest],
            component: Component { exports: &info.exports, imports: &info.imports },
        };
        let config = serde_json::to_vec(&config).expect("the config serialises");
        let mut annotations = BTreeMap::from([
            ("org.opencontainers.image.title".to_owned(), info.name.clone()),
            ("org.opencontainers.image.version".to_owned(), info.version.clone()),
            ("org.opencontainers.image.description".to_owned(), info.description.clone()),
            ("org.opencontainers.image.created".to_owned(), created.clone()),
            (ANNOTATION_ROLE.to_owned(), info.role.clone()),
            (ANNOTATION_WIT.to_owned(), info.wit.clone()),
        ]);
        annotations.extend(extra);
        let manifest = OciImageManifest {
            media_type: Some(MANIFEST_MEDIA_TYPE.to_owned()),
            config: descriptor(CONFIG_MEDIA_TYPE, &config),
            layers: vec![descriptor(LAYER_MEDIA_TYPE, component)],
            annotations: Some(annotations),
            ..OciImageManifest::default()
        };
        let manifest = serde_json::to_vec(&manifest).expect("the manifest serialises");
        Artifact { manifest_digest: sha256_digest(&manifest), manifest, config, layer_digest }
    }
}

fn descriptor(media_type: &str, bytes: &[u8]) -> OciDescriptor {
    OciDescriptor {
        media_type: media_type.to_owned(),
        digest: sha256_digest(bytes),
        size: bytes.len() as i64,
        ..OciDescriptor::default()
    }
}

/// A pulled manifest, checked to be a plugin: its component's descriptor and annotations.
#[derive(Debug)]
pub(crate) struct PluginManifest {
    pub layer: OciDescriptor,
    pub annotations: BTreeMap<String, String>,
}

impl PluginManifest {
    /// Parse `bytes` as an image manifest holding one Wasm layer; the reason when not.
    pub fn parse(bytes: &[u8]) -> Result<PluginManifest, String> {
        let manifest: OciImageManifest =
            serde_json::from_slice(bytes).map_err(|e| format!("its manifest is not an OCI image manifest: {e}"))?;
        if manifest.config.media_type != CONFIG_MEDIA_TYPE {
            return Err(format!(
                "its config is `{}`, not a Wasm artifact's `{CONFIG_MEDIA_TYPE}`",
                manifest.config.media_type
            ));
        }
        let [layer] = <[OciDescriptor; 1]>::try_from(manifest.layers)
            .map_err(|layers| format!("it has {} layers; a plugin has one", layers.len()))?;
        if layer.media_type != LAYER_MEDIA_TYPE {
            return Err(format!("its layer is `{}`, not `{LAYER_MEDIA_TYPE}`", layer.media_type));
        }
        crate::reference::check_digest(&layer.digest)?;
        if !(1..=MAX_COMPONENT_BYTES as i64).contains(&layer.size) {
            return Err(format!(
                "its component is declared as {} bytes; eva takes 1 byte to {} MiB",
                layer.size,
                MAX_COMPONENT_BYTES >> 20
            ));
        }
        Ok(PluginManifest { layer, annotations: manifest.annotations.unwrap_or_default() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_laid_out_plugin_parses_back() {
        let info = PluginInfo { name: "gap".into(), role: "info-metric".into(), ..PluginInfo::default() };
        let extra = BTreeMap::from([("dev.eva.plugin.signature".to_owned(), "sig".to_owned())]);
        let artifact = Artifact::new(b"\0asm component", &info, extra);
        let parsed = PluginManifest::parse(&artifact.manifest).unwrap();
        assert_eq!(parsed.layer.digest, sha256_digest(b"\0asm component"));
        assert_eq!(parsed.layer.digest, artifact.layer_digest);
        assert_eq!(parsed.annotations["org.opencontainers.image.title"], "gap");
        assert_eq!(parsed.annotations[ANNOTATION_ROLE], "info-metric");
        assert_eq!(parsed.annotations["dev.eva.plugin.signature"], "sig");
        let config: serde_json::Value = serde_json::from_slice(&artifact.config).unwrap();
        assert_eq!(config["layerDigests"][0], artifact.layer_digest.as_str());
        assert_eq!(config["architecture"], "wasm");
    }

    #[test]
    fn other_artifacts_are_refused() {
        let image = r#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json",
            "digest":"sha256:00","size":1},"layers":[]}"#;
        assert!(PluginManifest::parse(image.as_bytes()).unwrap_err().contains("not a Wasm artifact"));
        assert!(PluginManifest::parse(b"<html>").unwrap_err().contains("not an OCI image manifest"));
        let huge = Artifact::new(b"\0asm", &PluginInfo::default(), BTreeMap::new()).manifest;
        let huge = String::from_utf8(huge).unwrap().replace(r#""size":4"#, r#""size":9999999999"#);
        assert!(PluginManifest::parse(huge.as_bytes()).unwrap_err().contains("declared as 9999999999 bytes"));
    }
}
