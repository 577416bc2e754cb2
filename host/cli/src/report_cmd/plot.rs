//! Line charts as inline SVG (plotters, without system fonts), for the HTML report.
//!
//! Metrics can hold anything a plugin or a diverging run writes: ±1e308, where `max - min`
//! overflows to infinity, or values a few ulps apart. plotters' own f64 axis searches for its
//! tick step in a loop that never ends on an infinite or too narrow range, so the charts use
//! [`Axis`]: a finite range that is never too narrow for its magnitude, a closed-form tick
//! step and a bounded number of ticks. Non-finite values are not drawn; the title counts them.

use std::ops::Range;

use plotters::coord::ranged1d::{KeyPointHint, NoDefaultFormatting, Ranged, ValueFormatter};
use plotters::prelude::*;

/// One line, drawn with points so that a single value still shows.
pub struct Series {
    pub name: String,
    /// `#rrggbb`.
    pub color: &'static str,
    pub points: Vec<(f64, f64)>,
    /// A shaded range around the line: (x, low, high).
    pub band: Vec<(f64, f64, f64)>,
}

pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// x values where a dashed vertical line marks a boundary (a new iteration).
    pub markers: Vec<f64>,
}

fn rgb(hex: &str) -> RGBColor {
    let byte = |i| u8::from_str_radix(&hex[i..i + 2], 16).expect("a #rrggbb color");
    RGBColor(byte(1), byte(3), byte(5))
}

/// The narrowest axis, relative to the magnitude of its ends: a range of a few ulps cannot be
/// split into ticks (or pixels), so it is widened around its middle to this.
const MIN_RELATIVE_WIDTH: f64 = 1e-9;
/// The narrowest axis in absolute terms (values this close to zero are zero on a chart).
const MIN_WIDTH: f64 = 1e-300;
/// No hint asks for more ticks than this.
const MAX_TICKS: usize = 1000;

/// The range of `values` (non-finite ones ignored), padded so that a constant still spans;
/// always finite, with `start < end`, and wide enough for its magnitude.
fn span(values: impl Iterator<Item = f64>, pad: f64) -> Range<f64> {
    let (lo, hi) =
        values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    let margin = if hi > lo {
        let width = hi - lo;
        // `hi - lo` overflows for ends like ±1e308; their halves do not.
        if width.is_finite() { width * pad } else { (hi / 2.0 - lo / 2.0) * (2.0 * pad) }
    } else {
        lo.abs().max(1.0) * 0.5
    };
    let (lo, hi) = ((lo - margin).max(f64::MIN), (hi + margin).min(f64::MAX));
    let half = hi / 2.0 - lo / 2.0;
    let min_half = (lo.abs().max(hi.abs()) * MIN_RELATIVE_WIDTH).max(MIN_WIDTH) / 2.0;
    if half >= min_half {
        return lo..hi;
    }
    // Widened around the middle, or inwards from the end of the floats.
    let mid = lo / 2.0 + hi / 2.0;
    if mid + min_half > f64::MAX {
        f64::MAX - 2.0 * min_half..f64::MAX
    } else if mid - min_half < f64::MIN {
        f64::MIN..f64::MIN + 2.0 * min_half
    } else {
        mid - min_half..mid + min_half
    }
}

/// The tick step for at most `max` ticks over a range of half-width `half`, as `(m, e)`
/// with the step `m·10^e`, m in {1, 2, 5}; computed in closed form (no search), `None`
/// where the step would not be a positive finite number.
fn tick_step(half: f64, max: usize) -> Option<(f64, i32)> {
    if !(half > 0.0 && half.is_finite()) || max == 0 {
        return None;
    }
    let intervals = max.saturating_sub(1).max(1) as f64;
    // log10 of the smallest step that leaves at most `max` ticks: 2·half / intervals.
    let target = half.log10() + std::f64::consts::LOG10_2 - intervals.log10();
    let e = target.floor();
    let f = 10f64.powf(target - e);
    let (m, e) = match [1.0, 2.0, 5.0].into_iter().find(|&m| m >= f) {
        Some(m) => (m, e),
        None => (1.0, e + 1.0),
    };
    let e = e.clamp(-400.0, 400.0) as i32;
    let step = m * pow10(e);
    (step.is_finite() && step > 0.0).then_some((m, e))
}

/// 10^e, correctly rounded (`powi` can be an ulp off: 1e308 should be 1e308).
fn pow10(e: i32) -> f64 {
    format!("1e{e}").parse().expect("a float")
}

/// `k·m·10^e`, divided rather than multiplied for negative `e` so that 0.3 is 0.3.
fn tick_value(k: f64, m: f64, e: i32) -> f64 {
    let v = if (-300..0).contains(&e) { k * m / pow10(-e) } else { k * (m * pow10(e)) };
    v + 0.0 // no -0
}

/// A linear axis over a finite range ([`span`]'s), with bounded ticks and labels that
/// stay short at any magnitude.
#[derive(Clone, Debug)]
struct Axis {
    lo: f64,
    hi: f64,
    /// How many labels the chart asks for: the step the labels are formatted for.
    labels: usize,
}

impl Axis {
    fn new(range: Range<f64>, labels: usize) -> Self {
        Axis { lo: range.start, hi: range.end, labels }
    }

    fn half_width(&self) -> f64 {
        self.hi / 2.0 - self.lo / 2.0
    }

    fn contains(&self, v: f64) -> bool {
        self.lo <= v && v <= self.hi
    }

    /// The finest round step, `(m, e)` for `m·10^e`, that puts at most `max` ticks on the
    /// axis: [`tick_step`]'s bound, then at most three finer candidates.
    fn step(&self, max: usize) -> Option<(f64, i32)> {
        let (mut m, mut e) = tick_step(self.half_width(), max)?;
        for _ in 0..3 {
            let (fm, fe) = if m == 5.0 {
                (2.0, e)
            } else if m == 2.0 {
                (1.0, e)
            } else {
                (5.0, e - 1)
            };
            let step = fm * pow10(fe);
            let count = (self.hi / step).floor() - (self.lo / step).ceil() + 1.0;
            if !(step > 0.0 && count <= max as f64) {
                break;
            }
            (m, e) = (fm, fe);
        }
        Some((m, e))
    }

    /// At most `max` (and [`MAX_TICKS`]) round values inside the axis, increasing.
    fn ticks(&self, max: usize) -> Vec<f64> {
        let max = max.min(MAX_TICKS);
        let (lo, hi) = (self.lo, self.hi);
        if max == 0 || !(lo.is_finite() && hi.is_finite() && lo <= hi) {
            return vec![];
        }
        let Some((m, e)) = self.step(max) else {
            // A single value, or a range too wide for even one power of ten between ticks.
            return vec![if self.contains(0.0) { 0.0 } else { lo / 2.0 + hi / 2.0 }];
        };
        let step = m * pow10(e);
        let (first, last) = ((lo / step).ceil(), (hi / step).floor());
        if first.is_nan() || last.is_nan() || first > last {
            return vec![];
        }
        let count = (last - first + 1.0).min(max as f64) as usize;
        let mut out: Vec<f64> = Vec::with_capacity(count);
        for i in 0..count {
            let v = tick_value(first + i as f64, m, e);
            if self.contains(v) && out.last().is_none_or(|&prev| v > prev) {
                out.push(v);
            }
        }
        out
    }

    /// A tick's label: fixed-point with the decimals of the tick step, or scientific
    /// notation with the digits the step needs where the axis is huge or tiny.
    fn label(&self, v: f64) -> String {
        if !v.is_finite() {
            return String::new();
        }
        let v = v + 0.0;
        if v == 0.0 {
            return "0".into();
        }
        let e = self.step(self.labels.max(2)).map_or(0, |(_, e)| e);
        let magnitude = self.lo.abs().max(self.hi.abs());
        if !(1e-4..1e6).contains(&magnitude) {
            let digits = (v.abs().log10().floor() as i32 - e).clamp(0, 15) as usize;
            format!("{v:.digits$e}")
        } else {
            let decimals = (-e).clamp(0, 15) as usize;
            format!("{v:.decimals$}")
        }
    }
}

impl Ranged for Axis {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let half = self.half_width();
        // (v - lo) / (hi - lo), in halves that cannot overflow; values off the axis land
        // just past its edge rather than at ±2^31 pixels.
        let t = if half > 0.0 { (v / 2.0 - self.lo / 2.0) / half } else { 0.5 };
        let t = if t.is_nan() { 0.5 } else { t.clamp(-1.0, 2.0) };
        let length = f64::from(limit.1) - f64::from(limit.0);
        let offset = if length >= 0.0 { (length * t + 1e-3).floor() } else { (length * t - 1e-3).ceil() };
        (f64::from(limit.0) + offset) as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        self.ticks(hint.max_num_points())
    }

    fn range(&self) -> Range<f64> {
        self.lo..self.hi
    }
}

impl ValueFormatter<f64> for Axis {
    fn format(value: &f64) -> String {
        value.to_string()
    }

    fn format_ext(&self, value: &f64) -> String {
        self.label(*value)
    }
}

const X_LABELS: usize = 8;
const Y_LABELS: usize = 6;

impl Chart {
    /// The chart as an `<svg>` element, `width` × `height` pixels.
    pub fn svg(&self, width: u32, height: u32) -> Result<String, String> {
        let mut out = String::new();
        self.draw(&mut out, (width, height)).map_err(|e| format!("drawing `{}`: {e}", self.title))?;
        Ok(out)
    }

    /// How many values cannot be drawn (NaN, ±inf): points and band ends.
    fn non_finite(&self) -> usize {
        let points = self.series.iter().flat_map(|s| s.points.iter().flat_map(|p| [p.0, p.1]));
        let bands = self.series.iter().flat_map(|s| s.band.iter().flat_map(|b| [b.0, b.1, b.2]));
        points.chain(bands).filter(|v| !v.is_finite()).count()
    }

    fn draw(&self, out: &mut String, size: (u32, u32)) -> Result<(), Box<dyn std::error::Error + '_>> {
        let finite = |&&(x, y): &&(f64, f64)| x.is_finite() && y.is_finite();
        let finite_band = |&&(x, lo, hi): &&(f64, f64, f64)| x.is_finite() && lo.is_finite() && hi.is_finite();
        let xs = self.series.iter().flat_map(|s| s.points.iter().map(|p| p.0).chain(s.band.iter().map(|b| b.0)));
        let ys =
            self.series.iter().flat_map(|s| s.points.iter().map(|p| p.1).chain(s.band.iter().flat_map(|b| [b.1, b.2])));
        let (x_axis, y_axis) = (Axis::new(span(xs, 0.05), X_LABELS), Axis::new(span(ys, 0.1), Y_LABELS));
        let caption = match self.non_finite() {
            0 => self.title.clone(),
            1 => format!("{} (1 non-finite value not drawn)", self.title),
            n => format!("{} ({n} non-finite values not drawn)", self.title),
        };
        // Iterations and steps are whole numbers: other ticks stay unlabelled.
        let x_format = {
            let x_axis = x_axis.clone();
            move |x: &f64| {
                if x.fract() != 0.0 {
                    String::new()
                } else if x.abs() < 1e15 {
                    format!("{x:.0}")
                } else {
                    x_axis.label(*x)
                }
            }
        };
        let root = SVGBackend::with_string(out, size).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(&caption, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(x_axis.clone(), y_axis)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .x_desc(self.x_label.as_str())
            .y_desc(self.y_label.as_str())
            .x_labels(X_LABELS)
            .x_label_formatter(&x_format)
            .y_labels(Y_LABELS)
            .draw()?;
        let (y0, y1) = (chart.y_range().start, chart.y_range().end);
        for &x in self.markers.iter().filter(|&&x| x_axis.contains(x)) {
            chart.draw_series(DashedLineSeries::new([(x, y0), (x, y1)], 4, 4, BLACK.mix(0.3).into()))?;
        }
        for s in &self.series {
            let color = rgb(s.color);
            let band: Vec<(f64, f64, f64)> = s.band.iter().filter(finite_band).copied().collect();
            if !band.is_empty() {
                let upper = band.iter().map(|b| (b.0, b.2));
                let lower = band.iter().rev().map(|b| (b.0, b.1));
                chart.draw_series(std::iter::once(Polygon::new(
                    upper.chain(lower).collect::<Vec<_>>(),
                    color.mix(0.15),
                )))?;
            }
            let points: Vec<(f64, f64)> = s.points.iter().filter(finite).copied().collect();
            chart
                .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))?
                .label(s.name.as_str())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2)));
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
        }
        if self.series.len() > 1 {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.3))
                .position(SeriesLabelPosition::UpperRight)
                .draw()?;
        }
        root.present()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn chart(points: Vec<(f64, f64)>, band: Vec<(f64, f64, f64)>, markers: Vec<f64>) -> Chart {
        Chart {
            title: "t".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            series: vec![Series { name: "s".into(), color: "#1f77b4", points, band }],
            markers,
        }
    }

    #[test]
    fn a_single_point_still_draws_in_its_color() {
        let svg = chart(vec![(1.0, 2.0)], vec![], vec![]).svg(300, 200).unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("<circle") && svg.to_lowercase().contains("#1f77b4"), "{svg}");
    }

    #[test]
    fn spans_ignore_non_finite_values_and_widen_constants() {
        assert_eq!(span([2.0, f64::NAN].into_iter(), 0.1), 1.0..3.0);
        assert_eq!(span(std::iter::empty(), 0.1), 0.0..1.0);
        let r = span([0.0, 10.0].into_iter(), 0.1);
        assert_eq!(r, -1.0..11.0);
    }

    const MAX: f64 = f64::MAX;

    /// Values that broke (or could break) the axis: ranges whose width overflows, huge
    /// constants, single points, ranges of a few ulps, subnormals.
    fn extreme_cases() -> Vec<Vec<f64>> {
        vec![
            vec![1e308, -1e308],
            vec![MAX, -MAX],
            vec![MAX, MAX],
            vec![-MAX],
            vec![1e308, 1e308, 1e308],
            vec![0.0, 1e308],
            vec![1.0, 1.0 + f64::EPSILON],
            vec![1e300, 1e300 * (1.0 + 4.0 * f64::EPSILON)],
            vec![MAX, MAX - 1e292],
            vec![-1e-310, 5e-324],
            vec![5e-324],
            vec![0.0],
            vec![1e-300, 2e-300],
            vec![-3.5, 2.25, 1.0],
        ]
    }

    #[test]
    fn spans_are_finite_ordered_and_wide_enough_for_any_finite_values() {
        for values in extreme_cases() {
            let r = span(values.iter().copied(), 0.1);
            assert!(r.start.is_finite() && r.end.is_finite() && r.start < r.end, "{values:?}: {r:?}");
            assert!(values.iter().all(|v| r.contains(v) || *v == r.end), "{values:?}: {r:?}");
            let magnitude = r.start.abs().max(r.end.abs());
            let half = r.end / 2.0 - r.start / 2.0;
            assert!(half * 2.0 >= magnitude * MIN_RELATIVE_WIDTH * 0.99, "{values:?}: {r:?} is too narrow");
        }
    }

    #[test]
    fn ticks_are_few_increasing_and_inside_the_axis() {
        let mut axes: Vec<Axis> = extreme_cases().iter().map(|v| Axis::new(span(v.iter().copied(), 0.1), 6)).collect();
        // Axes built by hand, not through `span`.
        axes.extend(
            [(-MAX, MAX), (0.0, 0.0), (1.0, 1.0 + f64::EPSILON), (0.0, 5e-324), (0.1, 0.9)].map(|(lo, hi)| Axis {
                lo,
                hi,
                labels: 6,
            }),
        );
        for axis in &axes {
            for max in [0, 1, 2, 3, 6, 8, 80, 100_000] {
                let ticks = axis.ticks(max);
                assert!(ticks.len() <= max.min(MAX_TICKS), "{axis:?} {max}: {ticks:?}");
                assert!(ticks.iter().all(|t| t.is_finite() && axis.contains(*t)), "{axis:?} {max}: {ticks:?}");
                assert!(ticks.windows(2).all(|w| w[0] < w[1]), "{axis:?} {max}: {ticks:?}");
                // Two ticks at least on an axis that is wide enough for its magnitude.
                let magnitude = axis.lo.abs().max(axis.hi.abs());
                let wide = axis.half_width() * 2.0 >= (magnitude * MIN_RELATIVE_WIDTH).max(MIN_WIDTH) * 0.99;
                if max >= 6 && wide {
                    assert!(ticks.len() >= 2, "{axis:?} {max}: {ticks:?}");
                }
            }
        }
        assert_eq!(Axis { lo: -MAX, hi: MAX, labels: 6 }.ticks(6), [-1e308, 0.0, 1e308]);
        assert_eq!(Axis { lo: 0.05, hi: 0.95, labels: 6 }.ticks(6), [0.2, 0.4, 0.6, 0.8]);
        assert_eq!(Axis { lo: -1.0, hi: 11.0, labels: 6 }.ticks(6), [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(Axis { lo: -1.0, hi: 11.0, labels: 6 }.ticks(5), [0.0, 5.0, 10.0]);
    }

    #[test]
    fn labels_stay_short_at_any_magnitude() {
        let huge = Axis::new(span([1e308, -1e308].into_iter(), 0.1), 6);
        let labels: Vec<String> = huge.ticks(6).into_iter().map(|t| huge.label(t)).collect();
        assert_eq!(labels, ["-1.0e308", "-5e307", "0", "5e307", "1.0e308"]);
        let unit = Axis { lo: 0.05, hi: 0.95, labels: 6 };
        assert_eq!(unit.ticks(6).into_iter().map(|t| unit.label(t)).collect::<Vec<_>>(), ["0.2", "0.4", "0.6", "0.8"]);
        let narrow = Axis::new(span([1e10, 1e10 + 1.0].into_iter(), 0.1), 6);
        let labels: Vec<String> = narrow.ticks(6).into_iter().map(|t| narrow.label(t)).collect();
        assert!(labels.len() >= 2 && labels.iter().all(|l| l.len() < 20), "{labels:?}");
        assert!(labels.windows(2).all(|w| w[0] != w[1]), "ticks must read apart: {labels:?}");
    }

    #[test]
    fn points_map_inside_the_plot_whatever_their_size() {
        let axis = Axis::new(span([1e308, -1e308].into_iter(), 0.1), 6);
        assert_eq!(axis.map(&axis.lo, (0, 500)), 0);
        assert_eq!(axis.map(&axis.hi, (0, 500)), 500);
        assert_eq!(axis.map(&0.0, (0, 500)), 250);
        assert_eq!(axis.map(&axis.hi, (300, 10)), 10);
        // Off the axis or not a number: near the plot, never at ±2^31 pixels.
        assert_eq!(axis.map(&f64::INFINITY, (0, 500)), 1000);
        assert_eq!(axis.map(&f64::NAN, (0, 500)), 250);
    }

    /// Draws each chart on its own thread and fails, rather than hanging the test run,
    /// when one does not finish within a generous deadline (the axis used to loop forever
    /// on ranges like 1e308 to -1e308).
    fn draw_all_within(charts: Vec<(String, Chart)>, deadline: Duration) -> Vec<(String, String)> {
        let (tx, rx) = std::sync::mpsc::channel();
        let names: Vec<String> = charts.iter().map(|(name, _)| name.clone()).collect();
        for (name, chart) in charts {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let svg = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| chart.svg(600, 340)));
                let _ = tx.send((name, svg.unwrap_or_else(|_| Err("panicked".into()))));
            });
        }
        drop(tx);
        let end = Instant::now() + deadline;
        let mut done = Vec::new();
        while done.len() < names.len() {
            match rx.recv_timeout(end.saturating_duration_since(Instant::now())) {
                Ok((name, svg)) => done.push((name.clone(), svg.unwrap_or_else(|e| panic!("{name}: {e}")))),
                Err(_) => {
                    let pending: Vec<&String> = names.iter().filter(|n| !done.iter().any(|(d, _)| d == *n)).collect();
                    panic!("charts still drawing after {deadline:?} (an unbounded loop?): {pending:?}");
                }
            }
        }
        done
    }

    #[test]
    fn charts_of_any_finite_values_draw_in_bounded_time() {
        let mut charts = Vec::new();
        for values in extreme_cases() {
            let points: Vec<(f64, f64)> = values.iter().enumerate().map(|(i, &v)| (i as f64 + 1.0, v)).collect();
            charts.push((format!("y {values:?}"), chart(points.clone(), vec![], vec![])));
            let band = points.iter().map(|&(x, y)| (x, y.min(0.0), y.max(0.0))).collect();
            let markers = vec![1.5, f64::NAN, 1e308];
            charts.push((format!("y, band {values:?}"), chart(points.clone(), band, markers)));
            let swapped = points.iter().map(|&(x, y)| (y, x)).collect();
            charts.push((format!("x {values:?}"), chart(swapped, vec![], vec![])));
        }
        let count = charts.len();
        let svgs = draw_all_within(charts, Duration::from_secs(60));
        assert_eq!(svgs.len(), count);
        for (name, svg) in svgs {
            assert!(svg.starts_with("<svg") && svg.contains("<circle"), "{name}: {svg}");
            assert!(!svg.contains("non-finite"), "{name}");
            // Labels stay short: no 309-digit numbers.
            assert!(!svg.contains("0000000000000000"), "{name}");
        }
    }

    #[test]
    fn non_finite_values_are_skipped_and_counted() {
        let points = vec![(1.0, 1.0), (2.0, f64::NAN), (3.0, f64::INFINITY), (f64::NEG_INFINITY, 2.0), (4.0, 3.0)];
        let band = vec![(1.0, 0.5, 1.5), (2.0, f64::NAN, 2.0), (4.0, 2.5, 3.5)];
        let svgs = draw_all_within(vec![("mixed".into(), chart(points, band, vec![]))], Duration::from_secs(60));
        let svg = &svgs[0].1;
        assert!(svg.contains("t (4 non-finite values not drawn)"), "{svg}");
        assert_eq!(svg.matches("<circle").count(), 2, "{svg}");
        let one = chart(vec![(1.0, f64::NAN), (2.0, 1.0)], vec![], vec![]).svg(300, 200).unwrap();
        assert!(one.contains("t (1 non-finite value not drawn)"), "{one}");
    }
}
