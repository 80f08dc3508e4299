//! Three real classifiers of the iris data set, for tower-rollout's demos and
//! tests: version 1 a multinomial logistic regression
//! ([linfa-logistic](https://docs.rs/linfa-logistic)), version 2 a decision
//! tree of depth 3 ([linfa-trees](https://docs.rs/linfa-trees)), version 3
//! the logistic regression retrained with other settings (a weaker penalty,
//! more iterations), all trained at start-up (a few milliseconds) on the 150
//! rows of Fisher's iris data, which the `linfa-datasets` crate ships inside
//! itself: nothing is fetched.
//!
//! The models agree on most inputs and disagree near the class boundaries,
//! which makes each pair a fair one for a shadow comparison. A
//! [`WeakModel`] tells when a model's memory has been released.
//!
//! ```
//! use tower_rollout_models::{samples, Model, Version};
//!
//! let v1 = Model::train(Version::V1)?;
//! let v2 = Model::train(Version::V2)?;
//! assert!(v1.training_accuracy() > 0.9 && v2.training_accuracy() > 0.9);
//!
//! let p = v1.predict([5.1, 3.5, 1.4, 0.2]);
//! assert_eq!((p.label.as_str(), p.version.as_str()), ("setosa", "v1"));
//! assert!((p.probabilities.iter().sum::<f32>() - 1.0).abs() < 1e-4);
//!
//! // Deterministic inputs for clients: iris rows with a small jitter.
//! let inputs = samples(200);
//! let disagree = inputs
//!     .iter()
//!     .filter(|x| v1.predict(**x).label != v2.predict(**x).label)
//!     .count();
//! assert!(disagree > 0 && disagree < inputs.len() / 2);
//! # Ok::<(), tower_rollout_models::TrainError>(())
//! ```
//!
//! The API knows nothing of HTTP: [`Model::predict`] takes four numbers,
//! [`Features`] and [`Prediction`] are the JSON request and answer, and
//! [`Features::validate`] rejects what a model must not be asked. With the
//! feature `axum`, `app` serves `POST /predict` over a model.
#![cfg_attr(docsrs, feature(doc_cfg))]

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use linfa::prelude::*;
use linfa_logistic::{MultiFittedLogisticRegression, MultiLogisticRegression};
use linfa_trees::{DecisionTree, TreeNode};
use ndarray::Array2;
use serde::{Deserialize, Serialize};

#[cfg(feature = "axum")]
mod http;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use http::app;

/// The three iris species, in class order.
pub const LABELS: [&str; 3] = ["setosa", "versicolor", "virginica"];

/// The four measurements (cm), in feature order.
pub const FEATURE_NAMES: [&str; 4] = ["sepal length", "sepal width", "petal length", "petal width"];

/// The depth limit of version 2's decision tree.
pub const TREE_DEPTH: usize = 3;

/// The L2 penalty of version 3's logistic regression (version 1 uses
/// linfa's default, 1.0).
pub const V3_ALPHA: f64 = 0.01;

/// Which model: the versions rolled out one after another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// `"v1"`: multinomial logistic regression (L2-regularized, linfa's
    /// defaults, at most 100 L-BFGS iterations).
    V1,
    /// `"v2"`: decision tree (Gini, depth at most [`TREE_DEPTH`]).
    V2,
    /// `"v3"`: v1 retrained with a weaker penalty ([`V3_ALPHA`]) and at most
    /// 500 iterations: sharper probabilities.
    V3,
}

impl Version {
    /// Every version, in order.
    pub const ALL: [Version; 3] = [Version::V1, Version::V2, Version::V3];

    /// `"v1"`, `"v2"` or `"v3"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
            Version::V3 => "v3",
        }
    }

    /// What kind of model this version is, in words.
    pub fn describe(self) -> &'static str {
        match self {
            Version::V1 => "multinomial logistic regression",
            Version::V2 => "decision tree (depth <= 3)",
            Version::V3 => "logistic regression retrained (alpha 0.01, 500 iterations)",
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The JSON body of a prediction request: `{"features": [5.1, 3.5, 1.4, 0.2]}`
/// (sepal length, sepal width, petal length, petal width, in cm).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Features {
    /// The four measurements, in [`FEATURE_NAMES`] order.
    pub features: [f32; 4],
}

impl Features {
    /// The features, when every one is finite.
    ///
    /// JSON has no NaN, but a number too large for `f32` (such as `1e39`)
    /// parses as infinity; servers check with this before predicting.
    ///
    /// # Errors
    /// [`InvalidFeatures`] naming the first feature that is not finite.
    pub fn validate(&self) -> Result<[f32; 4], InvalidFeatures> {
        match self.features.iter().position(|v| !v.is_finite()) {
            Some(index) => Err(InvalidFeatures {
                index,
                value: self.features[index],
            }),
            None => Ok(self.features),
        }
    }
}

/// A model's answer, as JSON:
/// `{"label": "setosa", "probabilities": [0.97, 0.03, 0.0], "version": "v1"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// The predicted species, one of [`LABELS`].
    pub label: String,
    /// One probability per class, in [`LABELS`] order; they sum to 1. For v1
    /// the softmax of the regression; for v2 the class frequencies of the
    /// training rows in the tree leaf the input falls into.
    pub probabilities: [f32; 3],
    /// The version that answered, `"v1"`, `"v2"` or `"v3"`.
    pub version: String,
}

/// A feature that is not a finite number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InvalidFeatures {
    /// Its index, `0..4`.
    pub index: usize,
    /// Its value (NaN or infinite).
    pub value: f32,
}

impl fmt::Display for InvalidFeatures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "feature {} ({}) is not a finite number: {}",
            self.index, FEATURE_NAMES[self.index], self.value
        )
    }
}

impl std::error::Error for InvalidFeatures {}

/// Training failed (linfa's error, as text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainError {
    /// Which version.
    pub version: Version,
    /// What went wrong.
    pub message: String,
}

impl fmt::Display for TrainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "training {} failed: {}", self.version, self.message)
    }
}

impl std::error::Error for TrainError {}

/// A trained model. Cheap to clone (one `Arc`); `Send + Sync`.
#[derive(Clone)]
pub struct Model {
    inner: Arc<Inner>,
}

struct Inner {
    version: Version,
    kind: Kind,
    accuracy: f64,
    trained_in: Duration,
}

enum Kind {
    Logistic(MultiFittedLogisticRegression<f64, usize>),
    Tree(Tree),
}

impl Model {
    /// Trains `version` on the iris data set.
    ///
    /// # Errors
    /// When linfa fails to fit the model (not expected for iris).
    pub fn train(version: Version) -> Result<Model, TrainError> {
        let start = Instant::now();
        let data = linfa_datasets::iris();
        let fail = |e: &dyn fmt::Display| TrainError {
            version,
            message: e.to_string(),
        };
        let kind = match version {
            Version::V1 => Kind::Logistic(
                MultiLogisticRegression::default()
                    .max_iterations(100)
                    .fit(&data)
                    .map_err(|e| fail(&e))?,
            ),
            Version::V3 => Kind::Logistic(
                MultiLogisticRegression::default()
                    .alpha(V3_ALPHA)
                    .max_iterations(500)
                    .fit(&data)
                    .map_err(|e| fail(&e))?,
            ),
            Version::V2 => {
                let fitted: DecisionTree<f64, usize> = DecisionTree::params()
                    .max_depth(Some(TREE_DEPTH))
                    .fit(&data)
                    .map_err(|e| fail(&e))?;
                let mut tree = Tree::from_linfa(fitted.root_node()).map_err(|e| fail(&e))?;
                for (x, class) in rows(&data) {
                    tree.count(x, class);
                }
                Kind::Tree(tree)
            }
        };
        let mut model = Inner {
            version,
            kind,
            accuracy: 0.0,
            trained_in: Duration::ZERO,
        };
        let iris = rows(&data);
        let correct = iris
            .iter()
            .filter(|(x, class)| model.classify(*x).0 == *class)
            .count();
        model.accuracy = correct as f64 / iris.len() as f64;
        model.trained_in = start.elapsed();
        Ok(Model {
            inner: Arc::new(model),
        })
    }

    /// Trains both versions: `(v1, v2)`.
    ///
    /// # Errors
    /// When either fails to train.
    pub fn train_both() -> Result<(Model, Model), TrainError> {
        Ok((Model::train(Version::V1)?, Model::train(Version::V2)?))
    }

    /// A handle that does not keep the model alive: it tells when the last
    /// clone of this model (and so its memory) is gone.
    pub fn downgrade(&self) -> WeakModel {
        WeakModel {
            version: self.inner.version,
            inner: Arc::downgrade(&self.inner),
        }
    }

    /// Which version this is.
    pub fn version(&self) -> Version {
        self.inner.version
    }

    /// The fraction of the 150 iris rows this model classifies correctly.
    pub fn training_accuracy(&self) -> f64 {
        self.inner.accuracy
    }

    /// How long loading the data and training took.
    pub fn trained_in(&self) -> Duration {
        self.inner.trained_in
    }

    /// Classifies one flower.
    ///
    /// Never panics. The inputs should be finite (see
    /// [`Features::validate`]): a NaN or infinite feature gives some label
    /// and, for v1, NaN probabilities.
    pub fn predict(&self, features: [f32; 4]) -> Prediction {
        let (class, probabilities) = self.inner.classify(features.map(f64::from));
        Prediction {
            label: LABELS[class].to_owned(),
            probabilities,
            version: self.inner.version.as_str().to_owned(),
        }
    }

    /// [`Features::validate`], then [`predict`](Self::predict).
    ///
    /// # Errors
    /// [`InvalidFeatures`] when a feature is not finite.
    pub fn try_predict(&self, features: &Features) -> Result<Prediction, InvalidFeatures> {
        Ok(self.predict(features.validate()?))
    }
}

impl fmt::Debug for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Model")
            .field("version", &self.inner.version)
            .field("training_accuracy", &self.inner.accuracy)
            .finish_non_exhaustive()
    }
}

/// Made by [`Model::downgrade`]: watches a model without keeping it alive.
#[derive(Clone)]
pub struct WeakModel {
    version: Version,
    inner: std::sync::Weak<Inner>,
}

impl WeakModel {
    /// Whether every clone of the model has been dropped, so its memory is
    /// released.
    pub fn is_released(&self) -> bool {
        self.inner.strong_count() == 0
    }

    /// The clones of the model still alive.
    pub fn clones_alive(&self) -> usize {
        self.inner.strong_count()
    }

    /// Which version it is.
    pub fn version(&self) -> Version {
        self.version
    }
}

impl fmt::Debug for WeakModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeakModel")
            .field("version", &self.version)
            .field("clones_alive", &self.clones_alive())
            .finish()
    }
}

impl Inner {
    /// The class index and the probabilities of each class.
    fn classify(&self, x: [f64; 4]) -> (usize, [f32; 3]) {
        match &self.kind {
            Kind::Logistic(lr) => {
                let row = Array2::from_shape_fn((1, 4), |(_, j)| x[j]);
                let p = lr.predict_probabilities(&row);
                let mut probabilities = [0.0f32; 3];
                // Columns follow `classes()`; map each to its class index.
                for (column, &class) in lr.classes().iter().enumerate() {
                    if let Some(slot) = probabilities.get_mut(class) {
                        *slot = p[(0, column)] as f32;
                    }
                }
                (argmax(&probabilities), probabilities)
            }
            Kind::Tree(tree) => tree.leaf(x).answer(),
        }
    }
}

/// The index of the largest value; ties (and NaN) go to the lowest index.
fn argmax(p: &[f32; 3]) -> usize {
    let mut best = 0;
    for i in 1..3 {
        if p[i] > p[best] {
            best = i;
        }
    }
    best
}

// === the decision tree, copied from linfa's to annotate its leaves ===

/// linfa's fitted tree copied node by node through its public accessors, so
/// that each leaf can carry the class counts of the training rows that reach
/// it (linfa keeps only the majority class). Inputs walk it exactly as linfa's
/// `predict` does: left when `x[feature] < value`.
enum Tree {
    Leaf {
        class: usize,
        counts: [u32; 3],
    },
    Split {
        feature: usize,
        value: f64,
        left: Box<Tree>,
        right: Box<Tree>,
    },
}

impl Tree {
    fn from_linfa(node: &TreeNode<f64, usize>) -> Result<Tree, String> {
        if let Some(class) = node.prediction() {
            if class >= LABELS.len() {
                return Err(format!("leaf predicts unknown class {class}"));
            }
            return Ok(Tree::Leaf {
                class,
                counts: [0; 3],
            });
        }
        let (feature, value, _) = node.split();
        match node.children().as_slice() {
            [Some(left), Some(right)] if feature < 4 => Ok(Tree::Split {
                feature,
                value,
                left: Box::new(Tree::from_linfa(left)?),
                right: Box::new(Tree::from_linfa(right)?),
            }),
            _ => Err("an inner node without two children".to_owned()),
        }
    }

    fn leaf(&self, x: [f64; 4]) -> &Tree {
        let mut node = self;
        while let Tree::Split {
            feature,
            value,
            left,
            right,
        } = node
        {
            node = if x[*feature] < *value { left } else { right };
        }
        node
    }

    fn count(&mut self, x: [f64; 4], class: usize) {
        let mut node = self;
        loop {
            match node {
                Tree::Split {
                    feature,
                    value,
                    left,
                    right,
                } => node = if x[*feature] < *value { left } else { right },
                Tree::Leaf { counts, .. } => {
                    if let Some(c) = counts.get_mut(class) {
                        *c += 1;
                    }
                    return;
                }
            }
        }
    }

    /// A leaf's class and the class frequencies of its training rows (all
    /// mass on its class if no training row reached it).
    fn answer(&self) -> (usize, [f32; 3]) {
        match self {
            Tree::Leaf { class, counts } => {
                let total: u32 = counts.iter().sum();
                let mut p = [0.0f32; 3];
                if total == 0 {
                    p[*class] = 1.0;
                } else {
                    for (p, c) in p.iter_mut().zip(counts) {
                        *p = *c as f32 / total as f32;
                    }
                }
                (*class, p)
            }
            Tree::Split { .. } => unreachable!("leaf() returns leaves"),
        }
    }
}

// === data ===

fn rows(data: &linfa::Dataset<f64, usize, ndarray::Ix1>) -> Vec<([f64; 4], usize)> {
    data.records()
        .rows()
        .into_iter()
        .zip(data.targets().iter())
        .map(|(r, &class)| ([r[0], r[1], r[2], r[3]], class))
        .collect()
}

/// The 150 rows of the iris data set: the measurements and the class index
/// (into [`LABELS`]).
pub fn iris() -> Vec<([f32; 4], usize)> {
    rows(&linfa_datasets::iris())
        .into_iter()
        .map(|(x, class)| (x.map(|v| v as f32), class))
        .collect()
}

/// `n` deterministic inputs for clients: iris rows, visited in a fixed order
/// that mixes the classes (every row once per 150), each measurement moved by
/// a pseudo-random jitter in `[-0.3, 0.3)` cm and kept at or above 0.1 cm.
/// The same `n` always gives the same inputs.
pub fn samples(n: usize) -> Vec<[f32; 4]> {
    let iris = iris();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut jitter = move || {
        // xorshift64
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        ((seed >> 11) % 6_000) as f32 / 10_000.0 - 0.3
    };
    (0..n)
        .map(|i| {
            // 53 is prime to 150, so i * 53 visits every row once per 150.
            let (x, _) = iris[(i * 53) % iris.len()];
            x.map(|v| ((v + jitter()) * 100.0).round() / 100.0)
                .map(|v| v.max(0.1))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn models() -> (Model, Model) {
        Model::train_both().expect("iris trains")
    }

    #[test]
    fn both_models_learn_iris() {
        let (v1, v2) = models();
        assert_eq!((v1.version(), v2.version()), (Version::V1, Version::V2));
        for m in [&v1, &v2] {
            assert!(
                m.training_accuracy() > 0.9,
                "{}: {}",
                m.version(),
                m.training_accuracy()
            );
            // Recomputed here, not read back from the model.
            let iris = iris();
            let correct = iris
                .iter()
                .filter(|(x, class)| m.predict(*x).label == LABELS[*class])
                .count();
            assert!(correct as f64 / iris.len() as f64 > 0.9);
        }
    }

    #[test]
    fn v3_is_v1_retrained_and_learns_iris_too() {
        let (v1, _) = models();
        let v3 = Model::train(Version::V3).expect("iris trains");
        assert_eq!(v3.version(), Version::V3);
        assert!(v3.training_accuracy() > 0.9, "{}", v3.training_accuracy());
        // Recomputed against linfa's own fit with the same settings.
        let data = linfa_datasets::iris();
        let lr = MultiLogisticRegression::default()
            .alpha(V3_ALPHA)
            .max_iterations(500)
            .fit(&data)
            .unwrap();
        let inputs = samples(300);
        let matrix = Array2::from_shape_fn((inputs.len(), 4), |(i, j)| f64::from(inputs[i][j]));
        let want = lr.predict(&matrix);
        for (i, x) in inputs.iter().enumerate() {
            assert_eq!(v3.predict(*x).label, LABELS[want[i]], "v3 at {x:?}");
        }
        // Other settings, other answers: the probabilities move everywhere.
        let moved = inputs
            .iter()
            .filter(|x| {
                let (a, b) = (v1.predict(**x), v3.predict(**x));
                a.probabilities
                    .iter()
                    .zip(b.probabilities)
                    .any(|(p, q)| (p - q).abs() > 0.01)
            })
            .count();
        assert!(moved > inputs.len() / 2, "{moved} of 300 moved");
    }

    #[test]
    fn a_weak_model_sees_the_last_clone_go() {
        let model = Model::train(Version::V1).unwrap();
        let weak = model.downgrade();
        let clone = model.clone();
        assert_eq!((weak.clones_alive(), weak.is_released()), (2, false));
        drop(model);
        assert!(!weak.is_released());
        drop(clone);
        assert!(weak.is_released());
        assert_eq!(weak.version(), Version::V1);
    }

    #[test]
    fn they_disagree_on_some_inputs_but_not_most() {
        let (v1, v2) = models();
        let inputs = samples(300);
        let disagree = inputs
            .iter()
            .filter(|x| v1.predict(**x).label != v2.predict(**x).label)
            .count();
        assert!(disagree > 0, "the pair must differ somewhere");
        assert!(disagree < inputs.len() / 4, "{disagree} of 300");
    }

    #[test]
    fn labels_are_linfas_predictions() {
        // The copied tree and the probability mapping give exactly what linfa
        // itself predicts, on the data and on jittered inputs.
        let data = linfa_datasets::iris();
        let lr = MultiLogisticRegression::default()
            .max_iterations(100)
            .fit(&data)
            .unwrap();
        let dt: DecisionTree<f64, usize> = DecisionTree::params()
            .max_depth(Some(TREE_DEPTH))
            .fit(&data)
            .unwrap();
        let (v1, v2) = models();
        let mut inputs: Vec<[f32; 4]> = iris().into_iter().map(|(x, _)| x).collect();
        inputs.extend(samples(300));
        let matrix = Array2::from_shape_fn((inputs.len(), 4), |(i, j)| f64::from(inputs[i][j]));
        let want_v1 = lr.predict(&matrix);
        let want_v2 = dt.predict(&matrix);
        for (i, x) in inputs.iter().enumerate() {
            assert_eq!(v1.predict(*x).label, LABELS[want_v1[i]], "v1 at {x:?}");
            assert_eq!(v2.predict(*x).label, LABELS[want_v2[i]], "v2 at {x:?}");
        }
    }

    #[test]
    fn probabilities_are_distributions_led_by_the_label() {
        let (v1, v2) = models();
        for x in samples(300) {
            for p in [v1.predict(x), v2.predict(x)] {
                let sum: f32 = p.probabilities.iter().sum();
                assert!((sum - 1.0).abs() < 1e-4, "{p:?}");
                assert!(p.probabilities.iter().all(|v| (0.0..=1.0).contains(v)));
                let top = LABELS.iter().position(|l| *l == p.label).unwrap();
                assert!(
                    p.probabilities.iter().all(|v| *v <= p.probabilities[top]),
                    "{p:?}"
                );
            }
        }
    }

    #[test]
    fn tree_probabilities_are_leaf_frequencies() {
        // Walk linfa's own tree by hand (left when x < split, as its predict
        // does) and group the training rows by the leaf they reach: each
        // row's probabilities are the class shares of its leaf's rows.
        let data = linfa_datasets::iris();
        let dt: DecisionTree<f64, usize> = DecisionTree::params()
            .max_depth(Some(TREE_DEPTH))
            .fit(&data)
            .unwrap();
        fn leaf(mut node: &TreeNode<f64, usize>, x: [f32; 4]) -> *const TreeNode<f64, usize> {
            while !node.is_leaf() {
                let (feature, value, _) = node.split();
                let children = node.children();
                let next = if f64::from(x[feature]) < value {
                    children[0]
                } else {
                    children[1]
                };
                node = next.as_deref().unwrap();
            }
            node
        }
        let (_, v2) = models();
        let iris = iris();
        let mut impure = 0;
        for (x, _) in &iris {
            let mine = leaf(dt.root_node(), *x);
            let classes: Vec<usize> = iris
                .iter()
                .filter(|(y, _)| std::ptr::eq(leaf(dt.root_node(), *y), mine))
                .map(|(_, c)| *c)
                .collect();
            let p = v2.predict(*x).probabilities;
            for (c, p) in p.iter().enumerate() {
                let share =
                    classes.iter().filter(|k| **k == c).count() as f32 / classes.len() as f32;
                assert!((p - share).abs() < 1e-6, "{p} != {share} at {x:?}");
            }
            if p.iter().any(|p| *p > 0.0 && *p < 1.0) {
                impure += 1;
            }
        }
        // A depth-3 tree on iris has impure leaves: not every answer is 0/1.
        assert!(impure > 0);
    }

    #[test]
    fn samples_are_deterministic_and_near_the_data() {
        let a = samples(400);
        assert_eq!(a, samples(400));
        assert_eq!(a[..10], samples(10)[..]);
        let iris = iris();
        for (i, x) in a.iter().enumerate() {
            let (row, _) = iris[(i * 53) % 150];
            for j in 0..4 {
                assert!(
                    x[j] >= 0.1 && (x[j] - row[j]).abs() <= 0.31,
                    "{x:?} {row:?}"
                );
            }
        }
        // Jittered: not just the rows themselves.
        assert!(a.iter().any(|x| !iris.iter().any(|(r, _)| r == x)));
    }

    #[test]
    fn non_finite_features_are_rejected_and_never_panic() {
        let (v1, v2) = models();
        let bad = Features {
            features: [5.0, f32::INFINITY, 1.0, f32::NAN],
        };
        let err = bad.validate().unwrap_err();
        assert_eq!(err.index, 1);
        assert_eq!(
            err.to_string(),
            "feature 1 (sepal width) is not a finite number: inf"
        );
        assert_eq!(v1.try_predict(&bad).unwrap_err().index, 1);
        // predict itself never panics on them.
        for m in [&v1, &v2] {
            let _ = m.predict(bad.features);
            let _ = m.predict([f32::NAN; 4]);
            let _ = m.predict([f32::MAX, -f32::MAX, 0.0, 1e30]);
        }
    }

    #[test]
    fn json_shapes() {
        let f: Features = serde_json::from_str(r#"{"features": [5.1, 3.5, 1.4, 0.2]}"#).unwrap();
        assert_eq!(f.features, [5.1, 3.5, 1.4, 0.2]);
        assert!(serde_json::from_str::<Features>(r#"{"features": [1, 2, 3]}"#).is_err());
        let (v1, _) = models();
        let p = v1.predict(f.features);
        let json: serde_json::Value = serde_json::to_value(&p).unwrap();
        assert_eq!(json["label"], "setosa");
        assert_eq!(json["version"], "v1");
        assert_eq!(json["probabilities"].as_array().unwrap().len(), 3);
        let back: Prediction = serde_json::from_value(json).unwrap();
        assert_eq!(back, p);
    }
}
