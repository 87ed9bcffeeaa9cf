//! The MRV demo: one coal-fired plant under 88.888.1 for 2025, with numbers
//! that add up. Two units, each with a belt-scale coal meter (and its calibration
//! certificate); a gateway electricity meter; a day of coal a reading; a composite sample and a
//! lab report (carbon content) per unit and month; monthly figures
//! E_fuel = FC × C_ar × OF × 44/12 and E_elec = MWh × grid factor, each linked to what it was
//! computed from; monthly filings and the annual report `88.888.1/report-2025`. Every kind has
//! its template. The values are illustrative and say so.

use suyuan_codec::time::{civil_from_days, days_from_civil};
use suyuan_codec::value::HandleValue;

pub const PREFIX: &str = "88.888.1";
pub const REPORT: &str = "88.888.1/report-2025";
/// Oxidation factor of the coal (illustrative).
pub const OF: f64 = 0.98;
/// Grid emission factor, tCO2/MWh (illustrative).
pub const GRID: f64 = 0.5703;

fn h(s: &str) -> String {
    format!("{PREFIX}/{s}")
}

/// A record under construction: values get consecutive indexes per block.
struct Rec {
    handle: String,
    values: Vec<HandleValue>,
    next_link: u32,
}

impl Rec {
    fn new(suffix: &str, kind: &str) -> Self {
        Rec::under(PREFIX, suffix, kind)
    }
    fn under(prefix: &'static str, suffix: &str, kind: &str) -> Self {
        let mut r = Rec {
            handle: format!("{prefix}/{suffix}"),
            values: Vec::new(),
            next_link: 3000,
        };
        r.at(1, "mrv.kind", kind);
        r.at(1001, "mrv.templateRef", &format!("{prefix}/tpl/{kind}"));
        r.at(
            2,
            "DESC",
            "Illustrative demo data: not a real plant's figures.",
        );
        r
    }
    fn at(&mut self, index: u32, t: &str, data: &str) -> &mut Self {
        self.values.push(HandleValue::new(index, t, data));
        self
    }
    /// A link among many of the same relation (indexes from 3000).
    fn link(&mut self, rel: &str, target: &str) -> &mut Self {
        let i = self.next_link;
        self.next_link += 1;
        self.at(i, rel, target)
    }
    fn done(self) -> (String, Vec<HandleValue>) {
        (self.handle, self.values)
    }
    /// The template record of `kind` under this record's prefix.
    fn template(prefix: &'static str, kind: &str, attrs: &[Attr]) -> (String, Vec<HandleValue>) {
        let mut r = Rec {
            handle: format!("{prefix}/tpl/{kind}"),
            values: Vec::new(),
            next_link: 3000,
        };
        r.at(1, "mrv.template", &template_json(kind, attrs));
        r.done()
    }
}

/// Templates: kind, then (name, index, type, required, reference kinds or None).
type Attr = (
    &'static str,
    u32,
    &'static str,
    bool,
    Option<&'static [&'static str]>,
);
const TEMPLATES: &[(&str, &[Attr])] = &[
    ("unit", &[]),
    (
        "meter",
        &[
            ("unit", 2000, "mrv.unit", true, None),
            (
                "installedOn",
                2001,
                "mrv.installedOn",
                true,
                Some(&["unit"]),
            ),
            (
                "calibratedBy",
                2002,
                "mrv.calibratedBy",
                false,
                Some(&["calibration"]),
            ),
        ],
    ),
    ("calibration", &[("time", 2000, "mrv.time", true, None)]),
    (
        "reading",
        &[
            ("value", 2000, "mrv.value", true, None),
            ("unit", 2001, "mrv.unit", true, None),
            ("time", 2002, "mrv.time", true, None),
            ("meter", 2003, "mrv.measuredBy", true, Some(&["meter"])),
        ],
    ),
    (
        "composite-sample",
        &[
            ("period", 2000, "mrv.period", true, None),
            ("unit", 2001, "mrv.partOf", true, Some(&["unit"])),
        ],
    ),
    (
        "lab-report",
        &[
            ("carbon", 2000, "mrv.value", true, None),
            ("unitOfValue", 2001, "mrv.unit", true, None),
            ("period", 2002, "mrv.period", true, None),
            (
                "sample",
                2003,
                "mrv.analyses",
                true,
                Some(&["composite-sample"]),
            ),
        ],
    ),
    (
        "factor",
        &[
            ("value", 2000, "mrv.value", true, None),
            ("unit", 2001, "mrv.unit", true, None),
        ],
    ),
    ("plan", &[("period", 2000, "mrv.period", true, None)]),
    (
        "figure",
        &[
            ("value", 2000, "mrv.value", true, None),
            ("unit", 2001, "mrv.unit", true, None),
            ("period", 2002, "mrv.period", true, None),
            ("formula", 2003, "mrv.formula", true, None),
            ("plan", 2004, "mrv.governedBy", true, Some(&["plan"])),
        ],
    ),
    ("filing", &[("period", 2000, "mrv.period", true, None)]),
    (
        "annual-report",
        &[
            ("value", 2000, "mrv.value", true, None),
            ("unit", 2001, "mrv.unit", true, None),
            ("period", 2002, "mrv.period", true, None),
            ("formula", 2003, "mrv.formula", false, None),
        ],
    ),
];

fn template_json(kind: &str, attrs: &[Attr]) -> String {
    let a: Vec<serde_json::Value> = attrs
        .iter()
        .map(|(name, index, t, required, kinds)| {
            let mut o =
                serde_json::json!({"name": name, "index": index, "type": t, "required": required});
            if let Some(k) = kinds {
                o["reference"] = serde_json::json!({"kinds": k});
            }
            o
        })
        .collect();
    serde_json::json!({"kind": kind, "attributes": a}).to_string()
}

/// A deterministic pseudo-random number in [0, 1) (so the demo is the same every time).
fn noise(seed: u64) -> f64 {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 29;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

fn fmt3(x: f64) -> String {
    format!("{x:.3}")
}

/// A month's fuel emissions (the guideline's E_fuel = FC × C_ar × OF × 44/12): the coal of
/// the month's readings, the lab's carbon content as received (a percentage, converted), the
/// oxidation factor, and the CO2 per tonne of carbon. docs/formulas.md explains the language.
pub const FUEL_FORMULA: &str = "E_fuel = sum(prov.wasDerivedFrom:reading [t]) * as(one(prov.wasDerivedFrom:lab-report [%]), [1]) * one(mrv.usesFactor:factor [1]) * (44/12) [tCO2/t]";
/// A month's purchased electricity times the grid's emission factor.
pub const ELEC_FORMULA: &str =
    "E_elec = one(prov.wasDerivedFrom:reading [MWh]) * one(mrv.usesFactor:factor [tCO2/MWh])";
/// The year: every figure of every monthly filing the report reports.
pub const REPORT_FORMULA: &str = "E = sum(mrv.reports:filing/mrv.reports:figure [tCO2])";

/// Which grid emission factor the plant's electricity figures use: a copy of its own (a plant
/// alone), or the grid node's (`88.888.2/factor-grid-2025`, a plant in a federation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GridFactor {
    Own,
    GridNode,
}

/// Every record of the plant, templates first, in an order where targets come before the
/// records that name them; its electricity figures use `factor`.
pub fn plant_records(factor: GridFactor) -> Vec<(String, Vec<HandleValue>)> {
    let mut out = Vec::new();
    for (kind, attrs) in TEMPLATES {
        out.push(Rec::template(PREFIX, kind, attrs));
    }
    let mut plan = Rec::new("plan-2025-v1", "plan");
    plan.at(2000, "mrv.period", "2025");
    out.push(plan.done());
    let grid_factor = match factor {
        GridFactor::Own => {
            let mut grid = Rec::new("factor-grid-2025", "factor");
            grid.at(2000, "mrv.value", &format!("{GRID}"))
                .at(2001, "mrv.unit", "tCO2/MWh");
            out.push(grid.done());
            h("factor-grid-2025")
        }
        GridFactor::GridNode => GRID_FACTOR.to_string(),
    };
    let mut of = Rec::new("factor-oxidation-coal", "factor");
    of.at(2000, "mrv.value", &format!("{OF}"))
        .at(2001, "mrv.unit", "1");
    out.push(of.done());
    for u in 1..=2 {
        out.push(Rec::new(&format!("unit-{u}"), "unit").done());
        let mut cert = Rec::new(&format!("cert-coal-{u}"), "calibration");
        cert.at(2000, "mrv.time", "2024-12-15T09:00:00Z");
        out.push(cert.done());
        let mut m = Rec::new(&format!("meter-coal-{u}"), "meter");
        m.at(2000, "mrv.unit", "t")
            .at(2001, "mrv.installedOn", &h(&format!("unit-{u}")))
            .at(2002, "mrv.calibratedBy", &h(&format!("cert-coal-{u}")));
        out.push(m.done());
    }
    let mut elec = Rec::new("meter-elec", "meter");
    elec.at(2000, "mrv.unit", "MWh")
        .at(2001, "mrv.installedOn", &h("unit-1"));
    out.push(elec.done());

    let jan1 = days_from_civil(2025, 1, 1);
    let mut filings: Vec<String> = Vec::new();
    let mut total = 0.0;
    for month in 1..=12u32 {
        let period = format!("2025-{month:02}");
        let mut month_figures = Vec::new();
        for u in 1..=2u64 {
            // Daily coal readings of this unit and month.
            let mut readings = Vec::new();
            let mut fc = 0.0;
            for d in jan1..jan1 + 365 {
                let (y, m, day) = civil_from_days(d);
                if (y, m) != (2025, month) {
                    continue;
                }
                // 1,800–2,200 t of coal a day, to the kilogram.
                let tonnes =
                    ((1800.0 + 400.0 * noise(u * 1000 + d as u64)) * 1000.0).round() / 1000.0;
                fc += tonnes;
                let suffix = format!("coal-{u}-{y}-{m:02}-{day:02}");
                let mut r = Rec::new(&suffix, "reading");
                r.at(2000, "mrv.value", &fmt3(tonnes))
                    .at(2001, "mrv.unit", "t")
                    .at(2002, "mrv.time", &format!("{y}-{m:02}-{day:02}T23:59:00Z"))
                    .at(2003, "mrv.measuredBy", &h(&format!("meter-coal-{u}")));
                readings.push(h(&suffix));
                out.push(r.done());
            }
            let mut sample = Rec::new(&format!("sample-{u}-{period}"), "composite-sample");
            sample
                .at(2000, "mrv.period", &period)
                .at(2001, "mrv.partOf", &h(&format!("unit-{u}")));
            out.push(sample.done());
            // 55–60 % carbon as received.
            let carbon = ((55.0 + 5.0 * noise(u * 77 + month as u64)) * 100.0).round() / 100.0;
            let mut lab = Rec::new(&format!("lab-{u}-{period}"), "lab-report");
            lab.at(2000, "mrv.value", &format!("{carbon:.2}"))
                .at(2001, "mrv.unit", "%")
                .at(2002, "mrv.period", &period)
                .at(2003, "mrv.analyses", &h(&format!("sample-{u}-{period}")));
            out.push(lab.done());
            // FC is summed from the readings as written (3 decimals), so a trace recomputes it.
            let e = fc * carbon / 100.0 * OF * 44.0 / 12.0;
            let mut f = Rec::new(&format!("fig-fuel-{u}-{period}"), "figure");
            f.at(2000, "mrv.value", &fmt3(e))
                .at(2001, "mrv.unit", "tCO2")
                .at(2002, "mrv.period", &period)
                .at(2003, "mrv.formula", FUEL_FORMULA)
                .at(2004, "mrv.governedBy", &h("plan-2025-v1"));
            f.link("prov.wasDerivedFrom", &h(&format!("lab-{u}-{period}")));
            f.link("mrv.usesFactor", &h("factor-oxidation-coal"));
            for r in &readings {
                f.link("prov.wasDerivedFrom", r);
            }
            total += e;
            month_figures.push(h(&format!("fig-fuel-{u}-{period}")));
            out.push(f.done());
        }
        // Purchased electricity, one gateway reading a month.
        // 9,000–11,000 MWh purchased a month.
        let mwh = ((9000.0 + 2000.0 * noise(5000 + month as u64)) * 10.0).round() / 10.0;
        let last_day = civil_from_days(
            days_from_civil(
                2025 + i64::from(month == 12),
                if month == 12 { 1 } else { month + 1 },
                1,
            ) - 1,
        )
        .2;
        let mut r = Rec::new(&format!("elec-{period}"), "reading");
        r.at(2000, "mrv.value", &format!("{mwh:.1}"))
            .at(2001, "mrv.unit", "MWh")
            .at(
                2002,
                "mrv.time",
                &format!("2025-{month:02}-{last_day:02}T23:59:00Z"),
            )
            .at(2003, "mrv.measuredBy", &h("meter-elec"));
        out.push(r.done());
        let e = mwh * GRID;
        let mut f = Rec::new(&format!("fig-elec-{period}"), "figure");
        f.at(2000, "mrv.value", &fmt3(e))
            .at(2001, "mrv.unit", "tCO2")
            .at(2002, "mrv.period", &period)
            .at(2003, "mrv.formula", ELEC_FORMULA)
            .at(2004, "mrv.governedBy", &h("plan-2025-v1"));
        f.link("prov.wasDerivedFrom", &h(&format!("elec-{period}")));
        f.link("mrv.usesFactor", &grid_factor);
        total += e;
        month_figures.push(h(&format!("fig-elec-{period}")));
        out.push(f.done());
        let mut filing = Rec::new(&format!("filing-{period}"), "filing");
        filing.at(2000, "mrv.period", &period);
        for fig in &month_figures {
            filing.link("mrv.reports", fig);
        }
        filings.push(h(&format!("filing-{period}")));
        out.push(filing.done());
    }
    let mut report = Rec::new("report-2025", "annual-report");
    report
        .at(2000, "mrv.value", &fmt3(total))
        .at(2001, "mrv.unit", "tCO2")
        .at(2002, "mrv.period", "2025")
        .at(2003, "mrv.formula", REPORT_FORMULA);
    for f in &filings {
        report.link("mrv.reports", f);
    }
    out.push(report.done());
    out
}

/// The grid company's node of the two-node demo.
pub const GRID_PREFIX: &str = "88.888.2";
/// The regional grid's emission factor for 2025, which the plant's electricity figures use.
pub const GRID_FACTOR: &str = "88.888.2/factor-grid-2025";

/// The grid factor by year, tCO2/MWh, and the notice it was published in (the figures of the
/// national guideline and its notices, given for illustration: see the records' DESC).
const GRID_FACTORS: &[(u32, f64, &str)] = &[
    (2020, 0.6101, "notice-2021"),
    (2021, 0.5810, "notice-2022"),
    (2022, 0.5810, "notice-2022"),
    (2023, 0.5703, "notice-2023"),
    (2024, 0.5703, "notice-2023"),
    (2025, GRID, "notice-2023"),
];

const NOTICES: &[(&str, &str)] = &[
    (
        "notice-2021",
        "Legal source (illustrative): 企业温室气体排放核算方法与报告指南 发电设施 (环办气候〔2021〕9号)",
    ),
    (
        "notice-2022",
        "Legal source (illustrative): the 2022 revision of the power-sector guideline",
    ),
    (
        "notice-2023",
        "Legal source (illustrative): 环办气候函〔2023〕43号, the grid factor for 2023–2025",
    ),
];

/// The grid node's records: templates, the notices that publish the factors, and the
/// regional grid factor of every year from 2020 (each derived from its notice).
pub fn grid_records() -> Vec<(String, Vec<HandleValue>)> {
    let mut out = vec![
        Rec::template(
            GRID_PREFIX,
            "legal-source",
            &[("period", 2000, "mrv.period", true, None)],
        ),
        Rec::template(
            GRID_PREFIX,
            "factor",
            &[
                ("value", 2000, "mrv.value", true, None),
                ("unit", 2001, "mrv.unit", true, None),
                ("period", 2002, "mrv.period", true, None),
                (
                    "source",
                    2003,
                    "prov.wasDerivedFrom",
                    true,
                    Some(&["legal-source"]),
                ),
            ],
        ),
    ];
    for (suffix, desc) in NOTICES {
        let mut n = Rec::under(GRID_PREFIX, suffix, "legal-source");
        let year = &suffix["notice-".len()..];
        n.values.retain(|v| v.index != 2);
        n.at(2, "DESC", desc).at(2000, "mrv.period", year);
        out.push(n.done());
    }
    for (year, value, notice) in GRID_FACTORS {
        let mut f = Rec::under(GRID_PREFIX, &format!("factor-grid-{year}"), "factor");
        f.at(2000, "mrv.value", &format!("{value}"))
            .at(2001, "mrv.unit", "tCO2/MWh")
            .at(2002, "mrv.period", &year.to_string())
            .at(
                2003,
                "prov.wasDerivedFrom",
                &format!("{GRID_PREFIX}/{notice}"),
            );
        out.push(f.done());
    }
    out
}

/// Loads `records` in register mode (re-running writes nothing): how many were written, how
/// many were there already.
pub fn load_records(
    registry: &suyuan_registry::Registry,
    records: Vec<(String, Vec<HandleValue>)>,
    now: u64,
) -> anyhow::Result<(usize, usize)> {
    use suyuan_registry::{CreateMode, Mutation, Write};
    let writes: Vec<Write> = records
        .into_iter()
        .map(|(handle, values)| Write {
            mutation: Mutation::Create {
                handle,
                values,
                mode: CreateMode::Register,
            },
            actor: "0:SUYUAN/DEMO".into(),
            time: now,
        })
        .collect();
    let (mut written, mut unchanged) = (0, 0);
    for r in registry.apply_batch(writes) {
        match r?.seq {
            Some(_) => written += 1,
            None => unchanged += 1,
        }
    }
    Ok((written, unchanged))
}

#[cfg(test)]
mod tests {
    use super::*;
    use suyuan_registry::{Direction, Identity, Mutation, Registry, TraceQuery, Write};

    fn loaded() -> (tempfile::TempDir, Registry) {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path()).unwrap();
        reg.apply(Write {
            mutation: Mutation::Home {
                prefix: PREFIX.into(),
                admins: vec![Identity::new(301, "88.888.1/ADMIN")],
            },
            actor: "0:T".into(),
            time: 1,
        })
        .unwrap();
        let (written, unchanged) =
            load_records(&reg, plant_records(GridFactor::Own), 1_740_000_000).unwrap();
        assert_eq!(unchanged, 0);
        assert!(written > 700);
        // Loading again writes nothing.
        assert_eq!(
            load_records(&reg, plant_records(GridFactor::Own), 1_740_000_001).unwrap(),
            (0, written)
        );
        (dir, reg)
    }

    fn value(values: &[serde_json::Value], t: &str) -> Option<f64> {
        values
            .iter()
            .find(|v| v["type"] == t)
            .and_then(|v| v["data"]["value"].as_str())
            .and_then(|s| s.parse().ok())
    }

    #[test]
    fn the_figures_add_up_from_their_traced_sources() {
        let (_d, reg) = loaded();
        let t = reg
            .trace(&TraceQuery::new(REPORT, Direction::Up), &|_, v| {
                v.permissions.public_read()
            })
            .unwrap();
        assert!(!t.truncated);
        let node = |h: &str| {
            t.nodes
                .iter()
                .find(|n| n.handle == h)
                .unwrap_or_else(|| panic!("{h} not reached"))
        };
        // Every meter and every lab report is reached from the report.
        for m in ["meter-coal-1", "meter-coal-2", "meter-elec"] {
            assert!(
                t.edges
                    .iter()
                    .any(|e| e.rel == "mrv.measuredBy" && e.to == h(m)),
                "{m}"
            );
        }
        assert_eq!(
            t.nodes
                .iter()
                .filter(|n| n.kind.as_deref() == Some("lab-report"))
                .count(),
            24
        );
        // Recompute each monthly fuel figure from what the trace shows it was derived from.
        let mut recomputed_total = 0.0;
        for f in t
            .nodes
            .iter()
            .filter(|n| n.kind.as_deref() == Some("figure"))
        {
            let sources: Vec<&str> = t
                .edges
                .iter()
                .filter(|e| e.from == f.handle)
                .map(|e| e.to.as_str())
                .collect();
            let stated = value(&f.values, "mrv.value").unwrap();
            let computed = if f.handle.contains("fig-fuel") {
                let fc: f64 = sources
                    .iter()
                    .map(|s| node(s))
                    .filter(|n| n.kind.as_deref() == Some("reading"))
                    .map(|n| value(&n.values, "mrv.value").unwrap())
                    .sum();
                let carbon = sources
                    .iter()
                    .map(|s| node(s))
                    .find(|n| n.kind.as_deref() == Some("lab-report"))
                    .and_then(|n| value(&n.values, "mrv.value"))
                    .unwrap();
                let of = value(&node(&h("factor-oxidation-coal")).values, "mrv.value").unwrap();
                fc * carbon / 100.0 * of * 44.0 / 12.0
            } else {
                let mwh = sources
                    .iter()
                    .map(|s| node(s))
                    .find(|n| n.kind.as_deref() == Some("reading"))
                    .and_then(|n| value(&n.values, "mrv.value"))
                    .unwrap();
                mwh * value(&node(&h("factor-grid-2025")).values, "mrv.value").unwrap()
            };
            assert!(
                (computed - stated).abs() < 0.001,
                "{}: stated {stated}, recomputed {computed}",
                f.handle
            );
            recomputed_total += computed;
        }
        let reported = value(&node(REPORT).values, "mrv.value").unwrap();
        assert!(
            (recomputed_total - reported).abs() < 0.01 * 36.0,
            "report {reported} vs {recomputed_total}"
        );
        // The node's own derivation check agrees: the 36 monthly figures and the report are
        // green, each having read its inputs.
        let checks = t.checks.unwrap();
        assert_eq!((checks.green, checks.red, checks.grey), (37, 0, 0));
        let fuel = node(&h("fig-fuel-1-2025-03")).check.as_ref().unwrap();
        assert_eq!(
            fuel.inputs.len(),
            31 + 2,
            "31 readings, the lab report, the factor"
        );
        let report = node(REPORT).check.as_ref().unwrap();
        assert_eq!(report.inputs.len(), 36, "the figures of its twelve filings");
    }

    #[test]
    fn a_changed_reading_turns_its_month_and_the_report_red() {
        use suyuan_registry::check::Status;
        let (_d, reg) = loaded();
        reg.apply(Write {
            mutation: Mutation::ModifyValues {
                handle: h("coal-2-2025-03-14"),
                values: vec![HandleValue::new(2000, "mrv.value", "2500.000")],
            },
            actor: "301:88.888.1/ADMIN".into(),
            time: 1_740_000_100,
        })
        .unwrap();
        let t = reg
            .trace(&TraceQuery::new(REPORT, Direction::Up), &|_, _| true)
            .unwrap();
        let check = |s: &str| {
            t.nodes
                .iter()
                .find(|n| n.handle == h(s))
                .and_then(|n| n.check.clone())
                .unwrap()
        };
        let march = check("fig-fuel-2-2025-03");
        assert_eq!(march.status, Status::Red, "{march:?}");
        let report = check("report-2025");
        assert_eq!(report.status, Status::Red);
        // The report is off by exactly what the month is off by.
        let month_off = march.computed.unwrap() - march.expected.unwrap();
        let report_off = report.computed.unwrap() - report.expected.unwrap();
        assert!(
            month_off > 100.0 && (report_off - month_off).abs() < 0.01,
            "{month_off} {report_off}"
        );
        assert_eq!(check("fig-fuel-1-2025-03").status, Status::Green);
        assert_eq!(check("fig-fuel-2-2025-04").status, Status::Green);
        let c = t.checks.unwrap();
        assert_eq!((c.green, c.red, c.grey), (35, 2, 0));
        // Tracing down from the meter reaches the figures without all of their inputs: grey.
        let down = reg
            .trace(
                &TraceQuery::new(h("meter-coal-2"), Direction::Down),
                &|_, _| true,
            )
            .unwrap();
        let c = down.checks.unwrap();
        assert_eq!((c.green, c.red), (0, 0));
        assert!(c.grey >= 13, "{c:?}");
        // With the checks off, none are made.
        let mut q = TraceQuery::new(REPORT, Direction::Up);
        q.checks = false;
        let off = reg.trace(&q, &|_, _| true).unwrap();
        assert!(off.checks.is_none() && off.nodes.iter().all(|n| n.check.is_none()));
    }

    #[test]
    fn a_meter_traces_down_to_the_report_and_templates_guard_writes() {
        let (_d, reg) = loaded();
        let t = reg
            .trace(
                &TraceQuery::new(h("meter-coal-1"), Direction::Down),
                &|_, _| true,
            )
            .unwrap();
        assert!(t.nodes.iter().any(|n| n.handle == REPORT));
        // A reading without its meter breaks the reading template: RC 202 naming the attribute.
        let bad = vec![
            HandleValue::new(1, "mrv.kind", "reading"),
            HandleValue::new(1001, "mrv.templateRef", h("tpl/reading")),
            HandleValue::new(2000, "mrv.value", "1"),
            HandleValue::new(2001, "mrv.unit", "t"),
            HandleValue::new(2002, "mrv.time", "2025-01-01T00:00:00Z"),
        ];
        let e = reg
            .apply(Write {
                mutation: Mutation::Create {
                    handle: h("bad"),
                    values: bad,
                    mode: suyuan_registry::CreateMode::Plain,
                },
                actor: "0:T".into(),
                time: 1,
            })
            .unwrap_err();
        assert_eq!(e.response_code(), 202);
        assert!(e.to_string().contains("attribute meter"), "{e}");
    }
}
