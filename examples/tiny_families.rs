//! Write the tiny random models of every supported family that
//! `testing/tests/integration/engine_families.rs` checks, so that
//! `tests/reference/transformers/families.py` can run them with `transformers`:
//! `cargo run --example tiny_families -- DIR`.

fn main() {
    let dir = std::env::args().nth(1).expect("usage: tiny_families DIR");
    for arch in eva_test_support::models::FAMILIES {
        println!("{}", eva_test_support::models::write_tiny_family(std::path::Path::new(&dir), arch).display());
    }
}
