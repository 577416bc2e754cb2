//! The plugin contract as this binary knows it: the WIT package `eva:plugin`, for
//! authors' tools (componentize-py, componentize-js, wit-bindgen), and C bindings
//! generated from it, so that a C plugin needs only eva-host and clang.

use std::path::{Path, PathBuf};

use wit_bindgen_core::wit_parser::Resolve;

use crate::BuildError;

/// The files of the WIT package, by name.
pub const WIT_FILES: [(&str, &str); 4] = [
    ("types.wit", include_str!("../../../wit/types.wit")),
    ("host.wit", include_str!("../../../wit/host.wit")),
    ("roles.wit", include_str!("../../../wit/roles.wit")),
    ("worlds.wit", include_str!("../../../wit/worlds.wit")),
];

/// Write the WIT package into `dir`.
pub fn write_wit(dir: &Path) -> Result<Vec<PathBuf>, BuildError> {
    std::fs::create_dir_all(dir).map_err(|source| BuildError::Write { path: dir.to_owned(), source })?;
    WIT_FILES
        .iter()
        .map(|(name, text)| {
            let path = dir.join(name);
            crate::write_atomic(&path, text.as_bytes())?;
            Ok(path)
        })
        .collect()
}

/// Generate wit-bindgen's C bindings of `world` (`WORLD.h`, `WORLD.c` and
/// `WORLD_component_type.o`, the object that carries the world's type into the core
/// module) into `out_dir`.
pub fn c_bindings(world: &str, out_dir: &Path) -> Result<Vec<PathBuf>, BuildError> {
    let err = |reason: String| BuildError::Bindings { world: world.to_owned(), reason };
    let wit = tempfile::tempdir().map_err(|e| err(e.to_string()))?;
    write_wit(wit.path())?;
    let mut resolve = Resolve::default();
    let (package, _) = resolve.push_dir(wit.path()).map_err(|e| err(format!("{e:#}")))?;
    let id = resolve.select_world(&[package], Some(world)).map_err(|e| err(format!("{e:#}")))?;
    let mut files = wit_bindgen_core::Files::default();
    wit_bindgen_c::Opts::default().build().generate(&mut resolve, id, &mut files).map_err(|e| err(format!("{e:#}")))?;
    std::fs::create_dir_all(out_dir).map_err(|source| BuildError::Write { path: out_dir.to_owned(), source })?;
    files
        .iter()
        .map(|(name, bytes)| {
            let path = out_dir.join(name);
            crate::write_atomic(&path, bytes)?;
            Ok(path)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_bindings_of_every_world_are_generated() {
        let dir = tempfile::tempdir().unwrap();
        for world in ["info-metric", "sampler", "evolver", "pairing", "reward"] {
            let files = c_bindings(world, dir.path()).unwrap();
            let names: Vec<String> =
                files.iter().map(|f| f.file_name().unwrap().to_string_lossy().into_owned()).collect();
            let stem = world.replace('-', "_");
            for want in [format!("{stem}.h"), format!("{stem}.c"), format!("{stem}_component_type.o")] {
                assert!(names.contains(&want), "{world}: {names:?}");
            }
        }
        let err = c_bindings("no-such-world", dir.path()).unwrap_err().to_string();
        assert!(err.contains("no-such-world"), "{err}");
    }
}
