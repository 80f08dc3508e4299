//! `POST /predict` over a [`Model`], with axum (feature `axum`).

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;

use crate::{Features, Model};

/// An axum app serving one model: `POST /predict` with a [`Features`] JSON
/// body answers `200` with a [`Prediction`](crate::Prediction) as JSON.
///
/// Bad input gets a JSON error `{"error": "..."}`: `422` for a feature that
/// is not finite, and axum's own status for a body that is not the expected
/// JSON (`400`, `415` or `422`). Nothing panics on user input.
///
/// ```
/// use tower::ServiceExt;
/// use tower_rollout_models::{app, Model, Prediction, Version};
/// # use http_body_util::BodyExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let model = Model::train(Version::V2)?;
/// let req = axum::http::Request::post("/predict")
///     .header("content-type", "application/json")
///     .body(axum::body::Body::from(r#"{"features": [6.7, 3.0, 5.2, 2.3]}"#))?;
/// let res = app(model.clone()).oneshot(req).await?;
/// assert_eq!(res.status(), 200);
/// let body = res.into_body().collect().await?.to_bytes();
/// let got: Prediction = serde_json::from_slice(&body)?;
/// assert_eq!(got, model.predict([6.7, 3.0, 5.2, 2.3]));
/// # Ok(())
/// # }
/// ```
pub fn app(model: Model) -> Router {
    Router::new()
        .route("/predict", post(predict))
        .with_state(model)
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(ErrorBody { error: message })).into_response()
}

async fn predict(
    State(model): State<Model>,
    body: Result<Json<Features>, JsonRejection>,
) -> Response {
    let Json(features) = match body {
        Ok(body) => body,
        Err(rejection) => return error(rejection.status(), rejection.body_text()),
    };
    match model.try_predict(&features) {
        Ok(prediction) => Json(prediction).into_response(),
        Err(invalid) => error(StatusCode::UNPROCESSABLE_ENTITY, invalid.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Prediction, Version};
    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn post(model: &Model, content_type: &str, body: &str) -> (StatusCode, String) {
        let req = axum::http::Request::post("/predict")
            .header("content-type", content_type)
            .body(Body::from(body.to_owned()))
            .unwrap();
        let res = app(model.clone()).oneshot(req).await.unwrap();
        let status = res.status();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn serves_the_models_answer() {
        let model = Model::train(Version::V1).unwrap();
        for x in crate::samples(20) {
            let body = serde_json::to_string(&Features { features: x }).unwrap();
            let (status, body) = post(&model, "application/json", &body).await;
            assert_eq!(status, StatusCode::OK);
            let got: Prediction = serde_json::from_str(&body).unwrap();
            assert_eq!(got, model.predict(x));
        }
    }

    #[tokio::test]
    async fn bad_input_gets_a_json_error() {
        let model = Model::train(Version::V2).unwrap();
        let cases = [
            (
                "application/json",
                r#"{"features": [1e39, 1, 1, 1]}"#,
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                "application/json",
                r#"{"features": [1, 2, 3]}"#,
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            ("application/json", "{not json", StatusCode::BAD_REQUEST),
            (
                "text/plain",
                r#"{"features": [1, 2, 3, 4]}"#,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
        ];
        for (content_type, body, want) in cases {
            let (status, text) = post(&model, content_type, body).await;
            assert_eq!(status, want, "{body}: {text}");
            let err: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert!(
                err["error"].as_str().is_some_and(|e| !e.is_empty()),
                "{text}"
            );
        }
        let (_, text) = post(
            &model,
            "application/json",
            r#"{"features": [1e39, 1, 1, 1]}"#,
        )
        .await;
        assert!(
            text.contains("feature 0 (sepal length) is not a finite number"),
            "{text}"
        );
    }
}
