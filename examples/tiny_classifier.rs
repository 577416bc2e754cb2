//! Write the tiny random reward model the classifier test scores, so that
//! `tests/reference/transformers/classifier.py` can score it with `transformers`:
//! `cargo run --example tiny_classifier -- DIR`.

fn main() {
    let dir = std::env::args().nth(1).expect("usage: tiny_classifier DIR");
    let path = eva_test_support::models::write_tiny_classifier(std::path::Path::new(&dir));
    println!("{}", path.display());
}
