//! The plot of a benchmark (PNG and SVG, with `plotters`): replay position, lag in bytes
//! and lag in seconds over time, one line per config and run.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

/// One line of the plot: a config's run.
#[derive(Debug, Clone, Default)]
pub struct PlotLine {
    /// Legend text (`config #run`).
    pub label: String,
    /// (seconds, MB replayed past the start).
    pub replayed_mb: Vec<(f64, f64)>,
    /// (seconds, MB available but not replayed).
    pub lag_mb: Vec<(f64, f64)>,
    /// (seconds, lag seconds).
    pub lag_seconds: Vec<(f64, f64)>,
}

/// Fonts looked for to label the plot; without one it is drawn without text.
const FONTS: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

/// Registers a system font as `sans-serif` once; whether one was found.
fn have_font() -> bool {
    static FOUND: OnceLock<bool> = OnceLock::new();
    *FOUND.get_or_init(|| {
        FONTS.iter().filter_map(|p| std::fs::read(p).ok()).any(|bytes| {
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
        })
    })
}

const SIZE: (u32, u32) = (1200, 900);

/// Writes the plot as PNG to `png` and SVG to `svg`.
///
/// # Errors
/// The files cannot be written.
pub fn write_plots(lines: &[PlotLine], title: &str, png: &Path, svg: &Path) -> Result<()> {
    let text = have_font();
    {
        let root = BitMapBackend::new(png, SIZE).into_drawing_area();
        draw(&root, lines, title, text)?;
        root.present().map_err(|e| anyhow!("could not write \"{}\": {e}", png.display()))?;
    }
    let root = SVGBackend::new(svg, SIZE).into_drawing_area();
    draw(&root, lines, title, text)?;
    root.present().map_err(|e| anyhow!("could not write \"{}\": {e}", svg.display()))?;
    Ok(())
}

type Panel = (&'static str, fn(&PlotLine) -> &[(f64, f64)]);

const PANELS: [Panel; 3] = [
    ("replayed (MB)", |l| &l.replayed_mb),
    ("lag (MB)", |l| &l.lag_mb),
    ("lag (s)", |l| &l.lag_seconds),
];

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    lines: &[PlotLine],
    title: &str,
    text: bool,
) -> Result<()> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("plot: {e}");
    root.fill(&WHITE).map_err(err)?;
    let root =
        if text { root.titled(title, ("sans-serif", 22)).map_err(err)? } else { root.clone() };
    let panels = root.split_evenly((PANELS.len(), 1));
    let x_max = lines
        .iter()
        .flat_map(|l| l.replayed_mb.iter().map(|p| p.0))
        .fold(0.0f64, f64::max)
        .max(1e-3);
    for (area, (name, series)) in panels.iter().zip(PANELS) {
        let y_max = lines.iter().flat_map(|l| series(l).iter().map(|p| p.1)).fold(0.0f64, f64::max);
        let y_max = if y_max > 0.0 { y_max * 1.05 } else { 1.0 };
        let (label_x, label_y) = if text { (35, 70) } else { (0, 0) };
        let mut chart = ChartBuilder::on(area)
            .margin(10)
            .x_label_area_size(label_x)
            .y_label_area_size(label_y)
            .build_cartesian_2d(0f64..x_max, 0f64..y_max)
            .map_err(err)?;
        let mut mesh = chart.configure_mesh();
        if text {
            mesh.x_desc("seconds").y_desc(name);
        } else {
            mesh.x_labels(0).y_labels(0);
        }
        mesh.draw().map_err(err)?;
        for (i, line) in lines.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let drawn = chart
                .draw_series(LineSeries::new(series(line).iter().copied(), color.stroke_width(2)))
                .map_err(err)?;
            if text {
                drawn.label(line.label.clone()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            }
        }
        if text && !lines.is_empty() {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(err)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_are_png_and_svg() {
        let dir = tempfile::tempdir().unwrap();
        let line = PlotLine {
            label: "a #1".into(),
            replayed_mb: vec![(0.0, 0.0), (1.0, 5.0), (2.0, 9.0)],
            lag_mb: vec![(0.0, 9.0), (1.0, 4.0), (2.0, 0.0)],
            lag_seconds: vec![(0.0, 0.0), (1.0, 1.0), (2.0, 0.0)],
        };
        let (png, svg) = (dir.path().join("p.png"), dir.path().join("p.svg"));
        write_plots(&[line.clone(), line], "replay", &png, &svg).unwrap();
        assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG\r\n\x1a\n"));
        assert!(std::fs::read_to_string(&svg).unwrap().trim_start().starts_with("<svg"));
        // Empty input still makes valid files.
        write_plots(&[], "none", &png, &svg).unwrap();
    }
}
