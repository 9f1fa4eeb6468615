//! The report's self-contained HTML page and its SVG plots.

use std::fmt::Write as _;

use plotters::prelude::*;

use super::{si, Report};

impl Report {
    /// A self-contained HTML page: the figures and SVG plots of throughput over
    /// time and of the latency distribution.
    pub fn to_html(&self) -> String {
        let mut page = String::new();
        let title = format!("tether bench: {} against {}", self.scenario, self.url);
        let _ = write!(
            page,
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\
             <style>body{{font-family:sans-serif;margin:2em;max-width:60em}}\
             table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:right}}\
             th{{text-align:left}}pre{{background:#f6f6f6;padding:1em}}</style></head><body>\n<h1>{}</h1>\n",
            escape(&title),
            escape(&title)
        );
        page.push_str("<table>\n");
        let mut row = |name: &str, value: String| {
            let _ = writeln!(
                page,
                "<tr><th>{}</th><td>{}</td></tr>",
                escape(name),
                escape(&value)
            );
        };
        row("operations", format!("{} {}", self.operations, self.unit));
        row("per second", si(self.per_second));
        row("seconds", format!("{:.2}", self.elapsed_s));
        row("connections", self.connections.to_string());
        row("payload bytes", self.size.to_string());
        if let Some(l) = &self.latency {
            for (name, us) in [
                ("p50", l.p50_us),
                ("p90", l.p90_us),
                ("p99", l.p99_us),
                ("p99.9", l.p999_us),
                ("max", l.max_us),
            ] {
                row(
                    &format!("{} latency {name} (µs)", self.latency_of),
                    format!("{us:.0}"),
                );
            }
        }
        if let Some(server) = &self.server {
            row("server CPU seconds", format!("{:.2}", server.cpu_seconds));
            if let Some(per) = server.per_cpu_second {
                row(&format!("{} per server CPU-second", self.unit), si(per));
            }
            if let Some(per) = server.rss_per_connection_bytes {
                row("server KiB per connection", format!("{:.2}", per / 1024.0));
            }
        }
        row("errors", self.errors.to_string());
        row("lost", self.lost.to_string());
        for (name, value) in &self.details {
            row(name, value.to_string());
        }
        page.push_str("</table>\n");
        if let Some(base) = self.transports.first() {
            page.push_str(
                "<h2>Transports (ratio to WebSocket)</h2>\n<table>\n<tr><th>transport</th>",
            );
            for (heading, _, _) in base.cells(base) {
                let _ = write!(page, "<th>{}</th>", escape(heading));
            }
            page.push_str("</tr>\n");
            for row in &self.transports {
                let _ = write!(page, "<tr><th>{}</th>", escape(&row.transport));
                for (_, value, ratio) in row.cells(base) {
                    let cell = if ratio.is_empty() || std::ptr::eq(row, base) {
                        value
                    } else {
                        format!("{value} ({ratio})")
                    };
                    let _ = write!(page, "<td>{}</td>", escape(&cell));
                }
                page.push_str("</tr>\n");
            }
            page.push_str("</table>\n");
            if let Some(svg) = self.transports_latency_svg() {
                let _ = write!(
                    page,
                    "<h2>Publish-to-receive latency by transport</h2>\n{svg}\n"
                );
            }
        }
        if let Some(svg) = self.throughput_svg() {
            let _ = write!(page, "<h2>{} per second</h2>\n{svg}\n", escape(&self.unit));
        }
        if let Some(svg) = self.latency_svg() {
            let _ = write!(
                page,
                "<h2>{} latency distribution</h2>\n{svg}\n",
                escape(&self.latency_of)
            );
        }
        let _ = write!(
            page,
            "<h2>JSON</h2>\n<pre>{}</pre>\n</body></html>\n",
            escape(&self.to_json())
        );
        page
    }

    fn throughput_svg(&self) -> Option<String> {
        if self.timeline.is_empty() {
            return None;
        }
        let top = self.timeline.iter().cloned().fold(1.0, f64::max) * 1.1;
        let seconds = self.timeline.len() as f64;
        let points = self
            .timeline
            .iter()
            .enumerate()
            .map(|(i, v)| (i as f64 + 1.0, *v));
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (720, 320)).into_drawing_area();
            root.fill(&WHITE).ok()?;
            let mut chart = ChartBuilder::on(&root)
                .margin(12)
                .margin_right(40)
                .x_label_area_size(36)
                .y_label_area_size(70)
                .build_cartesian_2d(0f64..seconds + 0.5, 0f64..top)
                .ok()?;
            chart
                .configure_mesh()
                .x_desc("second of the run")
                .y_desc(format!("{}/s", self.unit))
                .y_label_formatter(&|v| si(*v))
                .draw()
                .ok()?;
            chart.draw_series(LineSeries::new(points, &BLUE)).ok()?;
            root.present().ok()?;
        }
        Some(svg)
    }

    /// One latency curve per transport, on the same axes.
    fn transports_latency_svg(&self) -> Option<String> {
        let curves = self
            .transports
            .iter()
            .filter(|row| !row.latency_curve.is_empty())
            .map(|row| (row.transport.as_str(), row.latency_curve.as_slice()))
            .collect();
        curves_svg(curves)
    }

    fn latency_svg(&self) -> Option<String> {
        if self.latency_curve.is_empty() {
            return None;
        }
        curves_svg(vec![("", self.latency_curve.as_slice())])
    }
}

/// Latency distributions ((percentile, µs) points) on one log-scale plot,
/// with x in "nines" (0 = p0, 1 = p90, 2 = p99, 3 = p99.9 …); a legend when
/// the curves are named.
fn curves_svg(curves: Vec<(&str, &[(f64, f64)])>) -> Option<String> {
    if curves.is_empty() {
        return None;
    }
    let nines = |percentile: f64| -(1.0 - percentile / 100.0).max(1e-6).log10();
    let curves: Vec<(&str, Vec<(f64, f64)>)> = curves
        .into_iter()
        .map(|(name, points)| {
            let points = points
                .iter()
                .map(|(p, us)| (nines(*p), us.max(1.0)))
                .collect();
            (name, points)
        })
        .collect();
    let top = curves
        .iter()
        .flat_map(|(_, points)| points.iter().map(|p| p.1))
        .fold(1.0, f64::max)
        * 2.0;
    let named = curves.iter().any(|(name, _)| !name.is_empty());
    let colors = [RED, BLUE, GREEN, MAGENTA];
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 320)).into_drawing_area();
        root.fill(&WHITE).ok()?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .margin_right(40)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..5f64, (1f64..top).log_scale())
            .ok()?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc("µs")
            .x_labels(6)
            .x_label_formatter(&|x| {
                let p = 100.0 - 100.0 * 10f64.powf(-x);
                format!("{p}%")
            })
            .y_label_formatter(&|v| si(*v))
            .draw()
            .ok()?;
        for ((name, points), color) in curves.into_iter().zip(colors.iter().cycle()) {
            let color = *color;
            chart
                .draw_series(LineSeries::new(points, color))
                .ok()?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        if named {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .ok()?;
        }
        root.present().ok()?;
    }
    Some(svg)
}

/// `text` safe inside HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
