//! Summaries of numbers that come from plugins and models: any finite input gives a
//! finite summary (a sum of huge values overflows; their mean does not).

/// The mean of `xs`; `None` when there are none or one is not finite.
pub fn mean(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() || !xs.iter().all(|x| x.is_finite()) {
        return None;
    }
    let n = xs.len() as f64;
    let plain = xs.iter().sum::<f64>() / n;
    // The plain sum keeps the usual rounding; only when it overflows is each term scaled first.
    Some(if plain.is_finite() { plain } else { xs.iter().map(|x| x / n).sum() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn means_of_huge_values_stay_finite() {
        assert_eq!(mean(&[1.0, 2.0, 4.0]), Some(7.0 / 3.0));
        assert_eq!(mean(&[1e308, 1e308, 1e308]), Some(1e308));
        assert_eq!(mean(&[f64::MAX, -f64::MAX]), Some(0.0));
        assert_eq!(mean(&[1e308; 1000]).map(f64::is_finite), Some(true));
        assert_eq!(mean(&[]), None);
        assert_eq!(mean(&[1.0, f64::NAN]), None);
    }
}
