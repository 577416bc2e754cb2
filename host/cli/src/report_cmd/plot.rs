//! Line charts as inline SVG (plotters, without system fonts), for the HTML report.

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

/// The range of `values` (non-finite ones ignored), padded so that a constant still spans.
fn span(values: impl Iterator<Item = f64>, pad: f64) -> std::ops::Range<f64> {
    let (lo, hi) =
        values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    let margin = if hi > lo { (hi - lo) * pad } else { lo.abs().max(1.0) * 0.5 };
    lo - margin..hi + margin
}

impl Chart {
    /// The chart as an `<svg>` element, `width` × `height` pixels.
    pub fn svg(&self, width: u32, height: u32) -> Result<String, String> {
        let mut out = String::new();
        self.draw(&mut out, (width, height)).map_err(|e| format!("drawing `{}`: {e}", self.title))?;
        Ok(out)
    }

    fn draw(&self, out: &mut String, size: (u32, u32)) -> Result<(), Box<dyn std::error::Error + '_>> {
        let finite = |&&(x, y): &&(f64, f64)| x.is_finite() && y.is_finite();
        let xs = self.series.iter().flat_map(|s| s.points.iter().map(|p| p.0).chain(s.band.iter().map(|b| b.0)));
        let ys =
            self.series.iter().flat_map(|s| s.points.iter().map(|p| p.1).chain(s.band.iter().flat_map(|b| [b.1, b.2])));
        let root = SVGBackend::with_string(out, size).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(&self.title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(span(xs, 0.05), span(ys, 0.1))?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .x_desc(self.x_label.as_str())
            .y_desc(self.y_label.as_str())
            .x_labels(8)
            // Iterations and steps are whole numbers: other ticks stay unlabelled.
            .x_label_formatter(&|x| if x.fract() == 0.0 { format!("{x:.0}") } else { String::new() })
            .y_labels(6)
            .draw()?;
        let (y0, y1) = (chart.y_range().start, chart.y_range().end);
        for &x in &self.markers {
            chart.draw_series(DashedLineSeries::new([(x, y0), (x, y1)], 4, 4, BLACK.mix(0.3).into()))?;
        }
        for s in &self.series {
            let color = rgb(s.color);
            if !s.band.is_empty() {
                let upper = s.band.iter().map(|b| (b.0, b.2));
                let lower = s.band.iter().rev().map(|b| (b.0, b.1));
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

    #[test]
    fn a_single_point_still_draws_in_its_color() {
        let chart = Chart {
            title: "t".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            series: vec![Series { name: "s".into(), color: "#1f77b4", points: vec![(1.0, 2.0)], band: vec![] }],
            markers: vec![],
        };
        let svg = chart.svg(300, 200).unwrap();
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
}
