//! Two small real models over iris-like measurements, for end-to-end tests:
//! v1 a multinomial logistic regression, v2 a depth-2 decision tree. They
//! agree on most inputs and disagree near the class boundaries.
#![allow(dead_code)]

use axum::{routing::post, Json, Router};
use serde::{Deserialize, Serialize};

pub const LABELS: [&str; 3] = ["setosa", "versicolor", "virginica"];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Features {
    pub features: [f32; 4],
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Prediction {
    pub label: String,
    pub probabilities: [f32; 3],
    pub version: String,
}

const WEIGHTS: [[f32; 5]; 3] = [
    [0.4, 1.4, -2.2, -1.0, 0.3],
    [0.5, -1.6, 0.6, -1.3, 1.0],
    [-0.9, 0.2, 1.6, 2.3, -1.3],
];

/// v1: softmax over linear scores.
pub fn v1(x: [f32; 4]) -> Prediction {
    let logits: Vec<f32> = WEIGHTS
        .iter()
        .map(|w| w[4] + w[..4].iter().zip(x).map(|(a, b)| a * b).sum::<f32>())
        .collect();
    let max = logits.iter().cloned().fold(f32::MIN, f32::max);
    let exp: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    let p = [exp[0] / sum, exp[1] / sum, exp[2] / sum];
    let best = (0..3).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap();
    Prediction {
        label: LABELS[best].into(),
        probabilities: p,
        version: "v1".into(),
    }
}

/// v2: petal length, then petal width.
pub fn v2(x: [f32; 4]) -> Prediction {
    let class = if x[2] < 2.5 {
        0
    } else if x[3] < 1.75 {
        1
    } else {
        2
    };
    let mut p = [0.05; 3];
    p[class] = 0.9;
    Prediction {
        label: LABELS[class].into(),
        probabilities: p,
        version: "v2".into(),
    }
}

/// Deterministic iris-like samples: three clusters with spread, `n` points.
pub fn samples(n: usize) -> Vec<[f32; 4]> {
    let centers = [
        [5.0, 3.4, 1.5, 0.25],
        [5.9, 2.8, 4.3, 1.3],
        [6.6, 3.0, 5.5, 2.0],
    ];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % 10_000) as f32 / 10_000.0 - 0.5 // in [-0.5, 0.5)
    };
    (0..n)
        .map(|i| {
            let c = centers[i % 3];
            [
                c[0] + next(),
                c[1] + next() * 0.6,
                c[2] + next() * 1.6,
                c[3] + next() * 0.9,
            ]
        })
        .collect()
}

/// An axum app serving `model` at `POST /predict`.
pub fn app(model: fn([f32; 4]) -> Prediction) -> Router {
    Router::new().route(
        "/predict",
        post(move |Json(f): Json<Features>| async move { Json(model(f.features)) }),
    )
}
