//! Prediction drift between two versions: how far the distribution of a
//! response field moved from the primary's answers to the shadow's.
//!
//! [`stats`] holds the statistics over two fixed samples. Checked against
//! scipy for fixed samples within 1e-9 (`tests/drift_reference.rs`; the
//! reference figures are computed by `scripts/drift_reference.py`).
//!
//! How to read them (the usual conventions):
//!
//! | statistic | no shift | moderate | large |
//! |---|---|---|---|
//! | PSI | < 0.1 | 0.1 – 0.25 | > 0.25 |
//! | Jensen–Shannon distance (ln) | < 0.1 | 0.1 – 0.2 | > 0.2 |
//! | chi-square, KS p-value | ≥ 0.05 | | < 0.05 (divide by the number of gated fields: Bonferroni) |
//!
//! The Wasserstein distance is in the field's own units.

mod sketch;
pub mod stats;

pub use sketch::{MAX_CATEGORIES, OTHER_CATEGORY};
pub use stats::{ChiSquare, KolmogorovSmirnov, KS_EXACT_MAX, PSI_SMOOTHING};

use serde_json::Value;

use crate::ConfigError;
use sketch::{Categories, Reservoir};

/// Numbers kept per side and field by default.
pub const DEFAULT_SAMPLE: usize = 1000;

/// Whether a field is read as categories or as numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FieldKind {
    /// Strings, booleans and integers, each value a category: PSI,
    /// Jensen–Shannon and chi-square.
    Categorical,
    /// Numbers: Kolmogorov–Smirnov and Wasserstein.
    Numeric,
}

/// A response field whose distribution is compared, by JSON pointer
/// (RFC 6901), where a `*` segment stands for every element of an array
/// (or member of an object): `/label`, `/probabilities/0`,
/// `/predictions/*/score`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DriftField {
    pointer: String,
    segments: Vec<Segment>,
    kind: FieldKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Segment {
    Key(String),
    Any,
}

impl DriftField {
    /// A categorical field.
    ///
    /// # Errors
    /// [`ConfigError::InvalidPointer`] when `pointer` is not a JSON pointer.
    pub fn categorical(pointer: &str) -> Result<Self, ConfigError> {
        Self::new(pointer, FieldKind::Categorical)
    }

    /// A numeric field.
    ///
    /// # Errors
    /// [`ConfigError::InvalidPointer`] when `pointer` is not a JSON pointer.
    pub fn numeric(pointer: &str) -> Result<Self, ConfigError> {
        Self::new(pointer, FieldKind::Numeric)
    }

    fn new(pointer: &str, kind: FieldKind) -> Result<Self, ConfigError> {
        let invalid = || ConfigError::InvalidPointer {
            pointer: pointer.to_owned(),
        };
        if !pointer.is_empty() && !pointer.starts_with('/') {
            return Err(invalid());
        }
        let mut segments = Vec::new();
        for raw in pointer.split('/').skip(1) {
            if raw == "*" {
                segments.push(Segment::Any);
                continue;
            }
            segments.push(Segment::Key(unescape(raw).ok_or_else(invalid)?));
        }
        Ok(DriftField {
            pointer: pointer.to_owned(),
            segments,
            kind,
        })
    }

    /// The pointer, as given.
    pub fn pointer(&self) -> &str {
        &self.pointer
    }

    /// How the field is read.
    pub fn kind(&self) -> FieldKind {
        self.kind
    }

    /// Every value the pointer reaches in `doc`.
    fn values<'a>(&self, doc: &'a Value, out: &mut Vec<&'a Value>) {
        fn walk<'a>(v: &'a Value, rest: &[Segment], out: &mut Vec<&'a Value>) {
            let Some((first, rest)) = rest.split_first() else {
                out.push(v);
                return;
            };
            match (first, v) {
                (Segment::Any, Value::Array(items)) => {
                    items.iter().for_each(|i| walk(i, rest, out));
                }
                (Segment::Any, Value::Object(map)) => {
                    map.values().for_each(|i| walk(i, rest, out));
                }
                (Segment::Key(k), Value::Object(map)) => {
                    if let Some(next) = map.get(k) {
                        walk(next, rest, out);
                    }
                }
                (Segment::Key(k), Value::Array(items)) => {
                    // RFC 6901 indices: digits, no leading zero.
                    let index = (k == "0" || !k.starts_with('0'))
                        .then(|| k.parse::<usize>().ok())
                        .flatten();
                    if let Some(next) = index.and_then(|i| items.get(i)) {
                        walk(next, rest, out);
                    }
                }
                _ => {}
            }
        }
        walk(doc, &self.segments, out);
    }
}

fn unescape(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '~' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('0') => out.push('~'),
            Some('1') => out.push('/'),
            _ => return None,
        }
    }
    Some(out)
}

/// What drift is measured on: the fields, and how many numbers each side
/// keeps per field.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftSettings {
    fields: Vec<DriftField>,
    sample: usize,
}

impl DriftSettings {
    /// Drift of `fields`, keeping [`DEFAULT_SAMPLE`] numbers per side and
    /// numeric field.
    pub fn new(fields: impl IntoIterator<Item = DriftField>) -> Self {
        DriftSettings {
            fields: fields.into_iter().collect(),
            sample: DEFAULT_SAMPLE,
        }
    }

    /// The numbers kept per side and numeric field (a uniform sample of
    /// all seen), in `1..=100_000`.
    ///
    /// # Errors
    /// [`ConfigError::MustBePositive`] for 0, [`ConfigError::TooLarge`]
    /// above 100 000.
    pub fn sample(mut self, n: usize) -> Result<Self, ConfigError> {
        if n == 0 {
            return Err(ConfigError::MustBePositive {
                setting: "drift sample",
            });
        }
        if n > 100_000 {
            return Err(ConfigError::TooLarge {
                setting: "drift sample",
            });
        }
        self.sample = n;
        Ok(self)
    }

    /// The fields.
    pub fn fields(&self) -> &[DriftField] {
        &self.fields
    }
}

/// The drift of the configured fields between two sides, fed pairs of
/// answers (the primary's and the shadow's to the same request) and kept in
/// bounded memory.
#[derive(Debug, Clone)]
pub struct Drift {
    fields: Vec<FieldState>,
}

#[derive(Debug, Clone)]
struct FieldState {
    field: DriftField,
    primary: SideState,
    shadow: SideState,
    problems: FieldProblems,
}

#[derive(Debug, Clone)]
enum SideState {
    Categories(Categories),
    Numbers(Reservoir),
}

/// Answers in which a field could not be read, per side; never folded into
/// a category or a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct FieldProblems {
    /// The primary's answer lacked the field.
    pub missing_primary: u64,
    /// The shadow's answer lacked the field.
    pub missing_shadow: u64,
    /// A value of the wrong type (a string where a number was expected, an
    /// object or array where a category was, a fraction as a category).
    pub wrong_type: u64,
    /// A number that is not finite.
    pub not_finite: u64,
    /// An answer that is not JSON (each side counted).
    pub not_json: u64,
}

impl Drift {
    /// Empty samples for `settings`.
    pub fn new(settings: &DriftSettings) -> Self {
        let side = |field: &DriftField, seed: u64| match field.kind {
            FieldKind::Categorical => SideState::Categories(Categories::default()),
            FieldKind::Numeric => SideState::Numbers(Reservoir::new(settings.sample, seed)),
        };
        Drift {
            fields: settings
                .fields
                .iter()
                .enumerate()
                .map(|(i, f)| FieldState {
                    field: f.clone(),
                    primary: side(f, 2 * i as u64),
                    shadow: side(f, 2 * i as u64 + 1),
                    problems: FieldProblems::default(),
                })
                .collect(),
        }
    }

    /// Counts one pair of answers (bodies, as bytes).
    pub fn observe(&mut self, primary: &[u8], shadow: &[u8]) {
        self.observe_primary(primary);
        self.observe_shadow(shadow);
    }

    /// Counts one answer of the primary side alone (live answers of the
    /// stable color, which come unpaired).
    pub fn observe_primary(&mut self, body: &[u8]) {
        self.observe_side(body, true);
    }

    /// Counts one answer of the shadow side alone (live answers of the
    /// candidate color).
    pub fn observe_shadow(&mut self, body: &[u8]) {
        self.observe_side(body, false);
    }

    fn observe_side(&mut self, body: &[u8], is_primary: bool) {
        let doc = serde_json::from_slice::<Value>(body).ok();
        let mut found = Vec::new();
        for f in &mut self.fields {
            let side = if is_primary {
                &mut f.primary
            } else {
                &mut f.shadow
            };
            let Some(doc) = &doc else {
                f.problems.not_json += 1;
                continue;
            };
            found.clear();
            f.field.values(doc, &mut found);
            if found.is_empty() {
                if is_primary {
                    f.problems.missing_primary += 1;
                } else {
                    f.problems.missing_shadow += 1;
                }
            }
            for v in &found {
                side.add(v, &mut f.problems);
            }
        }
    }

    /// The statistics of every field so far.
    pub fn report(&self) -> Vec<FieldDrift> {
        self.fields.iter().map(FieldState::report).collect()
    }

    /// The bytes the samples hold on the heap, excluding category names
    /// (at most [`MAX_CATEGORIES`] per side and field).
    pub fn heap_bytes(&self) -> usize {
        self.fields
            .iter()
            .map(|f| {
                [&f.primary, &f.shadow]
                    .iter()
                    .map(|s| match s {
                        SideState::Numbers(r) => r.heap_bytes(),
                        SideState::Categories(_) => 0,
                    })
                    .sum::<usize>()
            })
            .sum()
    }
}

impl SideState {
    fn add(&mut self, v: &Value, problems: &mut FieldProblems) {
        match self {
            SideState::Categories(c) => match v {
                Value::String(s) => c.add(s),
                Value::Bool(b) => c.add(if *b { "true" } else { "false" }),
                Value::Number(n) if n.is_i64() || n.is_u64() => c.add(&n.to_string()),
                _ => problems.wrong_type += 1,
            },
            SideState::Numbers(r) => match v.as_f64() {
                Some(x) if x.is_finite() => r.add(x),
                Some(_) => problems.not_finite += 1,
                None => problems.wrong_type += 1,
            },
        }
    }
}

impl FieldState {
    fn report(&self) -> FieldDrift {
        let mut out = FieldDrift {
            field: self.field.pointer.clone(),
            kind: self.field.kind,
            primary_n: 0,
            shadow_n: 0,
            psi: None,
            jensen_shannon: None,
            chi_square: None,
            ks: None,
            wasserstein: None,
            categories: Vec::new(),
            problems: self.problems,
        };
        match (&self.primary, &self.shadow) {
            (SideState::Categories(p), SideState::Categories(s)) => {
                let a = Categories::aligned(p, s);
                out.primary_n = p.total();
                out.shadow_n = s.total();
                out.psi = stats::psi(&a.primary, &a.shadow);
                out.jensen_shannon = stats::jensen_shannon(&a.primary, &a.shadow);
                out.chi_square = stats::chi_square(&a.primary, &a.shadow);
                out.categories = a
                    .categories
                    .into_iter()
                    .zip(a.primary.into_iter().zip(a.shadow))
                    .map(|(name, (primary, shadow))| CategoryCounts {
                        name,
                        primary,
                        shadow,
                    })
                    .collect();
            }
            (SideState::Numbers(p), SideState::Numbers(s)) => {
                out.primary_n = p.seen();
                out.shadow_n = s.seen();
                out.ks = stats::kolmogorov_smirnov(p.values(), s.values());
                out.wasserstein = stats::wasserstein(p.values(), s.values());
            }
            _ => unreachable!("both sides of a field have its kind"),
        }
        out
    }
}

/// One field's drift between the primary's answers and the shadow's.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct FieldDrift {
    /// The field's pointer.
    pub field: String,
    /// How it is read.
    pub kind: FieldKind,
    /// Values counted on the primary's side (for numbers: seen, of which at
    /// most the sample size is kept).
    pub primary_n: u64,
    /// Values counted on the shadow's side.
    pub shadow_n: u64,
    /// Categorical: the population stability index.
    pub psi: Option<f64>,
    /// Categorical: the Jensen–Shannon distance.
    pub jensen_shannon: Option<f64>,
    /// Categorical: the chi-square test of homogeneity.
    pub chi_square: Option<ChiSquare>,
    /// Numeric: the Kolmogorov–Smirnov test.
    pub ks: Option<KolmogorovSmirnov>,
    /// Numeric: the Wasserstein distance.
    pub wasserstein: Option<f64>,
    /// Categorical: the counts per category on both sides.
    pub categories: Vec<CategoryCounts>,
    /// Answers in which the field could not be read.
    pub problems: FieldProblems,
}

/// One category's counts on both sides.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CategoryCounts {
    /// The category (a string, `true`/`false`, an integer, or
    /// [`OTHER_CATEGORY`]).
    pub name: String,
    /// Its count among the primary's answers.
    pub primary: u64,
    /// Its count among the shadow's answers.
    pub shadow: u64,
}

/// A drift statistic a plan gate can hold below a maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Statistic {
    /// The population stability index (categorical).
    Psi,
    /// The Jensen–Shannon distance (categorical).
    JensenShannon,
    /// The chi-square statistic (categorical).
    ChiSquare,
    /// The Kolmogorov–Smirnov statistic (numeric).
    KolmogorovSmirnov,
    /// The Wasserstein distance (numeric).
    Wasserstein,
    /// The chi-square test's p-value (categorical): a gate on it fails
    /// when the p-value falls *below* its limit.
    ChiSquarePValue,
    /// The Kolmogorov–Smirnov p-value (numeric): a gate on it fails when
    /// the p-value falls *below* its limit.
    KsPValue,
}

/// The usual limits, to pass to
/// [`Gate::drift`](crate::plan::Gate::drift).
pub mod limits {
    /// PSI above this: a large shift (0.1 – 0.25 is read as moderate).
    pub const PSI_LARGE: f64 = 0.25;
    /// PSI below this: no shift.
    pub const PSI_NONE: f64 = 0.1;
    /// The significance level of the p-value gates, divided by the number
    /// of p-value gates in the plan (Bonferroni).
    pub const P_VALUE: f64 = 0.05;
}

impl Statistic {
    /// Every statistic.
    pub const ALL: [Statistic; 7] = [
        Statistic::Psi,
        Statistic::JensenShannon,
        Statistic::ChiSquare,
        Statistic::ChiSquarePValue,
        Statistic::KolmogorovSmirnov,
        Statistic::KsPValue,
        Statistic::Wasserstein,
    ];

    /// The statistic named `name` (see [`as_str`](Self::as_str)).
    pub fn from_name(name: &str) -> Option<Statistic> {
        Statistic::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The statistic's name, as the admin and metrics show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Statistic::Psi => "psi",
            Statistic::JensenShannon => "jensen_shannon",
            Statistic::ChiSquare => "chi_square",
            Statistic::KolmogorovSmirnov => "ks",
            Statistic::Wasserstein => "wasserstein",
            Statistic::ChiSquarePValue => "chi_square_p",
            Statistic::KsPValue => "ks_p",
        }
    }

    /// Whether this is a p-value (small means drift) rather than a distance
    /// (large means drift).
    pub fn is_p_value(self) -> bool {
        matches!(self, Statistic::ChiSquarePValue | Statistic::KsPValue)
    }

    /// The kind of field the statistic applies to.
    pub fn kind(self) -> FieldKind {
        match self {
            Statistic::Psi
            | Statistic::JensenShannon
            | Statistic::ChiSquare
            | Statistic::ChiSquarePValue => FieldKind::Categorical,
            Statistic::KolmogorovSmirnov | Statistic::Wasserstein | Statistic::KsPValue => {
                FieldKind::Numeric
            }
        }
    }
}

impl FieldDrift {
    /// `statistic`'s value for this field; `None` when it does not apply
    /// to the field's kind or there is nothing to compare yet.
    pub fn get(&self, statistic: Statistic) -> Option<f64> {
        match statistic {
            Statistic::Psi => self.psi,
            Statistic::JensenShannon => self.jensen_shannon,
            Statistic::ChiSquare => self.chi_square.map(|c| c.statistic),
            Statistic::KolmogorovSmirnov => self.ks.map(|k| k.statistic),
            Statistic::Wasserstein => self.wasserstein,
            Statistic::ChiSquarePValue => self.chi_square.map(|c| c.p_value),
            Statistic::KsPValue => self.ks.map(|k| k.p_value),
        }
    }

    /// The fewer of the two sides' counts: the sample a gate judges.
    pub fn sample(&self) -> u64 {
        self.primary_n.min(self.shadow_n)
    }
}
