//! Write the tiny random models of every supported family that `tests/engine_families.rs`
//! checks, so that `tests/reference/transformers/families.py` can run them with
//! `transformers`: `cargo run --example tiny_families -- DIR`.

fn main() {
    let dir = std::env::args().nth(1).expect("usage: tiny_families DIR");
    for arch in eva::models::FAMILIES {
        println!("{}", eva::models::write_tiny_family(std::path::Path::new(&dir), arch).display());
    }
}
