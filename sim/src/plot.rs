//! The `--plot` SVG: for each of the first chats, the share of nodes holding it against virtual
//! time since the fault phase began. The fault phase is shaded and the heal marked, so a chat that
//! waits for the heal shows as a curve that climbs only after the dashed line; the title names the
//! faults, so a faulty run and a clean one are told apart.

use crate::metrics::ms;
use crate::report::Report;

const W: f64 = 800.0;
const H: f64 = 500.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
/// The 100% line sits here.
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;

/// A round step (1, 2 or 5 times a power of ten) that cuts `span` into about six.
fn round_step(span: f64) -> f64 {
    let raw = (span / 6.0).max(1e-9);
    let pow = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * pow).find(|s| *s >= raw).unwrap_or(10.0 * pow)
}

/// "loss 5%, churn 10% (all at once), partition", or "none".
fn faults(r: &Report) -> String {
    let mut f = Vec::new();
    if r.loss > 0.0 {
        f.push(format!("loss {}%", pct(r.loss)));
    }
    if r.churn > 0.0 {
        let at_once = if r.crash_at_once { " (all at once)" } else { "" };
        f.push(format!("churn {}%{at_once}", pct(r.churn)));
    }
    if r.partition {
        f.push("partition".into());
    }
    if f.is_empty() {
        "none".into()
    } else {
        f.join(", ")
    }
}

/// A share as a percentage, to a tenth: 0.05 -> "5", 0.125 -> "12.5".
fn pct(share: f64) -> String {
    let s = format!("{:.1}", share * 100.0);
    s.strip_suffix(".0").map(str::to_owned).unwrap_or(s)
}

pub fn svg(r: &Report) -> String {
    let n = r.nodes as f64;
    let end_ms = r
        .curves
        .iter()
        .zip(&r.curve_sent_ms)
        .map(|(c, sent)| sent + c.iter().last().map_or(0.0, |t| ms(Some(t))))
        .fold(r.fault_ms, f64::max)
        .max(1.0);
    // Seconds once the axis spans two of them, else milliseconds.
    let (unit, per_unit) = if end_ms >= 2000.0 { ("s", 1000.0) } else { ("ms", 1.0) };
    let step = round_step(end_ms / per_unit);
    let axis_max = (end_ms / per_unit / step).ceil() * step;
    let x = |t_ms: f64| LEFT + t_ms / per_unit / axis_max * (W - LEFT - RIGHT);
    let y = |share: f64| H - BOTTOM - share.min(1.0) * (H - TOP - BOTTOM);
    let faulty = r.loss > 0.0 || r.churn > 0.0 || r.partition;

    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{LEFT}\" y=\"20\" font-size=\"14\">p2p-chat simulation, faults: {}</text>\n\
         <text x=\"{LEFT}\" y=\"38\">{} nodes, {} chats, seed {}; delivered {:.2}%</text>\n",
        faults(r),
        r.nodes,
        r.messages,
        r.seed,
        r.delivery_ratio * 100.0
    );
    if faulty {
        out += &format!(
            "<rect x=\"{:.1}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{}\" fill=\"#f4cccc\" fill-opacity=\"0.5\"/>\n",
            x(0.0),
            x(r.fault_ms) - x(0.0),
            H - TOP - BOTTOM
        );
        out += &format!(
            "<line x1=\"{0:.1}\" y1=\"{TOP}\" x2=\"{0:.1}\" y2=\"{1}\" stroke=\"firebrick\" stroke-dasharray=\"6 4\"/>\n\
             <text x=\"{2:.1}\" y=\"{3}\" fill=\"firebrick\">heal</text>\n",
            x(r.fault_ms),
            H - BOTTOM,
            x(r.fault_ms) + 4.0,
            TOP + 14.0
        );
    }
    // Grid and ticks.
    for k in 0..=4 {
        let share = k as f64 / 4.0;
        out += &format!(
            "<line x1=\"{LEFT}\" y1=\"{0:.1}\" x2=\"{1}\" y2=\"{0:.1}\" stroke=\"#ddd\"/>\n\
             <text x=\"{2}\" y=\"{3:.1}\" text-anchor=\"end\">{4:.0}%</text>\n",
            y(share),
            W - RIGHT,
            LEFT - 6.0,
            y(share) + 4.0,
            share * 100.0
        );
    }
    let ticks = (axis_max / step).round() as usize;
    for k in 0..=ticks {
        let v = k as f64 * step;
        let label = if step < 1.0 { format!("{v:.1}") } else { format!("{v:.0}") };
        out += &format!(
            "<line x1=\"{0:.1}\" y1=\"{1}\" x2=\"{0:.1}\" y2=\"{2}\" stroke=\"black\"/>\n\
             <text x=\"{0:.1}\" y=\"{3}\" text-anchor=\"middle\">{label}</text>\n",
            x(v * per_unit),
            H - BOTTOM,
            H - BOTTOM + 5.0,
            H - BOTTOM + 18.0
        );
    }
    out += &format!(
        "<line x1=\"{LEFT}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"black\"/>\n\
         <line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{0}\" stroke=\"black\"/>\n\
         <text x=\"{2}\" y=\"{3}\" text-anchor=\"middle\">virtual time since the fault phase began ({unit})</text>\n\
         <text transform=\"translate(16 {4}) rotate(-90)\" text-anchor=\"middle\">nodes holding the chat (%)</text>\n",
        H - BOTTOM,
        W - RIGHT,
        (LEFT + W - RIGHT) / 2.0,
        H - 15.0,
        (TOP + H - BOTTOM) / 2.0
    );
    for (c, sent) in r.curves.iter().zip(&r.curve_sent_ms) {
        let pts: Vec<String> = c
            .iter()
            .enumerate()
            .map(|(k, t)| format!("{:.1},{:.1}", x(sent + ms(Some(t))), y((k + 2) as f64 / n)))
            .collect();
        out += &format!(
            "<polyline fill=\"none\" stroke=\"steelblue\" stroke-opacity=\"0.4\" points=\"{}\"/>\n",
            pts.join(" ")
        );
    }
    out += &legend(r, faulty);
    out + "</svg>\n"
}

/// Bottom right, where the curves have not yet started or have long reached the top.
fn legend(r: &Report, faulty: bool) -> String {
    let (lx, ly) = (W - RIGHT - 230.0, H - BOTTOM - if faulty { 70.0 } else { 30.0 });
    let mut out = format!(
        "<rect x=\"{0}\" y=\"{1}\" width=\"222\" height=\"{2}\" fill=\"white\" stroke=\"#999\"/>\n\
         <line x1=\"{3}\" y1=\"{4}\" x2=\"{5}\" y2=\"{4}\" stroke=\"steelblue\" stroke-width=\"2\"/>\n\
         <text x=\"{6}\" y=\"{7}\">one chat ({8} of {9} drawn)</text>\n",
        lx,
        ly,
        if faulty { 64.0 } else { 24.0 },
        lx + 8.0,
        ly + 12.0,
        lx + 32.0,
        lx + 38.0,
        ly + 16.0,
        r.curves.len(),
        r.messages
    );
    if faulty {
        out += &format!(
            "<rect x=\"{0}\" y=\"{1}\" width=\"24\" height=\"12\" fill=\"#f4cccc\"/>\n\
             <text x=\"{2}\" y=\"{3}\">fault phase</text>\n\
             <line x1=\"{0}\" y1=\"{4}\" x2=\"{5}\" y2=\"{4}\" stroke=\"firebrick\" stroke-dasharray=\"6 4\"/>\n\
             <text x=\"{2}\" y=\"{6}\">faults heal</text>\n",
            lx + 8.0,
            ly + 24.0,
            lx + 38.0,
            ly + 35.0,
            ly + 52.0,
            lx + 32.0,
            ly + 56.0
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::round_step;

    #[test]
    fn shares_read_as_percentages() {
        assert_eq!(super::pct(0.05), "5");
        assert_eq!(super::pct(0.125), "12.5");
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(round_step(30.0), 5.0);
        assert_eq!(round_step(7.0), 2.0);
        assert_eq!(round_step(600.0), 100.0);
        assert_eq!(round_step(0.9), 0.2);
    }
}
