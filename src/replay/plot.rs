//! The Pareto chart people in this field read (Shahrad et al., USENIX ATC'20, figure 15):
//! wasted memory against cold starts, one point per policy, with a sweep of fixed
//! keep-alives as the curve to beat. A policy below and left of the curve is better than
//! every fixed keep-alive.

use std::path::Path;

use plotters::prelude::*;

use super::PolicyReport;

/// The fixed keep-alives of the curve, in minutes.
pub const SWEEP: [u32; 15] = [1, 2, 3, 5, 7, 10, 15, 20, 30, 45, 60, 90, 120, 180, 240];
/// The live model's sweeps, shorter: each point there replays the trace on simulated
/// seconds.
pub const LIVE_SWEEP: [u32; 7] = [1, 5, 10, 20, 60, 120, 240];
pub const LIVE_PREDICTIVE_SWEEP: [f64; 4] = [4.0, 10.0, 20.0, 50.0];
/// The predictive policy's curve: what a cold start is worth, GB-minutes.
pub const PREDICTIVE_SWEEP: [f64; 9] = [2.0, 4.0, 7.0, 10.0, 14.0, 20.0, 30.0, 50.0, 80.0];

/// Draw `policies` as points over the `sweep` curve (and the predictive policy's, when
/// given) into an SVG file at `path`.
pub fn pareto(
    path: &Path,
    title: &str,
    sweep: &[PolicyReport],
    predictive: &[PolicyReport],
    policies: &[PolicyReport],
) -> Result<(), String> {
    draw(path, title, sweep, predictive, policies).map_err(|e| format!("{}: {e}", path.display()))
}

fn draw(
    path: &Path,
    title: &str,
    sweep: &[PolicyReport],
    predictive: &[PolicyReport],
    policies: &[PolicyReport],
) -> Result<(), Box<dyn std::error::Error>> {
    let all = || sweep.iter().chain(predictive).chain(policies);
    let cold = |r: &PolicyReport| (r.cold_starts as f64).max(1.0);
    let x_min = all().map(cold).fold(f64::INFINITY, f64::min) / 1.3;
    let x_max = all().map(cold).fold(1.0, f64::max) * 1.3;
    let y_max = all().map(|r| r.wasted_gb_min).fold(1.0, f64::max) * 1.1;

    let root = SVGBackend::new(path, (960, 640)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d((x_min..x_max).log_scale(), 0f64..y_max)?;
    chart
        .configure_mesh()
        .x_desc("cold starts (log scale)")
        .y_desc("wasted memory, GB-minutes")
        .x_labels(6)
        .y_labels(8)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .light_line_style(RGBColor(245, 245, 245))
        .label_style(("sans-serif", 14))
        .draw()?;

    let blue = RGBColor(31, 119, 180);
    chart
        .draw_series(LineSeries::new(
            sweep.iter().map(|r| (cold(r), r.wasted_gb_min)),
            blue.stroke_width(2),
        ))?
        .label(format!(
            "fixed keep-alive, {}–{} min",
            sweep
                .first()
                .map_or("", |r| r.policy.trim_start_matches("fixed:")),
            sweep
                .last()
                .map_or("", |r| r.policy.trim_start_matches("fixed:"))
        ))
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], blue.stroke_width(2)));
    chart.draw_series(sweep.iter().map(|r| {
        EmptyElement::at((cold(r), r.wasted_gb_min))
            + Circle::new((0, 0), 3, blue.filled())
            + Text::new(
                r.policy.trim_start_matches("fixed:").to_string(),
                (4, -14),
                ("sans-serif", 11).into_font().color(&blue),
            )
    }))?;

    if !predictive.is_empty() {
        let green = RGBColor(44, 160, 44);
        chart
            .draw_series(LineSeries::new(
                predictive.iter().map(|r| (cold(r), r.wasted_gb_min)),
                green.stroke_width(2),
            ))?
            .label(format!(
                "predictive, a cold start worth {}–{} GB-min",
                predictive[0].policy.trim_start_matches("predictive:"),
                predictive[predictive.len() - 1]
                    .policy
                    .trim_start_matches("predictive:")
            ))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], green.stroke_width(2))
            });
        chart.draw_series(predictive.iter().map(|r| {
            EmptyElement::at((cold(r), r.wasted_gb_min))
                + Circle::new((0, 0), 3, green.filled())
                + Text::new(
                    r.policy.trim_start_matches("predictive:").to_string(),
                    (4, 6),
                    ("sans-serif", 11).into_font().color(&green),
                )
        }))?;
    }

    let red = RGBColor(214, 39, 40);
    chart
        .draw_series(policies.iter().map(|r| {
            EmptyElement::at((cold(r), r.wasted_gb_min))
                + Circle::new((0, 0), 6, red.filled())
                + Text::new(r.policy.clone(), (8, 4), ("sans-serif", 14).into_font())
        }))?
        .label("policies replayed")
        .legend(move |(x, y)| Circle::new((x + 10, y), 5, red.filled()));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    root.present()?;
    Ok(())
}
